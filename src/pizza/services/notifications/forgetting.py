"""CustomerForgotten: erase what notifications keeps of a forgotten customer.

Notifications never learns customer ids from SendEmail (its data is ``to, from, subject,
body``); it knows whose personal data an email is by the key reference the command was
sealed for (``outgoing_emails.data_subject``), which is a hash of the customer id. So:

* every outgoing email of that customer is deleted; one not sent yet is answered
  EmailFailed "recipient forgotten" (in its own story), as a command that arrives after
  the key was purged is;
* the mailbox (the SMTP sink) forgets the letters to those addresses, unless another
  customer's emails went to the same address.

Emails done longer ago than the outgoing rows are kept (a week, outgoing.KEPT) are no
longer linked to a customer: a mailbox letter older than that stays. The mailbox stands in
for the customer's own mail provider, which the system could not erase either.
"""

from __future__ import annotations

import logging

from sqlalchemy import delete, func, select

from pizza.contracts.notifications import EmailFailedV1
from pizza.contracts.orders import CustomerForgottenV1
from pizza.eventing import Context
from pizza.eventing.personal import subject_ref
from pizza.services.notifications import outgoing
from pizza.services.notifications.handlers import RECIPIENT_FORGOTTEN
from pizza.services.notifications.tables import mailbox, mailbox_received
from pizza.services.notifications.tables import outgoing_emails as rows

log = logging.getLogger("pizza.services.notifications")


async def forget_customer(event: CustomerForgottenV1, ctx: Context) -> None:
    ref = subject_ref(event.customer_id)
    theirs = (await ctx.db.execute(
        select(rows).where(rows.c.data_subject == ref))).mappings().all()
    if not theirs:
        return
    for row in theirs:
        if row["status"] == outgoing.PENDING:  # not sent: its sender hears why, once
            email = outgoing.OutgoingEmail.of(row)
            Context(ctx.service, ctx.db, cause=email.command, outgoing=ctx.outgoing,
                    committed=ctx.committed, transaction=ctx.transaction,
                    ).reply(EmailFailedV1(reason=RECIPIENT_FORGOTTEN))
    await ctx.db.execute(delete(rows).where(rows.c.data_subject == ref))
    addresses = {str(row["to"]).strip().lower() for row in theirs}
    shared = set((await ctx.db.execute(
        select(func.lower(rows.c.to)).where(func.lower(rows.c.to).in_(addresses)))).scalars())
    mine = sorted(addresses - shared)
    if mine:
        await ctx.db.execute(delete(mailbox).where(func.lower(mailbox.c.to).in_(mine)))
        await ctx.db.execute(delete(mailbox_received).where(
            mailbox_received.c.recipient.in_(mine)))
    log.info("a customer was forgotten: %d email(s) and %d address(es) erased",
             len(theirs), len(mine))
