"""Customer accounts of our own issuer: sign up and sign in with an email and a password.

The whole app (every service, an in-memory bus) under a PIZZA_HOME of the test's own, as
people reach it: over HTTP, through the access gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import eventually
from pizza import config
from pizza.app import create_app, load
from pizza.eventing.transport.memory import MemoryTransport
from pizza.web.accounts import Accounts

PASSWORD = "correct horse battery"


@contextlib.asynccontextmanager
async def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    config.reset()
    config.configure(order_confirmed_v1="always", redis_url=None,
                     **{"rate_limit": "100000/second", **settings})
    app = create_app(load(), runtime_options={"transport": MemoryTransport(),
                                              "relay_interval": 0.05})
    try:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://test", timeout=20) as client:
                yield client
    finally:
        config.reset()


@pytest.fixture
async def http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
               ) -> AsyncIterator[httpx.AsyncClient]:
    async with shop(tmp_path, monkeypatch) as client:
        yield client


def stored(home: Path) -> list[tuple[str, str, str]]:
    """(customer id, email, password column) of every account in the home's file."""
    path = home / "identity" / "accounts.db"
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(path)) as db:
        try:
            return db.execute("SELECT customer_id, email, password FROM accounts").fetchall()
        except sqlite3.OperationalError:  # no table yet: nothing stored
            return []


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["message"]
    return error


async def test_a_customer_signs_up_then_signs_in_as_the_same_customer(
        http: httpx.AsyncClient, tmp_path: Path) -> None:
    made = await http.post("/api/accounts", json={"email": "Ada@Example.com",
                                                  "password": PASSWORD})
    assert made.status_code == 201, made.text
    customer_id = made.json()["customerId"]
    assert "ada" not in customer_id.lower() and "example" not in customer_id
    session = await http.get("/api/session", headers=bearer(made.json()["token"]))
    assert session.json() == {"subject": customer_id, "roles": ["customer"],
                              "customerId": customer_id}

    # The email compares without regard to case; the token is a new one each time.
    again = await http.post("/api/session", json={"email": "ada@example.COM",
                                                  "password": PASSWORD})
    assert again.status_code == 200, again.text
    assert again.json()["customerId"] == customer_id
    assert again.json()["token"] != made.json()["token"]

    # The password is kept as a salted hash, nowhere in the clear.
    [(kept_id, email, password)] = stored(tmp_path)
    assert (kept_id, email) == (customer_id, "Ada@Example.com")
    assert PASSWORD not in password and password.startswith("scrypt$")
    assert PASSWORD.encode() not in (tmp_path / "identity" / "accounts.db").read_bytes()
    assert (tmp_path / "identity" / "accounts.db").stat().st_mode & 0o077 == 0


async def test_the_sign_in_page_offers_accounts_with_our_own_issuer(
        http: httpx.AsyncClient) -> None:
    page = (await http.get("/sign-in")).text
    assert "Create an account" in page and "identity provider" not in page


async def test_two_accounts_with_one_password_have_different_ids_and_hashes(
        http: httpx.AsyncClient, tmp_path: Path) -> None:
    for email in ("ada@example.com", "bob@example.com"):
        made = await http.post("/api/accounts", json={"email": email, "password": PASSWORD})
        assert made.status_code == 201, made.text
    (ada_id, _, ada_hash), (bob_id, _, bob_hash) = stored(tmp_path)
    assert ada_id != bob_id and ada_hash != bob_hash  # a salt of each account's own


async def test_a_wrong_password_and_an_unknown_email_are_refused_alike(
        http: httpx.AsyncClient) -> None:
    await http.post("/api/accounts", json={"email": "ada@example.com", "password": PASSWORD})
    wrong = await http.post("/api/session", json={"email": "ada@example.com",
                                                  "password": "not her password"})
    unknown = await http.post("/api/session", json={"email": "nobody@example.com",
                                                    "password": PASSWORD})
    for answer in (wrong, unknown):
        assert_error(answer, 401)
        assert "token" not in answer.text
    assert wrong.json() == unknown.json()
    assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"]


async def test_an_email_registered_already_is_409_and_keeps_its_password(
        http: httpx.AsyncClient, tmp_path: Path) -> None:
    first = await http.post("/api/accounts", json={"email": "ada@example.com",
                                                   "password": PASSWORD})
    assert first.status_code == 201
    taken = await http.post("/api/accounts", json={"email": "ADA@example.com",
                                                   "password": "another password"})
    assert assert_error(taken, 409)["code"] == "email-taken"
    assert len(stored(tmp_path)) == 1
    refused = await http.post("/api/session", json={"email": "ada@example.com",
                                                    "password": "another password"})
    assert refused.status_code == 401


