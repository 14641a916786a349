"""The mailer adapter: SES (v1 API, as LocalStack and moto serve it too)."""
from __future__ import annotations

from typing import List, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.core.errors import MailError
from chalicelib.core.redact import redact


class Mailer(Protocol):
    def send(self, to: List[str], subject: str, text: str, html: str) -> str:
        """Send one message; return the provider's message id or raise MailError."""


class SesMailer:
    def __init__(self, client, sender: str):
        self.client = client
        self.sender = sender

    def send(self, to: List[str], subject: str, text: str, html: str) -> str:
        try:
            answer = self.client.send_email(
                Source=self.sender,
                Destination={"ToAddresses": list(to)},
                Message={
                    "Subject": {"Data": subject, "Charset": "UTF-8"},
                    "Body": {"Text": {"Data": text, "Charset": "UTF-8"},
                             "Html": {"Data": html, "Charset": "UTF-8"}},
                },
            )
        except (ClientError, BotoCoreError) as e:
            # Recipients are counted, never named: this text reaches logs and the alert's stored error,
            # and SES's own message may quote an address (redacted); not chained, so a traceback
            # does not print SES's text unredacted.
            raise MailError(redact(f"SES did not accept the message to {len(to)} recipient(s): {e}")) from None
        return answer["MessageId"]
