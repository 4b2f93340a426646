"""The SendEmail command, handled by notifications, and its two answers."""

from __future__ import annotations

from pydantic import Field

from pizza.contracts.bounds import EmailAddress, EmailBody, EmailSubject, MessageId, Reason
from pizza.eventing import Command, Reply, command, reply


@command("SendEmail", version=1, target="notifications",
         description="Send this email; answer EmailSent or EmailFailed on replyTo.")
class SendEmailV1(Command):
    to: EmailAddress
    sender: EmailAddress = Field(alias="from")
    subject: EmailSubject
    body: EmailBody


@reply("EmailSent", version=1, source="notifications",
       description="The email was handed to the SMTP server.")
class EmailSentV1(Reply):
    message_id: MessageId


@reply("EmailFailed", version=1, source="notifications",
       description="The email could not be sent; the reason says why.")
class EmailFailedV1(Reply):
    reason: Reason
