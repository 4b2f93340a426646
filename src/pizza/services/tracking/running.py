"""The tracking service as its routes see it (``create`` in ``__init__`` makes it)."""

from __future__ import annotations

from pizza.eventing import Service
from pizza.services.tracking.journal import Journals
from pizza.services.tracking.readmodel import ReadModels
from pizza.services.tracking.tables import metadata


class TrackingService(Service):
    """Tracking with its read model and its journal, each open while it runs."""

    def __init__(self, read_models: ReadModels) -> None:
        super().__init__(
            "tracking",
            tables=metadata,
            description="The query side (CQRS): each order's read model, folded from the "
                        "events of its story, served over HTTP and as a live Server-Sent "
                        "Events stream.",
        )
        self.read_models = read_models
        self.journals = Journals()
