"""bwmeter: a command-line client for the Bandwidth Meter API (``bwmeter --help``)."""

__version__ = "0.1.0"