GARBAGE: list[Any] = [
    {"email": "ada@example.com"},
    {"password": PASSWORD},
    {"email": "not an email", "password": PASSWORD},
    {"email": "ada@example", "password": PASSWORD},
    {"email": "ada@exam\nple.com", "password": PASSWORD},
    {"email": "a" * 243 + "@example.com", "password": PASSWORD},  # 255 characters
    {"email": "ada@example.com", "password": "short"},
    {"email": "ada@example.com", "password": "1234567"},  # 7
    {"email": "ada@example.com", "password": "x" * 129},
    {"email": "ada@example.com", "password": 12345678},
    {"email": ["ada@example.com"], "password": PASSWORD},
    {"email": None, "password": None},
    ["ada@example.com", PASSWORD],
    "ada@example.com",
]


@pytest.mark.parametrize("path", ["/api/accounts", "/api/session"])
async def test_garbage_is_refused_with_the_error_shape_and_stores_nothing(
        http: httpx.AsyncClient, tmp_path: Path, path: str) -> None:
    for body in GARBAGE:
        answer = await http.post(path, json=body)
        error = assert_error(answer, 422)
        assert error["code"] == "invalid-request", body
        assert PASSWORD not in answer.text, "a password is echoed back"
    not_json = await http.post(path, content=b'{"email": "ada@example.com", "pass',
                               headers={"Content-Type": "application/json"})
    assert assert_error(not_json, 400)["code"] == "malformed-json"
    form = await http.post(path, data={"email": "ada@example.com", "password": PASSWORD})
    assert_error(form, 415)
    assert stored(tmp_path) == []


async def test_the_bounds_themselves_are_accepted(http: httpx.AsyncClient) -> None:
    longest = "a" * 242 + "@example.com"  # 254 characters
    for email, password in ((longest, "x" * 128), ("b@example.com", "12345678"),
                            ("zoë@exämple.org", "pässwörd ☕ 🍕")):
        made = await http.post("/api/accounts", json={"email": email, "password": password})
        assert made.status_code == 201, (email, made.text)
        back = await http.post("/api/session", json={"email": email, "password": password})
        assert back.status_code == 200, (email, back.text)


async def test_two_sign_ups_of_one_email_at_once_make_one_account(
        http: httpx.AsyncClient, tmp_path: Path) -> None:
    answers = await asyncio.gather(*(
        http.post("/api/accounts", json={"email": "ada@example.com",
                                         "password": f"{PASSWORD} {n}"})
        for n in range(2)))
    assert sorted(a.status_code for a in answers) == [201, 409]
    [(customer_id, _, _)] = stored(tmp_path)
    winner = next(a for a in answers if a.status_code == 201)
    assert winner.json()["customerId"] == customer_id


async def test_two_processes_opening_the_store_at_once_share_one_table(
        tmp_path: Path) -> None:
    """Two stores (their own connections, as two processes have) on one new file."""
    stores = [Accounts(tmp_path / "identity") for _ in range(2)]
    ada = await asyncio.gather(*(store.create("ada@example.com", f"{PASSWORD} {n}")
                                 for n, store in enumerate(stores)), return_exceptions=True)
    assert sorted(type(r).__name__ for r in ada) == ["EmailTaken", "str"], ada
    [customer_id] = [r for r in ada if isinstance(r, str)]
    bob = await stores[1].create("bob@example.com", PASSWORD)
    for store in stores:
        assert await store.check("bob@example.com", PASSWORD) == bob
        assert await store.check("ada@example.com", PASSWORD) is None
        found = {await store.check("ada@example.com", f"{PASSWORD} {n}") for n in range(2)}
        assert found == {customer_id, None}
    for store in stores:
        await store.close()


