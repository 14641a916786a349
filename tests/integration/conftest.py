"""Fixtures shared by integration modules (the session-wide ones are in tests/support/)."""
from tests.support.package import packaged_template  # noqa: F401  (a session fixture: one package build)
