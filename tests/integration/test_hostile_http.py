"""Hostile HTTP: schemathesis sends what the OpenAPI document allows, and much it does not,
to every route of the whole app (every service, a real embedded broker, served by uvicorn
on a free port in this process), and runs all its checks: no 5xx, replies match the
documented schemas, status codes and headers, bad input is refused, and so on.

Bounded: a few generated examples per route, so the whole run stays well under a minute.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from pizza import config
from pizza.app import create_app, load
from pizza.eventing.transport.embedded import free_port

pytestmark = pytest.mark.timeout(120)

EXAMPLES = 10  # generated per route, on top of schemathesis' boundary cases


PORT = free_port()
BASE_URL = f"http://127.0.0.1:{PORT}"

# Built at import, started by the fixture below: the document is the app's own.
app = create_app(load())
schema = schemathesis.openapi.from_dict(app.openapi())


@pytest.fixture(scope="module", autouse=True)
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The app as `pizza up` runs it, with its own PIZZA_HOME (SQLite files, embedded NATS)."""
    patch = pytest.MonkeyPatch()
    for name in ("PIZZA_NATS_URL", "PIZZA_DATABASE_URL", "PIZZA_SIMULATE"):
        patch.delenv(name, raising=False)
    patch.setenv("PIZZA_HOME", str(tmp_path_factory.mktemp("hostile-http")))
    config.reset()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=PORT,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=asyncio.run, args=(server.serve(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(30)
        patch.undo()
        config.reset()


def undocumented(answer: str, documented: str) -> str:
    return f"bug: {answer}, a status its OpenAPI entry does not list (lists {documented})"


# Real defects schemathesis finds today, each xfailed only on its route (the routes are
# the services'; issue 8). Strict: a route fixed but still listed fails and says so.
KNOWN_BUGS: dict[str, str] = {}


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_route_survives_hostile_input(case: schemathesis.Case,
                                            request: pytest.FixtureRequest) -> None:
    bug = KNOWN_BUGS.get(case.operation.label)
    if bug is not None:
        request.node.add_marker(pytest.mark.xfail(reason=bug, strict=True))
    excluded = []
    if case.operation.label == "POST /api/orders" and "Idempotency-Key" in (case.headers or {}):
        # Not a defect: one key with another body is refused 422 (the IETF Idempotency-Key
        # draft), and schemathesis reuses key values across bodies, so it cannot tell
        # whether a refusal there was right. Every other check still applies.
        excluded.append(positive_data_acceptance)
    case.call_and_validate(base_url=BASE_URL, timeout=10, excluded_checks=excluded)


UNDECLARED = ("PUT", "DELETE", "PATCH", "POST", "GET")


def test_an_undeclared_method_is_answered_405_with_allow() -> None:
    missing = []
    with httpx.Client(base_url=BASE_URL, timeout=10) as http:
        for path, operations in app.openapi()["paths"].items():
            method = next(m for m in UNDECLARED if m.lower() not in operations)
            answer = http.request(method, path.replace("{", "x").replace("}", ""))
            assert answer.status_code == 405, (method, path, answer.status_code)
            if "allow" not in answer.headers:
                missing.append(f"{method} {path}")
    assert missing == []
