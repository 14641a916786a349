import sys

from bwmeter.cli import main

sys.exit(main())
