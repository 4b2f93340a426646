"""The event-storming board: the system's flow, drawn from the code's own declarations.

``GET /api/catalog/storming`` answers it as JSON and the ``/catalog`` page draws it as
sticky notes in the colours people know from event-storming workshops. Nothing here names
a business step: every note comes from what the services declare (eventing/service.py):

* a **command** is an HTTP route that declares what it puts on the bus
  (``openapi_extra=route_causes(...)``), or a command message a service sends;
* the **actor** before a route is whoever CONTRACT's access rules let call it (access.py);
* the **aggregate** is the service that takes the command;
* the **events** are what the route or handler declares it causes;
* a **policy** is a service's handler of an event (``handles(..., causes=...)``): it may
  cause more events and commands, which are followed in turn;
* the **external systems** a reaction calls are the service's circuit breakers;
* the **read model** is the state a reacting service keeps, and the **queries** are its
  GET routes (except those answering fixed data: ``fixed_data()``).

Each flow is a tree read left to right, one per command route. An event already drawn in
the same flow is drawn again but not followed again (``repeated``), so a loop ends.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

from pizza.eventing.catalog import Registry, registry
from pizza.eventing.service import (
    READ_MODEL,
    ROUTE_CAUSES,
    Handler,
    Key,
    Service,
    caused_by_route,
)
from pizza.web import access

# The sticky notes, left to right, in the colours of the workshops (the page's legend).
LEGEND: tuple[dict[str, str], ...] = (
    {"kind": "actor", "colour": "small yellow",
     "meaning": "a person, by role, who may give the command"},
    {"kind": "command", "colour": "blue",
     "meaning": "a command: an HTTP route that changes something, or a command message"},
    {"kind": "aggregate", "colour": "pale yellow",
     "meaning": "the service that takes the command and decides"},
    {"kind": "event", "colour": "orange",
     "meaning": "a domain event (or a command's answer) on the bus, with its version"},
    {"kind": "policy", "colour": "lilac",
     "meaning": "a service reacting to an event: whenever this happens, do that"},
    {"kind": "external", "colour": "pink",
     "meaning": "an external system a reaction calls"},
    {"kind": "readModel", "colour": "green",
     "meaning": "a read model: what a service keeps of the events it handles"},
    {"kind": "query", "colour": "pale green",
     "meaning": "a query: a GET route that reads the read model"},
)
MAX_DEPTH = 24  # notes in a row; the declarations' chains are far shorter


@dataclass
class Note:
    kind: str
    label: str
    detail: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    children: list[Note] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "label": self.label, "detail": self.detail,
                **self.facts, "children": [child.to_json() for child in self.children]}


@dataclass(frozen=True)
class Operation:
    """One HTTP route of a service, as its OpenAPI entry states it."""

    method: str
    path: str
    summary: str
    causes: tuple[Key, ...]
    read_model: bool  # a GET route reading what the service's handlers recorded
    declared: bool  # says what it causes (route_causes), even if that is nothing


@dataclass(frozen=True)
class Reaction:
    """A service's handler of one message type and version."""

    service: Service
    trigger: Key
    handler: Handler
    causes: tuple[Key, ...]


def operations(service: Service) -> list[Operation]:
    """The service's routes with their paths, methods and extensions, as FastAPI resolves
    them (prefixes and included routers too): from the OpenAPI document of its router."""
    if service.router is None:
        return []
    app = FastAPI()
    app.include_router(service.router)
    found = []
    for path, item in app.openapi().get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict):
                continue
            found.append(Operation(
                method.upper(), path, str(op.get("summary", "")),
                tuple(caused_by_route(op)),
                method.upper() == "GET" and op.get(READ_MODEL, True) is not False,
                ROUTE_CAUSES in op))
    return found


def reactions(services: Sequence[Service]) -> dict[Key, list[Reaction]]:
    """Who handles each message type and version, and what each handler causes."""
    found: dict[Key, list[Reaction]] = {}
    for service in services:
        for sub in service.subscriptions.values():
            for key, handler in sorted(sub.handlers.items()):
                caused = tuple(m.info.key for m in sub.causes.get(key, ()))
                found.setdefault(key, []).append(Reaction(service, key, handler, caused))
    return found


def words(name: str) -> str:
    """place_order -> Place order; Place Order -> Place order; OrderConfirmed stays."""
    text = re.sub(r"[_-]+", " ", name).strip()
    if " " in text and all(w[:1].isupper() for w in text.split()):
        text = text.lower()
    return text[:1].upper() + text[1:]


