"""The SendEmail command, handled by notifications, and its two answers.

The recipient and the body are personal data: sealed on the bus with the customer's key
(``pizza.eventing.personal``), so forgetting the customer makes every copy unreadable.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from pizza.contracts.bounds import EmailAddress, EmailBody, EmailSubject, MessageId, Reason
from pizza.eventing import Command, Reply, command, reply
from pizza.eventing.personal import Personal


@command("SendEmail", version=1, target="notifications",
         description="Send this email; answer EmailSent or EmailFailed on replyTo.")
class SendEmailV1(Command):
    to: Annotated[EmailAddress, Personal]
    sender: EmailAddress = Field(alias="from")
    subject: EmailSubject
    body: Annotated[EmailBody, Personal]


@reply("EmailSent", version=1, source="notifications",
       description="The email was handed to the SMTP server.")
class EmailSentV1(Reply):
    message_id: MessageId


@reply("EmailFailed", version=1, source="notifications",
       description="The email could not be sent; the reason says why (never quoting the "
                   "address or the body).")
class EmailFailedV1(Reply):
    reason: Reason
