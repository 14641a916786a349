"""Test configuration as a ``Settings`` object, never as the process's environment.

A test states the variables it cares about on a ``Configuration`` (the ``config`` fixture),
which builds them into ``Settings`` with ``from_env`` over a plain dict (so every value is
parsed and bounded exactly as in a deployment) and hands that object to
``bootstrap.override``. Only the tests that check reading the environment itself use the
``env`` fixture (tests/conftest.py)."""
from __future__ import annotations

import time
from typing import Callable, Dict, Optional

from chalicelib import bootstrap
from chalicelib.core.settings import Settings, from_env

# What every test runs with unless it says otherwise: Bandwidth Meter's own variables.
BASE_VARIABLES: Dict[str, str] = {
    "TABLE_NAME": "bandwidth-meter-test",
    "AWS_REGION": "us-east-1",
    "ALERT_FROM": "alerts@bandwidth-meter.test",
    "PROMETHEUS_URL": "http://127.0.0.1:9",
    "COLLECT_LAG_SECONDS": "60",
    "STAGE": "dev",
}

# What boto itself reads from the process (fake credentials, so nothing reaches a real account).
BOTO_ENV: Dict[str, str] = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    # botocore >= 1.40 sends stream calls to account-based hosts moto's in-process mock does not route.
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
}


def _texts(variables: Dict[str, object]) -> Dict[str, Optional[str]]:
    return {name: None if value is None else str(value) for name, value in variables.items()}


def build_settings(**variables: object) -> Settings:
    """``Settings`` from the base variables and these (by variable name; values are str()-ed,
    None leaves a variable unset)."""
    return Configuration(**variables).settings()


class Configuration:
    """The variables one test configures Bandwidth Meter with, and the parts built from them."""

    def __init__(self, **variables: object) -> None:
        self.variables: Dict[str, str] = dict(BASE_VARIABLES)
        self.set(**variables)

    def set(self, **variables: object) -> "Configuration":
        """Change these variables (None unsets one); takes effect at the next ``settings()``/``start()``."""
        for name, value in _texts(variables).items():
            if value is None:
                self.variables.pop(name, None)
            else:
                self.variables[name] = value
        return self

    def settings(self) -> Settings:
        return from_env(self.variables)

    def start(self, clock: Callable[[], float] = time.time, **parts: object) -> bootstrap.Bootstrap:
        """The app's parts from these settings (and the parts given), bound to the table: what
        every handler then uses."""
        return bootstrap.override(self.settings(), clock, **parts)
