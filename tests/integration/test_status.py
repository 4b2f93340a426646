"""`pizza status --once` against a running system (served over HTTP on its own broker):
its rows name the services and queues, and the numbers move while messages flow."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import APIRouter

from pizza.app import create_app
from pizza.cli_common import pizza_command
from pizza.eventing import Context, Event, Service, event
from pizza.eventing.transport.embedded import EmbeddedNats, free_port


@event("StatusBaked", version=1, source="oven")
class BakedV1(Event):
    number: int


def oven_service() -> Service:
    service = Service("oven")
    service.declare_publishes(BakedV1)
    service.router = APIRouter()

    @service.handles(BakedV1)
    async def cool(_baked: BakedV1, _ctx: Context) -> None:
        await asyncio.sleep(0.002)

    @service.router.post("/api/oven/{number}", status_code=202)
    async def bake(number: int) -> dict[str, int]:
        async with service.unit_of_work() as ctx:
            ctx.publish(BakedV1(number=number))
        return {"number": number}

    return service


def headers(home: Path) -> dict[str, str]:
    try:
        from pizza.web.identity import issue_token
    except ImportError:  # no people authentication in this tree
        return {}
    return {"Authorization": f"Bearer {issue_token('operator', home=home)}"}


@pytest.fixture
async def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 nats_server: EmbeddedNats) -> AsyncIterator[str]:
    """The oven service on a real HTTP port; its base URL."""
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    app = create_app([oven_service()], runtime_options={"nats_url": nats_server.url,
                                                        "relay_interval": 0.05})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


async def pizza_status(home: Path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIZZA_")}
    env["PIZZA_HOME"] = str(home)
    process = await asyncio.create_subprocess_exec(
        *pizza_command(), "status", *args, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def row(screen: str, queue: str) -> list[str]:
    """The cells of the row of ``queue`` (the table's vertical bars split them)."""
    for line in screen.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│|┃]", line)]
        if queue in cells:
            return cells
    raise AssertionError(f"no row for {queue}:\n{screen}")


async def test_once_shows_each_service_and_queue_and_the_rate_moves(
        served: str, tmp_path: Path) -> None:
    async with httpx.AsyncClient(base_url=served, headers=headers(tmp_path)) as client:
        code, idle, err = await pizza_status(tmp_path, "--once", "--url", served)
        assert code == 0, err
        cells = row(idle, "cool")
        assert cells[1] == "oven"
        assert cells[3:6] == ["0", "0.0", "0"], cells  # lag, rate/s, in flight
        assert cells[8] == "-" and cells[9] == "ok", cells  # no breaker; healthy

        async def bake_on() -> None:
            number = 0
            while True:
                number += 1
                answer = await client.post(f"/api/oven/{number}")
                assert answer.status_code == 202, answer.text
                await asyncio.sleep(0.01)

        baking = asyncio.create_task(bake_on())
        try:
            code, busy, err = await pizza_status(tmp_path, "--once", "--url", served)
        finally:
            baking.cancel()
            await asyncio.gather(baking, return_exceptions=True)
    assert code == 0, err
    rate = float(row(busy, "cool")[4])
    assert rate > 0, busy
    assert served in busy and "loop lag" in busy


async def test_nothing_answering_is_one_line_and_exit_1(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = await pizza_status(tmp_path, "--once", "--url", url)
    assert code == 1
    assert f"nothing answers at {url}" in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err + out


def test_the_default_url_is_the_one_pizza_up_serves_under_its_home(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pizza import status_cli

    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    assert status_cli.served_urls() == [status_cli.DEFAULT_URL]
    (tmp_path / "url").write_text("http://127.0.0.1:8123\n")
    assert status_cli.served_urls() == ["http://127.0.0.1:8123"]
