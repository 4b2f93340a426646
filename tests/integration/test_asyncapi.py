"""The AsyncAPI 3.0 document and the catalog routes, checked by the official parser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from pizza.app import load
from pizza.eventing import registry
from pizza.eventing.asyncapi import asyncapi
from pizza.eventing.catalog import Registry
from pizza.web import catalog as catalog_routes

VALIDATOR = Path(__file__).with_name("asyncapi_validate.mjs")
PARSER_DIR = Path(os.environ.get("PIZZA_ASYNCAPI_PARSER_DIR")
                  or Path.home() / ".cache" / "pizza-asyncapi")


def contract_registry() -> Registry:
    """The contracts' messages only: other tests declare messages in the global registry."""
    load()
    contracts = Registry()
    for cls in registry:
        if cls.__module__.startswith("pizza.contracts"):
            contracts.add(cls)
    return contracts


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return asyncapi(contract_registry(), load(), "Plant-Based Pizza", "0.1.0",
                    "nats://127.0.0.1:4222,nats://127.0.0.1:4223")  # the parser checks them


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    target: Any = document
    for part in ref[2:].split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    return target


def test_channels_are_the_subjects(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    assert document["servers"] == {"nats-1": {"host": "127.0.0.1:4222", "protocol": "nats"},
                                   "nats-2": {"host": "127.0.0.1:4223", "protocol": "nats"}}
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert {"pizza.events.orders.OrderConfirmed.v1", "pizza.events.orders.OrderConfirmed.v2",
            "pizza.events.kitchen.OrderPrepared.v1", "pizza.events.loyalty.LoyaltyPointsAdded.v1",
            "pizza.commands.notifications.SendEmail.v1", "pizza.replies.orders"} <= addresses
    replies = document["channels"]["pizza.replies.orders"]["messages"]
    assert set(replies) == {"EmailSentV1", "EmailFailedV1"}


def test_the_servers_are_the_broker_in_use_one_or_a_cluster() -> None:
    one = asyncapi(Registry(), [], "t", "1", "nats://10.0.0.5:4333")
    assert one["servers"] == {"nats": {"host": "10.0.0.5:4333", "protocol": "nats"}}
    cluster = asyncapi(Registry(), [], "t", "1",
                       "nats://user:secret@n1.example:4222, n2.example:4223,tls://n3.example")
    assert cluster["servers"] == {
        "nats-1": {"host": "n1.example:4222", "protocol": "nats"},
        "nats-2": {"host": "n2.example:4223", "protocol": "nats"},
        "nats-3": {"host": "n3.example:4222", "protocol": "nats", "description": "TLS"}}
    assert "secret" not in json.dumps(cluster)
    assert "servers" not in asyncapi(Registry(), [], "t", "1")  # none known: none made up


async def test_asyncapi_json_names_the_broker_of_the_running_system(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIZZA_NATS_URL", "nats://127.0.0.1:14222,nats://127.0.0.1:14223")
    app = FastAPI()
    app.include_router(catalog_routes.router(load()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as client:
        document = (await client.get("/asyncapi.json")).json()
    assert [s["host"] for s in document["servers"].values()] == ["127.0.0.1:14222",
                                                                 "127.0.0.1:14223"]


def test_messages_are_envelopes_with_shared_metadata(document: dict[str, Any]) -> None:
    messages = document["components"]["messages"]
    confirmed = messages["OrderConfirmedV1"]
    assert confirmed["name"] == "OrderConfirmedV1"
    payload = confirmed["payload"]
    assert payload["required"] == ["metadata", "data"]
    assert payload["properties"]["metadata"] == {"$ref": "#/components/schemas/Metadata"}
    data = payload["properties"]["data"]
    assert data["properties"]["orderValue"]["type"] == "number"
    assert resolve(document, data["properties"]["items"]["items"]["$ref"])["title"] \
        == "OrderLine"
    v2_value = messages["OrderConfirmedV2"]["payload"]["properties"]["data"]["properties"]
    assert resolve(document, v2_value["orderValue"]["$ref"])["title"] == "Money"
    assert confirmed["x-sunset"] == "2027-06-30" and "Deprecated" in confirmed["description"]
    assert "x-sunset" not in messages["OrderConfirmedV2"]


def test_every_ref_resolves_and_no_defs_remain(document: dict[str, Any]) -> None:
    refs = [value for key, value in walk(document) if key == "$ref"]
    assert refs
    for ref in refs:
        resolve(document, ref)
    assert not [key for key, _ in walk(document) if key == "$defs"]


def test_operations_send_and_receive(document: dict[str, Any]) -> None:
    ops = document["operations"]

    def of(action: str, message: str) -> set[str]:
        return {name.split(".")[0] for name, op in ops.items() if op["action"] == action
                and any(ref["$ref"].endswith(f"/{message}") for ref in op["messages"])}

    assert of("send", "OrderConfirmedV1") == {"orders"}
    assert "kitchen" in of("receive", "OrderConfirmedV1")
    assert of("receive", "OrderCancelledV1") == {"kitchen", "delivery", "pickup", "tracking"}
    assert of("send", "SendEmailV1") == {"orders"}
    assert of("receive", "SendEmailV1") == {"notifications"}
    assert of("send", "EmailSentV1") == {"notifications"}
    assert of("receive", "EmailSentV1") == {"orders"}
    reply = ops["orders.send.SendEmailV1"]["reply"]
    assert reply["channel"] == {"$ref": "#/channels/pizza.replies.orders"}


def test_the_official_parser_accepts_it(document: dict[str, Any], tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: cannot run @asyncapi/parser")
    if not (PARSER_DIR / "node_modules" / "@asyncapi" / "parser").is_dir():
        pytest.skip(f"@asyncapi/parser is not installed in {PARSER_DIR} (npm install --prefix "
                    f"{PARSER_DIR} @asyncapi/parser@3, or set PIZZA_ASYNCAPI_PARSER_DIR)")
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(document))
    done = subprocess.run([node, str(VALIDATOR), str(path)], capture_output=True, text=True,
                          timeout=60, env={**os.environ,
                                           "PIZZA_ASYNCAPI_PARSER_DIR": str(PARSER_DIR)})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    errors = [d for d in result["diagnostics"] if d["severity"] == 0]
    assert not errors, json.dumps(errors, indent=2)
    assert result["parsed"]


async def test_the_routes_serve_the_whole_system_from_one_service() -> None:
    app = FastAPI()
    app.include_router(catalog_routes.router(load(["kitchen"])))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as client:
        listed = (await client.get("/api/catalog")).json()
        document = (await client.get("/asyncapi.json")).json()
    by_key = {(e["type"], e["version"]): e for e in listed}
    assert by_key[("OrderCompleted", 1)]["consumers"] == ["loyalty", "tracking"]
    assert by_key[("SendEmail", 1)]["producers"] == ["orders"]
    assert document["asyncapi"] == "3.0.0"
    assert "loyalty.receive.add-points" in document["operations"]
