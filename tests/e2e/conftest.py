"""Fixtures that start `pizza up` for a test and stop it (Ctrl-C) afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from running_pizza import Pizza, Process, environment, free_port

from pizza.eventing.transport.embedded import EmbeddedNats
from pizza.web.identity import issue_token


@pytest.fixture
async def start_pizza(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Pizza]]]:
    """Start `pizza up` with options; stopped (Ctrl-C) at the end of the test."""
    started: list[tuple[Process, httpx.AsyncClient, EmbeddedNats | None]] = []

    async def start(*options: str, own_broker: bool = False) -> Pizza:
        port = free_port()
        broker = None
        extra: dict[str, str] = {}
        if own_broker:  # a broker the test can stop and start again
            broker = EmbeddedNats(tmp_path / f"broker-{port}")
            await broker.start()
            extra["PIZZA_NATS_URL"] = broker.url
        home = tmp_path / f"home-{port}"
        process = Process(["up", "--port", str(port), *options],
                          environment(home, **extra), tmp_path / f"pizza-{port}.log",
                          f"http://127.0.0.1:{port}")
        process.start()
        # Signed in as the operator (who may do anything) with the system's own issuer.
        operator = issue_token("operator", home=home, ttl=24 * 3600)
        client = httpx.AsyncClient(base_url=process.url, timeout=10,
                                   headers={"Authorization": f"Bearer {operator}"})
        started.append((process, client, broker))
        await process.wait_healthy()
        return Pizza(process, client, broker)

    yield start
    for process, client, broker in started:
        await client.aclose()
        process.stop()
        if broker is not None:
            await broker.stop()
