"""Fixtures that start `pizza up` for a test and stop it (Ctrl-C) afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from running_pizza import Pizza, Process, environment, free_port

from pizza.eventing.transport.embedded import EmbeddedNats
from pizza.web.identity import issue_token


class PortTaken(Exception):
    """`pizza up` could not listen on the port it was given."""


@pytest.fixture
async def start_pizza(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Pizza]]]:
    """Start `pizza up` with options; stopped (Ctrl-C) at the end of the test."""
    started: list[tuple[Process, httpx.AsyncClient, EmbeddedNats | None]] = []

    async def start(*options: str, own_broker: bool = False) -> Pizza:
        for _attempt in range(3):  # a port picked free may be taken before it is bound
            try:
                return await start_on(free_port(), options, own_broker)
            except PortTaken:
                continue
        raise RuntimeError("pizza up found its port taken three times")

    async def start_on(port: int, options: tuple[str, ...], own_broker: bool) -> Pizza:
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
        try:
            await process.wait_healthy()
        except RuntimeError:  # it exited: another test run took its port first?
            if "address already in use" not in process.tail().lower():
                raise
            started.remove((process, client, broker))
            await client.aclose()
            if broker is not None:
                await broker.stop()
            raise PortTaken(port) from None
        return Pizza(process, client, broker)

    yield start
    for process, client, broker in started:
        await client.aclose()
        process.stop()
        if broker is not None:
            await broker.stop()
