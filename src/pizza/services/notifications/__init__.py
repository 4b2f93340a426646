"""Notifications: delivers SendEmail commands over SMTP and answers EmailSent/EmailFailed.

The handler records the email (handlers.py); the sender sends it after the commit and
answers (sender.py): the outbox pattern, applied to SMTP.

Also home of the development SMTP sink (``mailbox``) that ``pizza up`` runs in place of a
real mail server, and of ``GET /api/mailbox`` that shows what it received.
"""

from __future__ import annotations

from pizza.contracts.notifications import EmailFailedV1, EmailSentV1
from pizza.eventing import Service
from pizza.services.notifications.tables import metadata

service = Service(
    "notifications", tables=metadata,
    description="Sends emails over SMTP for SendEmail commands; keeps the dev SMTP sink.",
)
service.declare_publishes(EmailSentV1, EmailFailedV1)

# Registered on import: the handler, the route, and the sink's start/stop.
from pizza.services.notifications import (  # noqa: E402
    api,
    forgetting,
    handlers,
    mailbox,
    sender,
)
from pizza.services.notifications.mailbox import start_sink, stop_sink  # noqa: E402

service.router = api.router
service.on_start.append(mailbox.start_if_wanted)
service.on_start.append(sender.start)
# The sender stops (its claims given back) before the sink, which it may be sending to.
service.on_stop.append(sender.stop)
service.on_stop.append(mailbox.stop_on_stop)

__all__ = ["forgetting", "handlers", "service", "start_sink", "stop_sink"]
