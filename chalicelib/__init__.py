"""Bandwidth Meter: exact API-gateway bandwidth metering (the code behind app.py)."""
__version__ = "0.1.0"
