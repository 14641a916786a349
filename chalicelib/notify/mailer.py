"""The mailer adapter: SES (v1 API, as LocalStack and moto serve it too)."""
from __future__ import annotations

from email.message import EmailMessage
from typing import Callable, List

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.core.errors import MailError
from chalicelib.core.ports import Mailer
from chalicelib.core.redact import redact


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
            # Recipients are counted, never named: this text reaches logs and the alert's stored error,
            # and SES's own message may quote an address (redacted); not chained, so a traceback
            # does not print SES's text unredacted.
            raise MailError(redact(f"SES did not accept the message to {len(to)} recipient(s): {e}")) from None
        return answer["MessageId"]


def mime_message(sender: str, to: List[str], subject: str, text: str, html: str,
                 message_id: str) -> EmailMessage:
    """The message as SES builds it from send_email: multipart/alternative, the plain text first
    and the HTML second (a mail client shows the last part it can render)."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, ", ".join(to), subject
    message["Message-ID"] = f"<{message_id}@local>"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


class CopyingMailer:
    """Sends through ``mailer`` and hands a copy of each message it sent, as sent, to ``keep``.

    For the local runtime's outbox: SES emulators keep only one body of a message (moto the HTML,
    labelled as the text), so the copy is taken here, where both parts are still at hand."""

    def __init__(self, mailer: Mailer, sender: str, keep: Callable[[EmailMessage], None]):
        self.mailer, self.sender, self.keep = mailer, sender, keep

    def send(self, to: List[str], subject: str, text: str, html: str) -> str:
        message_id = self.mailer.send(to, subject, text, html)
        self.keep(mime_message(self.sender, to, subject, text, html, message_id))
        return message_id
