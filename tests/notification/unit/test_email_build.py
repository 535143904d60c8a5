"""The email as it goes on the wire (``build_email``, flattened as aiosmtplib flattens it), read back by the standard
library's modern parser, as a mail client would: headers, both parts, and text outside ASCII."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest
from aiosmtplib.email import flatten_message

from notification.adapter.smtp_sender import build_email
from notification.model.message import OutgoingMessage

pytestmark = pytest.mark.unit


def _wire(sender: str, message: OutgoingMessage) -> tuple[bytes, EmailMessage]:
    raw = flatten_message(build_email(sender, message))
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return raw, parsed


def _parts(parsed: EmailMessage) -> tuple[str, str]:
    plain, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None and html is not None
    return plain.get_content(), html.get_content()


def test_an_ascii_message_reads_back_as_it_was_written() -> None:
    message = OutgoingMessage("<n-1@kassa.example>", "ada@example.com", "Order o-1 confirmed", "Hello\nAda", "<p/>")
    raw, parsed = _wire("Kassa <orders@kassa.example>", message)
    assert raw.isascii() and parsed.get_content_type() == "multipart/alternative"
    assert (parsed["From"], parsed["To"], parsed["Subject"], parsed["Message-ID"]) == (
        "Kassa <orders@kassa.example>",
        "ada@example.com",
        "Order o-1 confirmed",
        "<n-1@kassa.example>",
    )
    assert parsed["Date"].datetime.tzinfo is not None
    plain, html = _parts(parsed)
    assert (plain.rstrip("\n"), html.rstrip("\n")) == ("Hello\nAda", "<p/>")
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]


def test_text_outside_ascii_is_encoded_and_reads_back_whole() -> None:
    subject = "Commande o-2 confirmée : 210,65 € " + "très " * 40  # folded over several lines
    text = "Grüße, Zoë — " + "ä" * 3000  # a line far longer than SMTP's 998 octets
    message = OutgoingMessage("<n-2@kassa.example>", "zoe@example.com", subject, text, "<p>Été 😀</p>")
    raw, parsed = _wire("Boutique Été <shop@example.com>", message)
    assert raw.isascii() and max(len(line) for line in raw.splitlines()) <= 998
    assert b"<shop@example.com>" in raw  # the address itself is never encoded
    assert (parsed["From"].addresses[0].display_name, parsed["From"].addresses[0].addr_spec) == (
        "Boutique Été",
        "shop@example.com",
    )
    assert parsed["Subject"] == subject
    plain, html = _parts(parsed)
    assert (plain.rstrip("\n"), html.rstrip("\n")) == (text, "<p>Été 😀</p>")


@pytest.mark.parametrize("field", ["recipient", "subject", "message_id"])
def test_a_line_break_in_a_header_is_refused(field: str) -> None:
    values = {"message_id": "<n-3@kassa.example>", "recipient": "ada@example.com", "subject": "Order o-3"}
    values[field] += "\r\nBcc: eve@example.com"
    with pytest.raises(ValueError, match="line break"):
        build_email("orders@kassa.example", OutgoingMessage(text="t", html="h", **values))
