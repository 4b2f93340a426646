"""SendEmail: record the email to send, in the handler's transaction; nothing more.

The handler never talks to the SMTP server: a network call inside a transaction holds
the database (on SQLite its one write lock) for as long as the server takes, and a crash
between the send and the commit would send the email again on redelivery. It writes a
row of ``outgoing_emails`` keyed by the command's id (a redelivered command finds it and
does nothing), and the sender (sender.py) sends it after the commit and answers
EmailSent or EmailFailed then.

What can be judged now is judged now: an email whose fields cannot make one (a line break
in a header, an address that is none) is answered EmailFailed at once. (A replyTo that
could never carry the answer is refused by the kernel before the handler runs.)
"""

from __future__ import annotations

from pizza.contracts.notifications import EmailFailedV1, SendEmailV1
from pizza.eventing import Context
from pizza.services.notifications import mailer, outgoing, sender, service


@service.handles(SendEmailV1, max_in_flight=32)
async def send_email(command: SendEmailV1, ctx: Context) -> None:
    meta = ctx.cause
    assert meta is not None  # a handler always has the message it handles
    message_id = mailer.message_id_for(meta.id)
    try:
        mailer.compose(command, message_id)
        mailer.check_addresses(command)
    except mailer.PermanentFailure as failure:
        if await outgoing.record(ctx.db, command, meta, message_id, failed=str(failure)):
            ctx.reply(EmailFailedV1(reason=str(failure)[:1000]))
        return
    if await outgoing.record(ctx.db, command, meta, message_id):
        ctx.on_commit(sender.wake)
