"""The mailer adapter: SES (v1 API, as LocalStack and moto serve it too)."""
from __future__ import annotations

from typing import List

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.core.errors import MailError


class SesMailer:
    """The ``Mailer`` port (chalicelib/core/ports.py) on SES."""

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
            raise MailError(f"SES did not accept the message to {', '.join(to)}: {e}") from e
        return answer["MessageId"]
