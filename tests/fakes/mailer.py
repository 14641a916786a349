"""A recording mailer for unit tests: the ``Mailer`` port (chalicelib/core/ports.py), held to
the same contract as SES in tests/integration/test_contracts.py."""
from __future__ import annotations

from typing import List

from chalicelib.core.errors import MailError


class RecordingMailer:
    """A mailer for unit tests: keeps what it was asked to send; can be told to fail."""

    def __init__(self):
        self.sent: List[dict] = []
        self.failures_left = 0

    def send(self, to: List[str], subject: str, text: str, html: str) -> str:
        if self.failures_left:
            self.failures_left -= 1
            raise MailError("simulated SES outage")
        self.sent.append({"to": list(to), "subject": subject, "text": text, "html": html})
        return f"recorded-{len(self.sent)}"
