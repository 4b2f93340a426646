"""The emails orders asks notifications to send, and the record of each one's fate.

Every SendEmail goes with a row in ``order_emails`` keyed by the command's message id,
written in the same transaction, so the answer (EmailSent or EmailFailed, whose
causationId is that id) always finds the row it completes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import bindparam, update

from pizza.contracts.notifications import SendEmailV1
from pizza.eventing import Context
from pizza.services.orders.menu import pounds
from pizza.services.orders.tables import order_emails

EmailKind = Literal["receipt", "thanks", "cancelled"]


def short_id(order_id: str) -> str:
    """The first block of the uuid: enough for a person to quote on the phone."""
    return order_id.split("-", 1)[0]


def receipt(order_id: str, to: str, lines: Sequence[dict[str, Any]], value_pence: int,
            fulfilment: str, *, sender: str) -> SendEmailV1:
    """The confirmation a customer gets the moment the order is accepted."""
    listed = [
        f"  {line['quantity']} x {line['name']}  "
        f"£{pounds(line['quantity'] * line['unitPricePence']):.2f}"
        for line in lines
    ]
    how = ("We will bring it to your delivery address." if fulfilment == "delivery"
           else "Collect it at the counter when it is ready.")
    body = "\n".join([
        "Thank you for ordering from Plant-Based Pizza.",
        "",
        f"Order {order_id}",
        *listed,
        f"Total: £{pounds(value_pence):.2f}",
        "",
        how,
    ])
    return SendEmailV1(to=to, sender=sender,
                       subject=f"Your Plant-Based Pizza order {short_id(order_id)}",
                       body=body)


def thanks(order_id: str, to: str, value_pence: int, fulfilment: str, *,
           sender: str) -> SendEmailV1:
    """The note sent once the order has reached the customer."""
    how = "delivered" if fulfilment == "delivery" else "collected"
    body = "\n".join([
        f"Your order {order_id} (£{pounds(value_pence):.2f}) has been {how}.",
        "Thank you for choosing Plant-Based Pizza. Enjoy your meal!",
    ])
    return SendEmailV1(to=to, sender=sender,
                       subject=f"Thank you for your Plant-Based Pizza order {short_id(order_id)}",
                       body=body)


def cancelled(order_id: str, to: str, reason: str, *, sender: str) -> SendEmailV1:
    """The note sent when an order ends cancelled, by the customer or because it could not
    be taken (e.g. its delivery address never became known)."""
    body = "\n".join([
        f"Your order {order_id} has been cancelled: {reason}.",
        "Nothing will be cooked or delivered, and you will not be charged.",
        "We hope to see you again at Plant-Based Pizza.",
    ])
    return SendEmailV1(to=to, sender=sender,
                       subject=f"Your Plant-Based Pizza order {short_id(order_id)} "
                               "is cancelled",
                       body=body)


# What orders keeps as a forgotten customer's email address (forgetting.py): no email is
# sent to it.
FORGOTTEN = ""


async def send(ctx: Context, order_id: str, kind: EmailKind, email: SendEmailV1,
               customer_id: str) -> None:
    """Send the command (answer to our reply subject) and record it as pending. Its
    address and body are the customer's personal data, sealed with their key."""
    meta = ctx.send(email, personal_data_of=customer_id)
    await ctx.db.execute(_RECORD, {
        "message_id": meta.id, "order_id": order_id, "kind": kind, "status": "pending",
        "detail": None, "created_at": datetime.now(UTC)})


_RECORD = order_emails.insert()


async def record_answer(ctx: Context, status: Literal["sent", "failed"], detail: str) -> bool:
    """Note the answer to the command this reply is caused by; False if we know no such.

    A "sent" is final: a late "failed" (say, from a retried send) does not overwrite it.
    """
    command_id = ctx.cause.causation_id if ctx.cause else None
    if command_id is None:
        return False
    result = await ctx.db.execute(_ANSWERED, {"command_id": command_id, "status": status,
                                              "detail": detail})
    return bool(result.rowcount)


_ANSWERED = update(order_emails).where(order_emails.c.message_id == bindparam("command_id"),
                                       order_emails.c.status != "sent")
