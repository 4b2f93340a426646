"""Hostile HTTP: schemathesis sends what the OpenAPI document allows, and much it does not,
to every route of the whole app (every service, a real embedded broker, served by uvicorn
on a free port in this process), and runs all its checks: no 5xx, replies match the
documented schemas, status codes and headers, bad input is refused, and so on.

Every case is sent as each person the system knows (nobody, and a token of each role,
from the app's own issuer): no role may meet a 5xx or an undocumented answer. Only the
operator may do everything, so only the operator's answers must also accept every valid
input; the others are refused (401, 403, 404) as CONTRACT section 5 says.

Bounded: a few generated examples per route, so the whole run stays well under a minute.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from pizza import config
from pizza.app import create_app, load
from pizza.eventing.transport.embedded import free_port
from pizza.web.identity import ROLES, local_issuer

pytestmark = pytest.mark.timeout(120)

EXAMPLES = 10  # generated per route, on top of schemathesis' boundary cases


PORT = free_port()
BASE_URL = f"http://127.0.0.1:{PORT}"

# Built at import, started by the fixture below: the document is the app's own. Its
# PIZZA_HOME (SQLite files, embedded NATS, the token issuer's key) is a directory of its own.
HOME = tempfile.mkdtemp(prefix="pizza-hostile-http-")
_before = os.environ.get("PIZZA_HOME")
os.environ["PIZZA_HOME"] = HOME
config.reset()
config.configure(rate_limit="100000/second")  # not the subject here: test_access has it
app = create_app(load())
config.reset()
if _before is None:
    os.environ.pop("PIZZA_HOME")
else:
    os.environ["PIZZA_HOME"] = _before
schema = schemathesis.openapi.from_dict(app.openapi())


@pytest.fixture(scope="module", autouse=True)
def serving() -> Iterator[None]:
    """The app as `pizza up` runs it, with its own PIZZA_HOME (SQLite files, embedded NATS)."""
    patch = pytest.MonkeyPatch()
    for name in ("PIZZA_NATS_URL", "PIZZA_DATABASE_URL", "PIZZA_SIMULATE"):
        patch.delenv(name, raising=False)
    patch.setenv("PIZZA_HOME", HOME)
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
        shutil.rmtree(HOME, ignore_errors=True)


def people() -> dict[str, dict[str, str]]:
    issuer = local_issuer(Path(HOME))
    signed = {role: {"Authorization": "Bearer " + issuer.issue(
        role, "ada" if role == "customer" else None)} for role in ROLES}
    return {"nobody": {}, **signed}


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
    if case.operation.label == "GET /api/events/stream":
        # Valid requests stream for `seconds` (up to 300): ask for none, so each case ends.
        case.query = {**(case.query or {}), "seconds": 0}
    if case.operation.label in ("GET /api/events", "GET /api/events/stream"):
        # Every parameter of these is optional, so the "invalid" cases schemathesis makes
        # for them are an unknown parameter (which every route ignores) or a value it
        # serializes to nothing; each is answered like no parameter, as for any route.
        # Every other check (no 5xx, documented answers, valid input accepted) applies.
        excluded.append(negative_data_rejection)
    for who, headers in people().items():
        # Refused people are refused (documented 401/403/404); the operator may do all.
        refused = [] if who == "operator" else [positive_data_acceptance]
        case.call_and_validate(base_url=BASE_URL, timeout=10, headers=headers,
                               excluded_checks=excluded + refused)


UNDECLARED = ("PUT", "DELETE", "PATCH", "POST", "GET")


def test_an_undeclared_method_is_answered_405_with_allow() -> None:
    missing = []
    with httpx.Client(base_url=BASE_URL, timeout=10, headers=people()["operator"]) as http:
        for path, operations in app.openapi()["paths"].items():
            method = next(m for m in UNDECLARED if m.lower() not in operations)
            answer = http.request(method, path.replace("{", "x").replace("}", ""))
            assert answer.status_code == 405, (method, path, answer.status_code)
            if "allow" not in answer.headers:
                missing.append(f"{method} {path}")
    assert missing == []
