"""Who may do what over HTTP: every route x every role, as CONTRACT section 5 says.

The whole app (``create_app`` with every service, on an in-memory bus) is asked each of
its routes by: nobody, an expired token, a token of another issuer, and each role. The
expected answers are written here from the CONTRACT's table, not read from the code's
rules, and the set of routes is compared with the app's: a new route fails this test
until someone decides who may call it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Route

from harness import eventually
from pizza import config
from pizza.app import create_app, load
from pizza.eventing.transport.embedded import free_port
from pizza.eventing.transport.memory import MemoryTransport
from pizza.web.identity import AUDIENCE, LocalIssuer, OidcVerifier, Unauthenticated

ANYONE = "anyone"
OWN = "own"  # the customer it belongs to, and operators
ROLES = ("customer", "kitchen", "driver", "counter", "operator")

# CONTRACT section 5, route by route (our additions marked).
EXPECTED: dict[tuple[str, str], Any] = {
    ("GET", "/api/health"): ANYONE,
    ("GET", "/api/menu"): ANYONE,
    ("GET", "/api/catalog"): ANYONE,
    ("GET", "/api/catalog/storming"): ANYONE,  # ours: the event-storming board
    ("GET", "/asyncapi.json"): ANYONE,
    ("GET", "/docs"): ANYONE,
    ("GET", "/redoc"): ANYONE,
    ("GET", "/openapi.json"): ANYONE,
    # The web app's pages (web/site.py); each page asks for a token before showing data.
    **{("GET", page): ANYONE for page in ("/", "/orders/{order_id}", "/kitchen", "/delivery",
                                          "/pickup", "/mailbox", "/events", "/catalog",
                                          "/sign-in")},
    ("GET", "/.well-known/jwks.json"): ANYONE,  # ours: the issuer's public key
    ("GET", "/api/session"): set(ROLES),  # ours: who the token belongs to
    ("POST", "/api/accounts"): ANYONE,  # ours: a customer creates an account
    ("POST", "/api/session"): ANYONE,  # ours: a customer signs in with email and password
    ("POST", "/api/delivery-addresses"): OWN,  # the body's customerId must be the token's
    ("POST", "/api/orders"): OWN,
    ("GET", "/api/orders"): OWN,  # ours: a customer's own orders (?customerId=)
    ("GET", "/api/orders/{orderId}"): OWN,
    ("GET", "/api/orders/{orderId}/stream"): OWN,
    ("GET", "/api/orders/{orderId}/emails"): OWN,  # ours: the emails about an order
    ("POST", "/api/orders/{orderId}/cancel"): OWN,
    ("GET", "/api/loyalty/{customer_id}"): OWN,
    ("GET", "/api/kitchen/tickets"): {"kitchen", "operator"},
    ("POST", "/api/kitchen/tickets/{orderId}/start"): {"kitchen", "operator"},
    ("POST", "/api/kitchen/tickets/{orderId}/prepared"): {"kitchen", "operator"},
    ("GET", "/api/delivery/jobs"): {"driver", "operator"},
    ("POST", "/api/delivery/jobs/{orderId}/out-for-delivery"): {"driver", "operator"},
    ("POST", "/api/delivery/jobs/{orderId}/delivered"): {"driver", "operator"},
    ("GET", "/api/pickup/orders"): {"counter", "operator"},
    ("POST", "/api/pickup/orders/{orderId}/collected"): {"counter", "operator"},
    ("GET", "/api/mailbox"): {"operator"},
    ("GET", "/api/events"): {"operator"},  # ours: the journal of every message (/events)
    ("GET", "/api/events/stream"): {"operator"},
    ("GET", "/api/events/story/{orderId}"): {"operator"},
    ("POST", "/api/admin/replay/{service}"): {"operator"},
    ("POST", "/api/admin/customers/{customerId}/forget"): {"operator"},
    ("GET", "/metrics"): {"operator"},
}


@contextlib.asynccontextmanager
async def whole_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    **settings: Any) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    config.reset()
    config.configure(order_confirmed_v1="always", redis_url=None, **settings)
    app = create_app(load(), runtime_options={"transport": MemoryTransport(),
                                              "relay_interval": 0.05})
    try:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://test", timeout=10) as client:
                yield app, client
    finally:
        config.reset()


def routes_of(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, its included routers' routes too."""
    found = set()

    def walk(routes: Any) -> None:
        for route in routes:
            original = getattr(route, "original_router", None)  # an included router
            if original is not None:
                walk(original.routes)
            elif isinstance(route, APIRoute | Route):
                found.update((method, route.path) for method in route.methods or ()
                             if method != "HEAD")

    walk(app.routes)
    return found


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def expired_token(issuer: LocalIssuer) -> str:
    past = int(time.time()) - 7200
    return jwt.encode({"iss": issuer.issuer, "aud": AUDIENCE, "sub": "operator",
                       "roles": ["operator"], "iat": past, "exp": past + 60},
                      issuer.private_key, algorithm="EdDSA",
                      headers={"kid": issuer.key_id})