async def test_the_token_places_and_reads_the_customers_own_orders_only(
        http: httpx.AsyncClient) -> None:
    made = (await http.post("/api/accounts", json={"email": "ada@example.com",
                                                   "password": PASSWORD})).json()
    ada, customer_id = bearer(made["token"]), made["customerId"]
    placed = await http.post("/api/orders", headers=ada, json={
        "customerId": customer_id, "email": "ada@example.com", "fulfilment": "pickup",
        "items": [{"menuItemId": "margherita", "quantity": 1}]})
    assert placed.status_code == 202, placed.text
    order_id = placed.json()["orderId"]

    async def listed() -> Any:
        answer = await http.get("/api/orders", params={"customerId": customer_id},
                                headers=ada)
        return answer.status_code == 200 and [o["orderId"] for o in answer.json()]

    assert await eventually(listed, 10, "her order in her list") == [order_id]
    own = await http.get(f"/api/orders/{order_id}", headers=ada)
    assert own.status_code == 200 and own.json()["customerId"] == customer_id

    bob = (await http.post("/api/accounts", json={"email": "bob@example.com",
                                                  "password": PASSWORD})).json()
    assert (await http.get(f"/api/orders/{order_id}",
                           headers=bearer(bob["token"]))).status_code == 404
    for_her = await http.post("/api/orders", headers=bearer(bob["token"]), json={
        "customerId": customer_id, "email": "bob@example.com", "fulfilment": "pickup",
        "items": [{"menuItemId": "margherita", "quantity": 1}]})
    assert for_her.status_code == 403


async def test_failed_sign_ins_of_one_email_are_limited(http: httpx.AsyncClient) -> None:
    await http.post("/api/accounts", json={"email": "ada@example.com", "password": PASSWORD})
    for n in range(10):
        answer = await http.post("/api/session", json={"email": "ada@example.com",
                                                       "password": f"guess number {n}"})
        assert answer.status_code == 401
    held = await http.post("/api/session", json={"email": "ada@example.com",
                                                  "password": PASSWORD})
    assert assert_error(held, 429)["code"] == "rate-limited"
    assert int(held.headers["retry-after"]) >= 1
    # An unknown email is held back alike (no telling which emails have accounts), and
    # other emails are not held back at all.
    for n in range(11):
        last = await http.post("/api/session", json={"email": "nobody@example.com",
                                                      "password": f"guess number {n}"})
    assert last.status_code == 429
    await http.post("/api/accounts", json={"email": "bob@example.com", "password": PASSWORD})
    assert (await http.post("/api/session", json={"email": "bob@example.com",
                                                  "password": PASSWORD})).status_code == 200


async def test_a_token_does_not_lift_the_limit_on_signing_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with shop(tmp_path, monkeypatch, rate_limit="4/minute") as http:
        made = await http.post("/api/accounts", json={"email": "ada@example.com",
                                                      "password": PASSWORD})
        ada = bearer(made.json()["token"])
        answers = [(await http.post("/api/session", headers=ada, json={
            "email": f"user{n}@example.com", "password": PASSWORD})).status_code
            for n in range(4)]
        assert answers == [401, 401, 401, 429]


async def test_with_an_outside_identity_provider_there_are_no_accounts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with shop(tmp_path, monkeypatch,
                    oidc_issuer="https://id.example.invalid") as http:
        answer = await http.post("/api/accounts", json={"email": "ada@example.com",
                                                        "password": PASSWORD})
        assert answer.status_code in (401, 404, 405), answer.text
        paths = (await http.get("/openapi.json")).json()["paths"]
        assert "/api/accounts" not in paths
        assert "post" not in paths.get("/api/session", {})
        page = (await http.get("/sign-in")).text
        assert "paste the access token" in page and "Create an account" not in page
    assert stored(tmp_path) == []


async def test_forgetting_a_customer_deletes_their_account(
        http: httpx.AsyncClient, tmp_path: Path) -> None:
    from pizza.web.identity import LocalIssuer

    made = await http.post("/api/accounts", json={"email": "gone@example.com",
                                                  "password": PASSWORD})
    assert made.status_code == 201, made.text
    customer = made.json()["customerId"]
    kept = await http.post("/api/accounts", json={"email": "kept@example.com",
                                                  "password": PASSWORD})
    operator = LocalIssuer(tmp_path / "identity").issue("operator")

    # Only the operator's accepted request forgets: a customer's own try is refused.
    refused = await http.post(f"/api/admin/customers/{customer}/forget",
                              headers=bearer(made.json()["token"]))
    assert refused.status_code == 403
    assert [row[1] for row in stored(tmp_path)].count("gone@example.com") == 1

    forgot = await http.post(f"/api/admin/customers/{customer}/forget",
                             headers=bearer(operator))
    assert forgot.status_code == 202, forgot.text
    assert [row[0] for row in stored(tmp_path)] == [kept.json()["customerId"]]
    assert_error(await http.post("/api/session", json={"email": "gone@example.com",
                                                       "password": PASSWORD}), 401)
    again = await http.post("/api/accounts", json={"email": "gone@example.com",
                                                   "password": PASSWORD})
    assert again.status_code == 201 and again.json()["customerId"] != customer
