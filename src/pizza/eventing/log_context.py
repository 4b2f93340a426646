"""Which message a log line is about: set by the consumer while a handler runs.

A handler logs with a plain ``logging`` call; the structured log format
(``PIZZA_LOG_FORMAT=json``) adds the service, the queue, the message's type and id, its
correlationId, the orderId it concerns and its trace id from here. Cheap to set (one
tuple and a context variable per message); the fields are only worked out when a line
is actually written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, NamedTuple

from pizza.eventing.envelope import Metadata


class Handling(NamedTuple):
    service: str
    queue: str
    metadata: Metadata
    message: Any  # the typed message (its order_id, if it has one)


current: ContextVar[Handling | None] = ContextVar("pizza_handling", default=None)


@contextlib.contextmanager
def handling(service: str, queue: str, metadata: Metadata, message: Any) -> Iterator[None]:
    token = current.set(Handling(service, queue, metadata, message))
    try:
        yield
    finally:
        current.reset(token)


def fields() -> dict[str, str]:
    """The message being handled, as log fields (empty outside a handler)."""
    now = current.get()
    if now is None:
        return {}
    meta = now.metadata
    found = {"service": now.service, "queue": now.queue, "messageType": meta.type,
             "messageId": meta.id}
    if meta.correlation_id:
        found["correlationId"] = meta.correlation_id
    order_id = getattr(now.message, "order_id", None)
    if order_id is not None:
        found["orderId"] = str(order_id)
    traceparent = meta.traceparent
    if traceparent and len(traceparent) >= 35:
        found["traceId"] = traceparent[3:35]
    return found
