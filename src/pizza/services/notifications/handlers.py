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

The recipient and the body arrive sealed with the customer's key and are opened by the
kernel; if the customer was forgotten before the email went, the key is gone and the
command is answered EmailFailed "recipient forgotten" instead (``forgetting.py`` erases
what was recorded before).
"""

from __future__ import annotations

from pizza.contracts.notifications import EmailFailedV1, SendEmailV1
from pizza.eventing import Context
from pizza.services.notifications import mailer, outgoing
from pizza.services.notifications.sender import EmailSender

RECIPIENT_FORGOTTEN = "recipient forgotten"


async def recipient_forgotten(ctx: Context) -> None:
    """A SendEmail whose recipient was forgotten (its key erased) before it was sent: no
    email, and the sender hears why, once."""
    ctx.reply(EmailFailedV1(reason=RECIPIENT_FORGOTTEN))


# EmailSent is answered by the sender after the commit (sender.py), EmailFailed now or then.
async def send_email(command: SendEmailV1, ctx: Context, *, mail_from: str,
                     sender: EmailSender) -> None:
    """Record the email (its Message-ID in ``mail_from``'s domain); ``sender`` sends it
    after the commit."""
    meta = ctx.cause
    assert meta is not None  # a handler always has the message it handles
    message_id = mailer.message_id_for(meta.id, mail_from)
    try:
        mailer.compose(command, message_id)
        mailer.check_addresses(command)
    except mailer.PermanentFailure as failure:
        if await outgoing.record(ctx.db, command, meta, message_id, failed=str(failure),
                                 data_subject=ctx.data_subject):
            ctx.reply(EmailFailedV1(reason=str(failure)[:1000]))
        return
    if await outgoing.record(ctx.db, command, meta, message_id,
                             data_subject=ctx.data_subject):
        ctx.on_commit(sender.wake)
