"""The local runtime's outbox keeps each email as sent: multipart/alternative with the plain text
and the HTML, each labelled as what it is (the HTML was once saved as text/plain)."""
import email
from email import policy

import boto3
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from chalicelib.notify.mailer import CopyingMailer, SesMailer
from localrun import runtime as localrun_runtime

SENDER = "alerts@bandwidth-meter.local"
TEXT = "media-cdn reached 80% of its monthly quota: 800 MB of 1 GB.\n"
HTML = "<p><strong>media-cdn</strong> reached 80% of its monthly quota: 800 MB of 1 GB.</p>\n"


@pytest.fixture
def outbox(aws, tmp_path, monkeypatch):
    monkeypatch.setattr(localrun_runtime, "OUTBOX", tmp_path / "outbox")
    ses = boto3.client("ses", region_name="us-east-1")
    ses.verify_email_identity(EmailAddress=SENDER)
    runtime = localrun_runtime.Runtime(env={})
    return CopyingMailer(SesMailer(ses, SENDER), SENDER, runtime._save_email), tmp_path / "outbox"


def test_a_saved_email_parses_as_multipart_alternative_with_both_parts(outbox, capsys):
    mailer, folder = outbox
    message_id = mailer.send(["owner@example.com"], "[Bandwidth Meter] media-cdn reached 80%", TEXT, HTML)
    (saved,) = folder.glob("*.eml")
    assert saved.name.endswith(f"-{message_id}.eml")
    parsed = email.message_from_bytes(saved.read_bytes(), policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed["From"] == SENDER and parsed["To"] == "owner@example.com"
    assert parsed["Subject"] == "[Bandwidth Meter] media-cdn reached 80%"
    parts = {part.get_content_type(): part.get_content() for part in parsed.iter_parts()}
    assert parts == {"text/plain": TEXT, "text/html": HTML}
    assert parsed.get_body(preferencelist=("html",)).get_content() == HTML  # what a mail client renders
    assert "[email]" in capsys.readouterr().out


def test_the_copy_is_taken_after_ses_accepted_the_message(outbox):
    mailer, folder = outbox
    mailer.send(["owner@example.com"], "subject", TEXT, HTML)
    (sent,) = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages
    assert sent.destinations["ToAddresses"] == ["owner@example.com"] and len(list(folder.glob("*.eml"))) == 1


def test_a_message_ses_refused_is_not_saved(outbox):
    from chalicelib.core.errors import MailError

    mailer, folder = outbox
    mailer.sender = mailer.mailer.sender = "nobody@unverified.test"  # SES refuses an unverified sender
    with pytest.raises(MailError):
        mailer.send(["owner@example.com"], "subject", TEXT, HTML)
    assert not folder.exists() or list(folder.glob("*.eml")) == []
