"""The event-storming board is drawn from the services' own declarations.

The first tests read the real system's board (the order's story as the code declares
it); the others add a service of their own and see it drawn, which no hand-kept list
could do.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from pizza.app import load
from pizza.contracts.orders import OrderCompletedV1
from pizza.eventing import Context, Event, MessageInfo, Service
from pizza.eventing.catalog import Registry, registry
from pizza.eventing.service import route_causes
from pizza.web import catalog as catalog_routes
from pizza.web.storming import board, operations, words


def walk(note: dict[str, Any], path: tuple[dict[str, Any], ...] = ()
         ) -> Iterator[tuple[dict[str, Any], ...]]:
    """Every note with the notes leading to it (the path from its flow's actor)."""
    here = (*path, note)
    yield here
    for child in note["children"]:
        yield from walk(child, here)


def flow(drawn: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    found = [f for f in drawn["flows"]
             if f["children"][0]["method"] == method and f["children"][0]["path"] == path]
    assert len(found) == 1, f"{method} {path}: {len(found)} flows"
    return found[0]


def labels(path: tuple[dict[str, Any], ...]) -> list[str]:
    return [f"{n['kind']}:{n['label']}" + (f" v{n['version']}" if "version" in n else "")
            for n in path]


def paths_to(note: dict[str, Any], kind: str, label: str) -> list[list[str]]:
    return [labels(p) for p in walk(note) if p[-1]["kind"] == kind and p[-1]["label"] == label]


@pytest.fixture(scope="module")
def system() -> dict[str, Any]:
    return board(load())


def test_placing_an_order_leads_from_the_customer_to_both_order_confirmed_versions(
        system: dict[str, Any]) -> None:
    placing = flow(system, "POST", "/api/orders")
    assert placing["kind"] == "actor" and placing["roles"] == ["customer"]
    command = placing["children"][0]
    assert command["kind"] == "command" and command["label"] == "Place order"
    aggregate = command["children"][0]
    assert (aggregate["kind"], aggregate["label"]) == ("aggregate", "orders")
    caused = [(n["kind"], n["label"], n["version"]) for n in aggregate["children"]]
    assert caused == [("event", "OrderConfirmed", 1), ("event", "OrderConfirmed", 2),
                      ("command", "SendEmail", 1)]
    v1, v2 = aggregate["children"][:2]
    assert v1["deprecated"] and v1["sunset"], "v1's sunset is on its note"
    assert not v2["deprecated"]


def test_order_confirmed_v2_feeds_tracking_and_the_order_query_v1_the_kitchen(
        system: dict[str, Any]) -> None:
    placing = flow(system, "POST", "/api/orders")
    to_query = paths_to(placing, "query", "GET /api/orders/{orderId}")
    assert ["actor:customer", "command:Place order", "aggregate:orders",
            "event:OrderConfirmed v2", "policy:tracking: order confirmed",
            "readModel:tracking read model", "query:GET /api/orders/{orderId}"] in to_query
    kitchen = [p for p in walk(placing) if p[-1]["label"] == "kitchen: open ticket"]
    assert len(kitchen) == 1
    assert labels(kitchen[0])[-2:] == ["event:OrderConfirmed v1",
                                       "policy:kitchen: open ticket"]
    assert [n["label"] for n in kitchen[0][-1]["children"]] == ["kitchen read model"]


def test_send_email_is_taken_by_notifications_whose_answers_go_back_to_orders(
        system: dict[str, Any]) -> None:
    placing = flow(system, "POST", "/api/orders")
    answers = [p for p in walk(placing) if p[-1]["label"] in ("EmailSent", "EmailFailed")]
    assert {p[-1]["label"] for p in answers} == {"EmailSent", "EmailFailed"}
    for path in answers:
        assert labels(path)[-3:-1] == ["command:SendEmail v1",
                                       "aggregate:notifications: send email"]
        assert path[-1]["messageKind"] == "reply"
        assert path[-1]["children"][0]["label"].startswith("orders: email")


def test_a_delivery_goes_on_to_completion_points_and_the_loyalty_saas(
        system: dict[str, Any]) -> None:
    delivered = flow(system, "POST", "/api/delivery/jobs/{orderId}/delivered")
    assert delivered["roles"] == ["driver"]
    points = paths_to(delivered, "event", "LoyaltyPointsAdded")
    assert points == [["actor:driver", "command:Delivered", "aggregate:delivery",
                       "event:OrderDelivered v1", "policy:orders: complete delivered",
                       "event:OrderCompleted v1", "policy:loyalty: add points",
                       "event:LoyaltyPointsAdded v1"]]
    assert paths_to(delivered, "external", "Loyalty saas"), "the breaker's system is drawn"


def test_every_message_a_service_produces_is_drawn_from_a_route_or_a_handler() -> None:
    """A message no route or handler declares as caused would be missing from the board."""
    for service in load():
        caused = {key for op in operations(service) for key in op.causes}
        caused |= {m.info.key for sub in service.subscriptions.values()
                   for messages in sub.causes.values() for m in messages}
        produced = {m.info.key for m in (*service.publishes, *service.sends)}
        assert produced <= caused, f"{service.name}: {sorted(produced - caused)}"


def test_every_route_that_changes_something_says_what_it_puts_on_the_bus() -> None:
    """Else the board would silently miss a command: ``route_causes()`` with nothing is
    how a route says it changes only its own service's state."""
    silent = [f"{service.name}: {op.method} {op.path}" for service in load()
              for op in operations(service) if op.method != "GET" and not op.declared]
    assert not silent, "declare openapi_extra=route_causes(...) on " + ", ".join(silent)


def test_a_repeated_event_is_drawn_but_not_followed_again(system: dict[str, Any]) -> None:
    for drawn in system["flows"]:
        followed = [p[-1]["label"] + str(p[-1]["version"]) for p in walk(drawn)
                    if p[-1]["kind"] in ("event", "command") and "version" in p[-1]
                    and not p[-1]["repeated"]]
        assert len(followed) == len(set(followed)), drawn["children"][0]["path"]


# -- a service of the test's own ---------------------------------------------------------


class OvenLitV1(Event):
    oven_id: str


class BreadBakedV1(Event):
    order_id: str


OvenLitV1.info = MessageInfo("event", "OvenLit", 1, "bakery", "An oven is hot.")
BreadBakedV1.info = MessageInfo("event", "BreadBaked", 1, "bakery")


def bakery() -> tuple[Service, Registry]:
    """Bakes bread for every completed order; its oven is lit by hand, which bakes too."""
    known = Registry(dict(registry.messages))  # the process's registry stays as it is
    known.add(OvenLitV1)
    known.add(BreadBakedV1)
    service = Service("bakery", description="Bread for every completed order.")
    service.declare_publishes(OvenLitV1, BreadBakedV1)

    @service.handles(OrderCompletedV1, causes=(BreadBakedV1,))
    async def bake_bread(event: OrderCompletedV1, ctx: Context) -> None:
        """Every completed order earns a loaf."""

    @service.handles(OvenLitV1, causes=(BreadBakedV1, OvenLitV1))
    async def bake_when_hot(event: OvenLitV1, ctx: Context) -> None:
        """A hot oven bakes, and stays lit (a loop the board must end)."""

    routes = APIRouter()

    @routes.post("/api/bakery/ovens/{ovenId}/light", openapi_extra=route_causes(OvenLitV1))
    async def light_oven(oven_id: str) -> None: ...

    @routes.get("/api/bakery/loaves")
    async def list_loaves() -> list[str]:
        return []

    service.router = routes
    return service, known


def test_a_service_added_to_the_system_is_drawn_where_its_declarations_put_it() -> None:
    service, known = bakery()
    drawn = board([*load(), service], known)
    delivered = flow(drawn, "POST", "/api/delivery/jobs/{orderId}/delivered")
    assert ["policy:orders: complete delivered", "event:OrderCompleted v1",
            "policy:bakery: bake bread", "event:BreadBaked v1"] in [
        path[4:] for path in paths_to(delivered, "event", "BreadBaked")]
    assert paths_to(delivered, "query", "GET /api/bakery/loaves")
    lighting = flow(drawn, "POST", "/api/bakery/ovens/{ovenId}/light")
    assert lighting["roles"] == ["operator"], "no rule names it: the operator's"
    assert lighting["children"][0]["label"] == "Light oven"
    lit = [p for p in walk(lighting) if p[-1]["label"] == "OvenLit"]
    assert [p[-1]["repeated"] for p in lit] == [False, True], "the loop ends"
    assert flow(board(load()), "POST", "/api/orders"), "and without it, no bakery"
    assert not any(p[-1]["label"].startswith("bakery") for f in board(load())["flows"]
                   for p in walk(f))


def test_a_handler_cannot_claim_to_cause_what_its_service_does_not_publish() -> None:
    service = Service("bakery")
    with pytest.raises(ValueError, match="BreadBaked v1"):
        service.handles(OrderCompletedV1, causes=(BreadBakedV1,))


def test_the_legend_names_every_colour_in_words(system: dict[str, Any]) -> None:
    kinds = {p[-1]["kind"] for f in system["flows"] for p in walk(f)}
    legend = {entry["kind"]: entry["colour"] for entry in system["legend"]}
    assert kinds <= set(legend)
    assert legend["event"] == "orange" and legend["command"] == "blue"
    assert legend["policy"] == "lilac" and legend["readModel"] == "green"


def test_names_read_as_words() -> None:
    assert words("place_order") == "Place order"
    assert words("List Tickets") == "List tickets"
    assert words("OrderConfirmed") == "OrderConfirmed"


async def test_the_board_and_the_causes_are_served_by_any_one_service() -> None:
    """``pizza serve kitchen`` answers the whole system's board, and its OpenAPI document
    says what the kitchen's buttons put on the bus."""
    kitchen = load(["kitchen"])
    app = FastAPI()
    app.include_router(catalog_routes.router(kitchen))
    app.include_router(kitchen[0].router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as client:
        drawn = (await client.get("/api/catalog/storming")).json()
        listed = (await client.get("/api/catalog")).json()
        document = (await client.get("/openapi.json")).json()
    assert flow(drawn, "POST", "/api/orders")["roles"] == ["customer"]
    assert {e["liveConsumers"] for e in listed} == {None}, "no broker asked: not known"
    start = document["paths"]["/api/kitchen/tickets/{orderId}/start"]["post"]
    assert start["x-pizza-causes"] == [{"type": "OrderPreparing", "version": 1,
                                        "kind": "event"}]
