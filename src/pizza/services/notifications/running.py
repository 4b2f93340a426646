"""The notifications service as its tests and tools see it (``create`` makes it)."""

from __future__ import annotations

from pizza.eventing import Service
from pizza.services.notifications.mailbox import Sink
from pizza.services.notifications.sender import EmailSender
from pizza.services.notifications.tables import metadata


class NotificationsService(Service):
    """Notifications with its email sender and, if its settings want one, its SMTP sink."""

    def __init__(self, sender: EmailSender) -> None:
        super().__init__(
            "notifications", tables=metadata,
            description="Sends emails over SMTP for SendEmail commands; keeps the dev SMTP "
                        "sink.",
        )
        self.sender = sender
        self.sink: Sink | None = None
