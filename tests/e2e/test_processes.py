"""`pizza up` runs each service in a process of its own, behind one origin.

Black-box: the system is started as a user would, its children are found as an operator
would (by their command lines, among the supervisor's descendants), and killed with
SIGKILL. A dead child is shown down in /api/health, restarted, and no order is lost;
Ctrl-C leaves no process behind, and neither does a supervisor killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from typing import Any

import pytest
from running_pizza import PIZZA, Pizza, eventually

pytestmark = pytest.mark.e2e


def children_of(pid: int) -> dict[str, int]:
    """The supervisor's `pizza serve SERVICE` children: service -> pid."""
    found: dict[str, int] = {}
    listing = subprocess.run(["ps", "-ww", "-eo", "pid=,ppid=,args="], capture_output=True,
                             text=True, check=True).stdout
    for line in listing.splitlines():
        fields = line.split(None, 2)
        if len(fields) == 3 and int(fields[1]) == pid and " serve " in f" {fields[2]} ":
            words = fields[2].split()
            found[words[words.index("serve") + 1]] = int(fields[0])
    return found


def port_of(pid: int) -> int:
    """The --port a `pizza serve` child was started with."""
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        words = cmdline.read().decode().split("\0")
    return int(words[words.index("--port") + 1])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead too
        return stat.read().split(") ", 1)[1][0] != "Z"


async def test_each_service_runs_in_its_own_process_and_comes_back_when_killed(
        start_pizza: Any) -> None:
    pizza: Pizza = await start_pizza("--simulate", "--processes", "0")
    assert pizza.process.proc is not None
    children = children_of(pizza.process.proc.pid)
    assert set(children) == {"orders", "kitchen", "delivery", "pickup", "loyalty",
                             "notifications", "tracking"}
    health = (await pizza.http.get("/api/health")).json()
    assert health["status"] == "ok"
    assert {p["state"] for p in health["processes"].values()} == {"running"}

    # The catalog's live consumers come from the broker, asked by a service's process.
    catalog = (await pizza.http.get("/api/catalog")).json()
    live = {(m["type"], m["version"]): m["liveConsumers"] for m in catalog}
    assert "kitchen" in live[("OrderConfirmed", 1)]
    assert "tracking" in live[("OrderConfirmed", 2)]

    # The operator's view gathers every process's numbers through the one origin.
    tool = await asyncio.create_subprocess_exec(
        PIZZA, "status", "--once", env={**pizza.process.env, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    shown = (await asyncio.wait_for(tool.communicate(), 60))[0].decode()
    assert tool.returncode == 0, shown
    ticket_row = next(line for line in shown.splitlines() if "open-ticket" in line)
    assert "?" not in ticket_row, ticket_row

    first = await pizza.place(f"c-{time.monotonic_ns()}", pickup=True)
    kitchen_port = port_of(children["kitchen"])
    os.kill(children["kitchen"], signal.SIGKILL)
    # Someone else takes the dead kitchen's port before its restart: it must come back
    # on another one, not crash for ever on this one.
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    async def port_taken() -> bool:
        try:
            squatter.bind(("127.0.0.1", kitchen_port))
        except OSError:
            return False
        squatter.listen()
        return True

    await eventually(port_taken, 5)

    async def kitchen_down() -> bool:
        report = (await pizza.http.get("/api/health")).json()
        return (report["status"] == "degraded"
                and report["processes"]["kitchen"]["restarts"] >= 1)

    await eventually(kitchen_down, 10)
    # Orders are still taken while the kitchen is away; its queue keeps them.
    second = await pizza.place(f"c-{time.monotonic_ns()}", pickup=True)

    async def kitchen_back() -> bool:
        report = (await pizza.http.get("/api/health")).json()
        return report["status"] == "ok" and report["processes"]["kitchen"]["state"] == \
            "running"

    try:
        await eventually(kitchen_back, 60)
        restarted = children_of(pizza.process.proc.pid)["kitchen"]
        assert restarted != children["kitchen"]
        assert port_of(restarted) != kitchen_port
        assert (await pizza.http.get("/api/kitchen/tickets")).status_code == 200
    finally:
        squatter.close()
    for order_id in (first, second):
        async def completed(order_id: str = order_id) -> bool:
            document = await pizza.order(order_id)
            return bool(document) and document["status"] == "completed"

        await eventually(completed, 60)

    # One Ctrl-C stops the supervisor and every child.
    pids = children_of(pizza.process.proc.pid)
    pizza.process.stop()
    assert pizza.process.proc.returncode is not None
    await eventually(_none_alive(pids.values()), 10)


async def test_a_supervisor_killed_outright_takes_its_children_along(
        start_pizza: Any) -> None:
    pizza: Pizza = await start_pizza("--processes", "0")
    assert pizza.process.proc is not None
    pids = list(children_of(pizza.process.proc.pid).values())
    assert len(pids) == 7
    os.kill(pizza.process.proc.pid, signal.SIGKILL)
    pizza.process.proc.wait()
    await eventually(_none_alive(pids), 15)


async def test_one_process_on_request(start_pizza: Any) -> None:
    pizza: Pizza = await start_pizza("--processes", "1")
    assert pizza.process.proc is not None
    assert children_of(pizza.process.proc.pid) == {}
    health = (await pizza.http.get("/api/health")).json()
    assert "processes" not in health and set(health["services"]) >= {"orders", "tracking"}


def _none_alive(pids: Any) -> Any:
    pids = list(pids)

    async def check() -> bool:
        await asyncio.sleep(0)
        return not any(alive(pid) for pid in pids)

    return check