async def test_every_route_answers_each_role_as_the_contract_says(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Hundreds of anonymous requests in a second: not what the rate limit is about here.
    async with whole_app(tmp_path, monkeypatch, rate_limit="100000/second") as (app, http):
        assert routes_of(app) == set(EXPECTED), "a route nobody decided access for"
        issuer = LocalIssuer(tmp_path / "identity")
        token = {role: issuer.issue(role, "ada" if role == "customer" else None)
                 for role in ROLES}
        bob = issuer.issue("customer", "bob")
        strangers = {"nobody": {}, "expired": bearer(expired_token(issuer)),
                     "other issuer": bearer(LocalIssuer(tmp_path / "other").issue("operator"))}

        # Ada's order, cancelled so that its stream ends; her address for the bodies.
        address = await http.post("/api/delivery-addresses", headers=bearer(token["customer"]),
                                  json={"customerId": "ada", "line1": "1 Basil Street",
                                        "city": "London", "postcode": "E1 6AN"})
        assert address.status_code == 201, address.text
        placed = await http.post("/api/orders", headers=bearer(token["customer"]), json={
            "customerId": "ada", "email": "ada@example.com", "fulfilment": "pickup",
            "items": [{"menuItemId": "margherita", "quantity": 1}]})
        assert placed.status_code == 202, placed.text
        order_id = placed.json()["orderId"]
        cancelled = await http.post(f"/api/orders/{order_id}/cancel",
                                    headers=bearer(token["customer"]))
        assert cancelled.status_code == 202, cancelled.text
        async def shown_cancelled() -> bool:
            seen = await http.get(f"/api/orders/{order_id}", headers=bearer(token["operator"]))
            return seen.status_code == 200 and seen.json()["status"] == "cancelled"

        await eventually(shown_cancelled, 10, "the read model showing the order cancelled")

        def ask(method: str, template: str, headers: dict[str, str],
                customer: str = "ada") -> Any:
            path = (template.replace("{orderId}", order_id)
                    .replace("{customer_id}", customer).replace("{customerId}", "nobody-known")
                    .replace("{service}", "no-such-service"))
            body: dict[str, Any] | None = None
            if path == "/api/orders":
                body = {"customerId": customer, "email": "a@example.com",
                        "fulfilment": "pickup",
                        "items": [{"menuItemId": "margherita", "quantity": 1}]}
            elif path == "/api/delivery-addresses":
                body = {"customerId": customer, "line1": "1 Basil Street", "city": "London",
                        "postcode": "E1 6AN"}
            elif path.endswith("/out-for-delivery"):
                body = {"driver": "Dee"}
            params: dict[str, Any] | None = None
            if path == "/api/orders":
                params = {"customerId": customer}
            elif path == "/api/events/stream":
                params = {"seconds": 0}  # ends at once, the entries so far sent
            return http.request(method, path, headers=headers, params=params,
                                json=body if method == "POST" else None)

        wrong: list[str] = []
        for (method, template), who in sorted(EXPECTED.items()):
            for name, headers in strangers.items():
                answer = await ask(method, template, headers)
                if who == ANYONE:
                    if answer.status_code in (401, 403):
                        wrong.append(f"{name} {method} {template}: {answer.status_code}")
                elif (answer.status_code != 401
                        or not answer.headers.get("www-authenticate", "").startswith("Bearer")
                        or answer.json()["error"]["code"] != "unauthenticated"):
                    wrong.append(f"{name} {method} {template}: {answer.status_code}, "
                                 f"not 401 with WWW-Authenticate")
            for role in ROLES:
                answer = await ask(method, template, bearer(token[role]))
                allowed = who == ANYONE or (who == OWN and role in ("customer", "operator")) \
                    or (isinstance(who, set) and role in who)
                if allowed and answer.status_code in (401, 403):
                    wrong.append(f"{role} {method} {template}: {answer.status_code} "
                                 f"{answer.text[:120]}")
                if not allowed and (answer.status_code != 403
                                    or answer.json()["error"]["code"] != "forbidden"):
                    wrong.append(f"{role} {method} {template}: {answer.status_code}, not 403")
                if allowed and answer.status_code >= 500:
                    wrong.append(f"{role} {method} {template}: {answer.status_code}")
            if who == OWN:
                # Another customer: not theirs to see (404) or to act for (403).
                answer = await ask(method, template, bearer(bob), customer="ada")
                places = template in ("/api/orders", "/api/delivery-addresses") and \
                    method == "POST"
                expected = 403 if places else 404
                if template == "/api/orders" and method == "GET":
                    expected = 200  # the list: nothing of Ada's in it
                    if answer.status_code == 200 and answer.json():
                        wrong.append("bob listed ada's orders")
                if answer.status_code != expected:
                    wrong.append(f"bob {method} {template} of ada: {answer.status_code}, "
                                 f"not {expected}")
        assert not wrong, "\n".join(wrong)


async def test_state_changing_requests_take_json_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with whole_app(tmp_path, monkeypatch) as (_app, http):
        ada = bearer(LocalIssuer(tmp_path / "identity").issue("customer", "ada"))
        body = ('{"customerId": "ada", "email": "ada@example.com", "fulfilment": "pickup", '
                '"items": [{"menuItemId": "margherita", "quantity": 1}]}')
        for kind in ("text/plain", "application/x-www-form-urlencoded",
                     "multipart/form-data; boundary=x"):
            answer = await http.post("/api/orders", content=body,
                                     headers={**ada, "Content-Type": kind})
            assert answer.status_code == 415, (kind, answer.text)
            assert answer.json()["error"]["code"] == "unsupported-media-type"
        no_type = await http.post("/api/orders", content=body, headers=ada)
        assert no_type.status_code == 415
        listed = await http.get("/api/orders", params={"customerId": "ada"}, headers=ada)
        assert listed.json() == [], "a refused request placed an order"

        placed = await http.post("/api/orders", content=body,
                                 headers={**ada, "Content-Type": "application/json"})
        assert placed.status_code == 202, placed.text
        # A button carries no body: no type needed.
        order_id = placed.json()["orderId"]
        cancel = await http.post(f"/api/orders/{order_id}/cancel", headers=ada)
        assert cancel.status_code == 202, cancel.text


async def test_pages_carry_security_headers_and_cors_is_closed_by_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with whole_app(tmp_path, monkeypatch) as (_app, http):
        for path in ("/", "/api/menu", "/api/orders/x"):
            answer = await http.get(path, headers={"Origin": "https://evil.example"})
            assert answer.headers["x-content-type-options"] == "nosniff", path
            assert answer.headers["x-frame-options"] == "DENY", path
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
            assert "access-control-allow-origin" not in answer.headers, path
        preflight = await http.options("/api/orders", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in preflight.headers


async def test_cors_opens_to_the_configured_origins_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with whole_app(tmp_path, monkeypatch,
                         cors_origins=("https://shop.example",)) as (_app, http):
        asked = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
        shop = await http.options("/api/orders", headers={"Origin": "https://shop.example",
                                                          **asked})
        assert shop.status_code == 200
        assert shop.headers["access-control-allow-origin"] == "https://shop.example"
        evil = await http.options("/api/orders", headers={"Origin": "https://evil.example",
                                                          **asked})
        assert "access-control-allow-origin" not in evil.headers


async def test_anonymous_requests_are_rate_limited_per_client(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with whole_app(tmp_path, monkeypatch, rate_limit="5/minute") as (_app, http):
        answers = [(await http.get("/api/menu")).status_code for _ in range(5)]
        assert answers == [200] * 5
        refused = await http.get("/api/menu")
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate-limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        # Guessing tokens counts too, and a signed-in caller is not held back.
        assert (await http.get("/api/mailbox", headers=bearer("garbage"))).status_code == 429
        operator = bearer(LocalIssuer(tmp_path / "identity").issue("operator"))
        assert (await http.get("/api/menu", headers=operator)).status_code == 200


async def test_the_openapi_document_states_the_access_answers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with whole_app(tmp_path, monkeypatch) as (_app, http):
        document = (await http.get("/openapi.json")).json()
        cancel = document["paths"]["/api/orders/{orderId}/cancel"]["post"]
        assert {"401", "403", "415", "429"} <= set(cancel["responses"])
        assert cancel["security"] == [{"bearer": []}]
        menu = document["paths"]["/api/menu"]["get"]
        assert "401" not in menu["responses"] and "security" not in menu


# -- an outside identity provider -----------------------------------------------------------


@contextlib.asynccontextmanager
async def identity_provider() -> AsyncIterator[tuple[str, Any]]:
    """A minimal OpenID provider: discovery and JWKS on a local port, an RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    provider = FastAPI()
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update(kid="k1", use="sig", alg="RS256")

    @provider.get("/.well-known/openid-configuration")
    async def discovery() -> dict[str, str]:
        return {"issuer": url, "jwks_uri": f"{url}/keys"}

    @provider.get("/keys")
    async def keys() -> dict[str, Any]:
        return {"keys": [jwk]}

    server = uvicorn.Server(uvicorn.Config(provider, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, 10, "the identity provider to start")
    try:
        yield url, key
    finally:
        server.should_exit = True
        await task


async def test_an_outside_identity_provider_replaces_our_issuer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with identity_provider() as (url, key):
        now = int(time.time())

        def token(**claims: Any) -> str:
            return jwt.encode({"iss": url, "aud": "pizza", "sub": "u-1", "iat": now,
                               "exp": now + 600, **claims}, key, algorithm="RS256",
                              headers={"kid": "k1"})

        verifier = OidcVerifier(url, "pizza")
        caller = await verifier.verify(token(roles=["kitchen"]))
        assert caller.roles == {"kitchen"}
        customer = await verifier.verify(token(roles=["customer"], customer_id="ada"))
        assert customer.may_act_for("ada") and not customer.may_act_for("bob")
        with pytest.raises(Unauthenticated):
            await verifier.verify(token(roles=["kitchen"], aud="someone-else"))

        async with whole_app(tmp_path, monkeypatch, oidc_issuer=url) as (app, http):
            assert ("GET", "/.well-known/jwks.json") not in routes_of(app), \
                "our own issuer must be off"
            ours = LocalIssuer(tmp_path / "identity").issue("kitchen")
            assert (await http.get("/api/kitchen/tickets",
                                   headers=bearer(ours))).status_code == 401
            theirs = await http.get("/api/kitchen/tickets",
                                    headers=bearer(token(roles=["kitchen"])))
            assert theirs.status_code == 200, theirs.text


async def test_a_browser_stream_may_carry_its_token_in_the_query(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EventSource sends no headers: the stream takes ?access_token= (RFC 6750, 2.3)."""
    async with whole_app(tmp_path, monkeypatch) as (_app, http):
        issuer = LocalIssuer(tmp_path / "identity")
        ada, bob = issuer.issue("customer", "ada"), issuer.issue("customer", "bob")
        placed = await http.post("/api/orders", headers=bearer(ada), json={
            "customerId": "ada", "email": "ada@example.com", "fulfilment": "pickup",
            "items": [{"menuItemId": "margherita", "quantity": 1}]})
        order_id = placed.json()["orderId"]
        await http.post(f"/api/orders/{order_id}/cancel", headers=bearer(ada))
        stream = f"/api/orders/{order_id}/stream"
        assert (await http.get(stream)).status_code == 401
        assert (await http.get(stream, params={"access_token": bob})).status_code == 404
        own = await http.get(stream, params={"access_token": ada})
        assert own.status_code == 200, own.text
        assert '"status":"cancelled"' in own.text
        # Only streams take it: elsewhere a token in the URL is no sign-in.
        assert (await http.get(f"/api/orders/{order_id}",
                               params={"access_token": ada})).status_code == 401


async def test_the_public_health_report_never_shows_the_brokers_credentials(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    config.reset()
    app = create_app(load(["kitchen"]), runtime_options={
        "transport": MemoryTransport(), "nats_url": "nats://kitchen:s3cret@10.0.0.7:4222"})
    try:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            report = (await http.get("/api/health")).json()
    finally:
        config.reset()
    assert report["nats"] == "nats://***@10.0.0.7:4222"
    assert "s3cret" not in str(report)
