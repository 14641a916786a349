import sys

from localrun.runtime import main

sys.exit(main())
