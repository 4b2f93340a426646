"""The email as it goes on the wire (mailer.compose): what a mail reader makes of it is
what the command asked for, whatever the characters; no field can add a header."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import cast

import pytest

from pizza.contracts.notifications import SendEmailV1
from pizza.services.notifications import mailer

MESSAGE_ID = "<00000000-0000-4000-8000-000000000001@plant-based.pizza>"


def email(**fields: str) -> SendEmailV1:
    values = {"to": "ada@example.com", "from": "orders@plant-based.pizza",
              "subject": "Your receipt", "body": "Thank you for your order."} | fields
    return SendEmailV1.model_validate(values)


def read(raw: bytes) -> EmailMessage:
    """As a mail reader parses it."""
    return cast(EmailMessage, BytesParser(policy=policy.default).parsebytes(raw))


@pytest.mark.parametrize(("to", "sender", "subject", "body"), [
    ("ada@example.com", "orders@plant-based.pizza", "Your receipt", "Thanks.\nBye."),
    ("Zoë Ångström <zoe@example.com>", "Plant-Based Pizza <orders@plant-based.pizza>",
     "Crème brûlée — £5, " + "a long subject " * 15, "Total: £19.00\r\n" + "é" * 2000),
    ('"Doe, John" <john@example.com>', "orders@plant-based.pizza",
     "=?utf-8?q?looks_encoded?= but is not", ".a line starting with a dot\n\nend"),
])
def test_a_reader_gets_back_every_field(to: str, sender: str, subject: str,
                                        body: str) -> None:
    message = read(mailer.compose(email(to=to, subject=subject, body=body,
                                        **{"from": sender}), MESSAGE_ID))
    assert str(message["To"]) == to
    assert str(message["From"]) == sender
    assert str(message["Subject"]) == subject
    assert str(message["Message-ID"]) == MESSAGE_ID
    assert message["Date"].datetime is not None
    assert message.get_content().replace("\r\n", "\n") == body.replace("\r\n", "\n") + "\n"
    assert not message.defects


def test_every_line_is_short_enough_for_smtp() -> None:
    raw = mailer.compose(email(subject="ü" * 300, body="x" * 5000), MESSAGE_ID)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


@pytest.mark.parametrize("field", ["to", "from", "subject"])
@pytest.mark.parametrize("brk", ["\r\n", "\n", "\r", "\u2028", "\x85", "\x00"])
def test_a_line_break_in_a_header_field_is_refused_not_sent(field: str, brk: str) -> None:
    value = {"to": "ada@example.com", "from": "orders@plant-based.pizza",
             "subject": "Hello"}[field] + f"{brk}Bcc: everyone@example.com"
    with pytest.raises(mailer.PermanentFailure) as refused:
        mailer.compose(email(**{field: value}), MESSAGE_ID)
    assert "everyone" not in str(refused.value)


def test_a_body_cannot_add_a_header() -> None:
    message = read(mailer.compose(email(body="\r\nBcc: everyone@example.com\r\n"),
                                  MESSAGE_ID))
    assert message["Bcc"] is None
