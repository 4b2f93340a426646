"""The simulated loyalty SaaS: its API, idempotency, rate limit, outage, and serve()."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from pizza.thirdparty import loyalty_saas
from pizza.thirdparty.loyalty_saas import create_app


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://saas")


@pytest.fixture
async def saas() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app()) as client:
        yield client


async def credit(client: httpx.AsyncClient, member: str, points: int, key: str | None,
                 reference: str = "order-1") -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return await client.post(f"/v1/members/{member}/credits", headers=headers,
                       json={"points": points, "reference": reference})


async def test_credits_add_up_and_the_balance_is_readable(saas: httpx.AsyncClient) -> None:
    first = await credit(saas, "m-1", 10, "k-1", "order-1")
    second = await credit(saas, "m-1", 5, "k-2", "order-2")

    assert first.status_code == 201
    assert first.json() == {"memberId": "m-1", "balance": 10}
    assert second.json() == {"memberId": "m-1", "balance": 15}
    member = await saas.get("/v1/members/m-1")
    assert member.status_code == 200
    assert member.json() == {"memberId": "m-1", "balance": 15}


async def test_the_same_idempotency_key_replays_the_first_answer(
        saas: httpx.AsyncClient) -> None:
    first = await credit(saas, "m-1", 10, "order-1")
    again = await credit(saas, "m-1", 10, "order-1")

    assert again.status_code == 201
    assert again.json() == first.json() == {"memberId": "m-1", "balance": 10}
    assert (await saas.get("/v1/members/m-1")).json()["balance"] == 10


async def test_a_key_reused_for_a_different_credit_is_refused(saas: httpx.AsyncClient) -> None:
    await credit(saas, "m-1", 10, "order-1")
    other = await credit(saas, "m-1", 99, "order-1")

    assert other.status_code == 409
    assert other.json()["error"] == "idempotency_key_reused"
    assert (await saas.get("/v1/members/m-1")).json()["balance"] == 10


async def test_an_unknown_member_is_404_and_bad_credits_are_422(
        saas: httpx.AsyncClient) -> None:
    assert (await saas.get("/v1/members/nobody")).status_code == 404
    assert (await credit(saas, "m-1", 0, "k")).status_code == 422
    assert (await saas.get("/v1/members/m-1")).status_code == 404


async def test_beyond_the_rate_limit_it_answers_429_with_retry_after() -> None:
    async with client_for(create_app(rate_limit_per_second=2)) as client:
        answers = [await client.get("/v1/members/m-1") for _ in range(3)]

    assert [a.status_code for a in answers] == [404, 404, 429]
    assert answers[2].headers["Retry-After"] == "1"
    assert answers[2].json()["error"] == "rate_limited"


async def test_an_outage_answers_503_until_it_is_over(saas: httpx.AsyncClient) -> None:
    await credit(saas, "m-1", 10, "k-1")
    down = await saas.post("/v1/admin/outage", json={"down": True})
    during = await credit(saas, "m-1", 10, "k-2", "order-2")
    await saas.post("/v1/admin/outage", json={"down": False})
    after = await saas.get("/v1/members/m-1")

    assert down.json() == {"down": True}
    assert during.status_code == 503
    assert after.json()["balance"] == 10  # nothing was credited while down


async def test_a_lost_response_still_applied_the_credit(saas: httpx.AsyncClient) -> None:
    await saas.post("/v1/admin/lose-responses", json={"count": 1})
    lost = await credit(saas, "m-1", 10, "order-1")
    retried = await credit(saas, "m-1", 10, "order-1")

    assert lost.status_code == 504
    assert retried.status_code == 201
    assert retried.json()["balance"] == 10
    stats = (await saas.get("/v1/admin/stats")).json()
    assert stats["creditsApplied"] == 1
    assert stats["creditsReplayed"] == 1


async def test_failure_rate_fails_that_share_of_calls() -> None:
    async with client_for(create_app(failure_rate=1.0)) as client:
        assert (await client.get("/v1/members/m-1")).status_code == 503


async def test_serve_listens_on_a_free_port_and_stops() -> None:
    server, task = await loyalty_saas.serve("127.0.0.1", 0)
    base = loyalty_saas.url(server)
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            created = await client.post("/v1/members/m-1/credits",
                                        json={"points": 3, "reference": "r"})
        assert created.status_code == 201
    finally:
        await loyalty_saas.stop(server, task)
    async with httpx.AsyncClient(base_url=base) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/v1/members/m-1")


async def test_serve_on_a_taken_port_raises() -> None:
    server, task = await loyalty_saas.serve("127.0.0.1", 0)
    try:
        port = server.servers[0].sockets[0].getsockname()[1]
        with pytest.raises(OSError):
            await loyalty_saas.serve("127.0.0.1", port)
    finally:
        await loyalty_saas.stop(server, task)
