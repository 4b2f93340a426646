"""Notifications: delivers SendEmail commands over SMTP and answers EmailSent/EmailFailed.

The handler records the email (handlers.py); the sender sends it after the commit and
answers (sender.py): the outbox pattern, applied to SMTP.

Also home of the development SMTP sink (``mailbox``) that ``pizza up`` runs in place of a
real mail server, and of ``GET /api/mailbox`` that shows what it received.

``create(settings)`` builds the service; importing this package builds nothing.
"""

from __future__ import annotations

from pizza.config import Settings
from pizza.contracts.notifications import EmailFailedV1, EmailSentV1, SendEmailV1
from pizza.contracts.orders import CustomerForgottenV1
from pizza.eventing.service import inject
from pizza.services.notifications import api, forgetting, handlers
from pizza.services.notifications.mailbox import Sink, start_sink
from pizza.services.notifications.running import NotificationsService
from pizza.services.notifications.sender import EmailSender


def create(settings: Settings) -> NotificationsService:
    """Notifications sending to settings.smtp_host:smtp_port from settings.mail_from, with
    an SMTP sink there when ``settings.smtp_sink``."""
    sender = EmailSender(settings.smtp_host, settings.smtp_port)
    service = NotificationsService(sender)
    service.declare_publishes(EmailSentV1, EmailFailedV1)
    # EmailSent is answered by the sender after the commit, EmailFailed now or then.
    service.handles(SendEmailV1, max_in_flight=32, forgotten=handlers.recipient_forgotten,
                    causes=(EmailSentV1, EmailFailedV1))(
        inject(handlers.send_email, mail_from=settings.mail_from, sender=sender))
    service.handles(CustomerForgottenV1, causes=(EmailFailedV1,))(forgetting.forget_customer)
    service.router = api.router
    if settings.smtp_sink:
        service.sink = Sink(service, settings.smtp_host, settings.smtp_port)
        service.on_start.append(service.sink.start)
    service.on_start.append(sender.start)
    service.runs("email-sender", idle_seconds=0.0)(sender.send_due)
    # The sender stops (its claims given back) before the sink, which it may be sending to.
    service.on_stop.append(sender.stop)
    if service.sink is not None:
        service.on_stop.append(service.sink.stop)
    return service


__all__ = ["NotificationsService", "create", "start_sink"]
