"""`make run`'s installer narrates pip: one line per package fetched, then what was installed."""
import io

import pytest

from localrun.install import narrate, python_is_recent_enough

PIP = """Looking in indexes: https://pypi.org/simple
Collecting chalice==1.34.0 (from -r requirements-run.txt (line 5))
  Downloading chalice-1.34.0-py3-none-any.whl (1.1 MB)
Collecting moto[server]==5.2.5
Requirement already satisfied: requests in ./.venv/lib/python3.11/site-packages
Installing collected packages: moto, chalice
Successfully installed chalice-1.34.0 moto-5.2.5
""".splitlines(keepends=True)


def test_each_package_fetched_and_the_install_are_announced_with_elapsed_time():
    ticks = iter(range(100))
    out = io.StringIO()
    log = narrate(PIP, out, started=0, clock=lambda: next(ticks))
    assert out.getvalue().splitlines() == [
        "    [  0.0 s] fetching chalice==1.34.0",
        "    [  1.0 s] fetching moto[server]==5.2.5",
        "    [  2.0 s] installing 2 packages (quiet for up to a minute)...",
        "    [  3.0 s] installed 2 packages",
    ]
    assert len(log) == len(PIP)  # everything is kept for the message shown if pip fails


@pytest.mark.parametrize("version, ok", [((3, 9, 18), False), ((3, 10, 0), True), ((3, 13, 1), True)])
def test_python_older_than_3_10_is_refused(version, ok):
    assert python_is_recent_enough(version) is ok
