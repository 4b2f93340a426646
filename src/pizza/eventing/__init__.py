"""The event-driven kernel: envelopes, message declarations, outbox, inbox, consumers.

It knows nothing about pizza. A service declares what it handles and publishes
(``Service``), and a ``ServiceHost`` or ``Runtime`` runs it on a transport.
"""

from pizza.eventing.catalog import (
    Command,
    Event,
    Message,
    MessageInfo,
    Reply,
    command,
    event,
    registry,
    reply,
)
from pizza.eventing.context import Context
from pizza.eventing.envelope import Envelope, MalformedMessage, Metadata
from pizza.eventing.host import Runtime, ServiceHost
from pizza.eventing.service import Backoff, Reject, Service, Subscription

__all__ = [
    "Backoff",
    "Command",
    "Context",
    "Envelope",
    "Event",
    "MalformedMessage",
    "Message",
    "MessageInfo",
    "Metadata",
    "Reject",
    "Reply",
    "Runtime",
    "Service",
    "ServiceHost",
    "Subscription",
    "command",
    "event",
    "registry",
    "reply",
]