def first_line(text: str | None) -> str:
    line = (text or "").strip().split("\n\n")[0]
    return " ".join(line.split())[:200]


def actors(method: str, path: str,
           who_may: Callable[[str, str], frozenset[str]]) -> list[str]:
    """The roles CONTRACT's rules let call the route; operators only if no one else."""
    concrete = re.sub(r"\{[^}]+\}", "x", path)
    roles = sorted(who_may(method, concrete))
    people = [role for role in roles if role != "operator"]
    return people or roles


class Board:
    def __init__(self, services: Sequence[Service], known: Registry,
                 who_may: Callable[[str, str], frozenset[str]]) -> None:
        self.services = list(services)
        self.registry = known
        self.who_may = who_may
        self.reactions = reactions(self.services)
        self.operations = {service.name: operations(service) for service in self.services}

    def flows(self) -> list[Note]:
        """One flow per command route, the services in their order, routes in theirs."""
        flows = []
        for service in self.services:
            for op in self.operations[service.name]:
                if op.method == "GET" or not op.causes:
                    continue
                roles = actors(op.method, op.path, self.who_may)
                aggregate = Note("aggregate", service.name, service.description,
                                 {"service": service.name})
                seen: set[Key] = set()  # messages and read models drawn in this flow
                aggregate.children = [self.message(key, seen, 3) for key in op.causes]
                command = Note("command", words(op.summary), f"{op.method} {op.path}",
                               {"method": op.method, "path": op.path},
                               [aggregate])
                flows.append(Note("actor", " or ".join(roles), "",
                                  {"roles": roles}, [command]))
        return flows

    def message(self, key: Key, seen: set[Key], depth: int) -> Note:
        """A message's note, followed by the reactions to it (once per flow)."""
        cls = self.registry.get(*key)
        kind = cls.info.kind if cls is not None else "event"
        facts: dict[str, Any] = {"type": key[0], "version": key[1], "messageKind": kind,
                                 "deprecated": False, "sunset": None, "repeated": False}
        detail = f"v{key[1]}"
        if cls is not None and cls.info.deprecated is not None:
            facts.update(deprecated=True, sunset=cls.info.deprecated.isoformat())
        if kind == "reply":
            detail += ", an answer"
        note = Note("command" if kind == "command" else "event", key[0], detail, facts)
        if key in seen or depth >= MAX_DEPTH:
            note.facts["repeated"] = True
            return note
        seen.add(key)
        note.children = [self.reaction(r, seen, depth + 1) for r in self.reactions.get(key, [])]
        return note

    def reaction(self, reaction: Reaction, seen: set[Key], depth: int) -> Note:
        """A policy (or, for a command, the aggregate taking it), then what follows."""
        cls = self.registry.get(*reaction.trigger)
        kind = "aggregate" if cls is not None and cls.info.kind == "command" else "policy"
        service = reaction.service
        note = Note(kind, f"{service.name}: {words(reaction.handler.__name__).lower()}",
                    first_line(reaction.handler.__doc__), {"service": service.name})
        note.children += [Note("external", words(name), f"called by {service.name}")
                          for name in sorted(service.breakers)]
        note.children += [self.message(key, seen, depth + 1) for key in reaction.causes]
        model = self.read_model(service, seen)
        if model is not None:
            note.children.append(model)
        return note

    def read_model(self, service: Service, seen: set[Key]) -> Note | None:
        """The service's read model and its queries; its queries once per flow."""
        queries = [op for op in self.operations[service.name] if op.read_model]
        if not queries:
            return None
        note = Note("readModel", f"{service.name} read model", "",
                    {"service": service.name, "repeated": False})
        drawn = (f"read model of {service.name}", 0)  # not a message type: no clash
        if drawn in seen:
            note.facts["repeated"] = True
            return note
        seen.add(drawn)
        note.children = [Note("query", f"{op.method} {op.path}", words(op.summary),
                              {"method": op.method, "path": op.path}) for op in queries]
        return note


def board(services: Sequence[Service], known: Registry = registry,
          who_may: Callable[[str, str], frozenset[str]] = access.who_may) -> dict[str, Any]:
    """The whole board: the legend and one flow (a tree of notes) per command route."""
    drawn = Board(services, known, who_may)
    return {"legend": list(LEGEND), "flows": [flow.to_json() for flow in drawn.flows()]}
