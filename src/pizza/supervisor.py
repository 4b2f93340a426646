"""`pizza up` on every core: each service in a process of its own, under one supervisor.

The supervisor is the process `pizza up` starts. It holds ``$PIZZA_HOME``, runs the
embedded broker (with a user per service, ``transport/permissions.py``) and the simulated
loyalty SaaS, and starts one child per service: ``pizza serve SERVICE`` on a free local
port, the very command of distributed mode, with the broker's URL and the service's own
credentials. It then serves the one public origin (``gateway.py``), forwarding each
route to the child whose service declares it.

With ``processes=N`` (``pizza up --processes N``, N below the number of services) the
services are spread over N children instead (``spread``), each ``pizza serve A B ...``;
each service in such a child still connects to the broker as itself (its own seed from
the credentials directory), so the broker's permissions are the same in every layout.

* **One log**: every line a child writes is printed by the supervisor, prefixed with the
  service's name (children log one plain line per event when not on a terminal).
* **Restarts**: a child that exits is started again after a backoff (0.5 s, doubling to
  30 s; from the start again once it has run ``STEADY`` seconds), and ``/api/health``
  shows it ``down`` meanwhile. Its queue keeps its messages, so nothing is lost.
* **One Ctrl-C**: children run in sessions of their own (the terminal's SIGINT reaches
  only the supervisor), which stops them with SIGINT, waits for their clean stop, then
  stops the broker. A supervisor killed with SIGKILL takes them along: the kernel sends
  each child SIGKILL when its parent dies (Linux); their work is durable, and a clean
  stop could wait for ever on the broker that died with the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pizza.cli_common import pizza_command
from pizza.eventing import settings, topology
from pizza.eventing.service import Backoff, Service
from pizza.eventing.transport import credentials
from pizza.eventing.transport.embedded import EmbeddedNats, dies_with_parent, free_port
from pizza.eventing.transport.permissions import broker_users
from pizza.log_limits import MAX_CHARACTERS

log = logging.getLogger("pizza.supervisor")

STEADY = 30.0  # seconds a child must run for its next restart to wait the shortest time
STOP_SECONDS = 20.0  # a child's clean stop; then it is killed
START_SECONDS = 90.0
SUPERVISED = "PIZZA_SUPERVISED"  # set in a child's environment: its home is held for it


# The services by the CPU an order costs each (`pizza bench orders`, split by process),
# busiest first: dealt in this order, the busy ones land in different processes.
BUSIEST_FIRST = ("orders", "notifications", "tracking", "kitchen", "delivery", "pickup",
                 "loyalty")


def spread(services: Sequence[str], processes: int) -> list[list[str]]:
    """The services over ``processes`` children, dealt in turn busiest first; 0, or at
    least one per service, gives each its own."""
    count = len(services) if processes <= 0 else min(processes, len(services))
    if count == len(services):
        return [[service] for service in services]
    ranked = sorted(services, key=lambda name: (
        BUSIEST_FIRST.index(name) if name in BUSIEST_FIRST else len(BUSIEST_FIRST)))
    return [ranked[start::count] for start in range(count)]


@dataclass
class Child:
    """One process of one or more services, as the supervisor knows it; ``service`` is
    its name (the service's, or theirs joined with '+')."""

    service: str
    port: int
    env: dict[str, str]
    services: list[str] = field(default_factory=list)
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    exits: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def state(self) -> str:
        return "running" if self.running else "down"


class Supervisor:
    """The broker and one child process per service (see the module's docstring)."""

    def __init__(self, services: Sequence[str], env: dict[str, str],
                 backoff: Backoff | None = None, processes: int = 0) -> None:
        self.services = list(services)
        self.groups = spread(self.services, processes)
        self.base_env = env
        self.backoff = backoff or Backoff(initial=0.5, factor=2.0, maximum=30.0)
        self.broker: EmbeddedNats | None = None
        self.children: dict[str, Child] = {}
        self.child_of: dict[str, str] = {  # service -> the name of the child running it
            service: "+".join(group) for group in self.groups for service in group}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    @property
    def nats_url(self) -> str | None:
        return self.broker.url if self.broker is not None else settings.nats_url()

    @property
    def broker_up(self) -> bool:
        """Our embedded broker runs (an outside one: each child reports its connection)."""
        return self.broker is None or self.broker.running

    async def start(self) -> None:
        """Start the broker (unless PIZZA_NATS_URL names one) and a child per service."""
        from pizza.app import load

        services = load(self.services)
        if settings.nats_url() is not None:  # an outside broker: the children share it
            given = settings.nats_creds()
            await _provision(services, settings.nats_url() or "",
                             credentials.load(given) if given else None)
            for group in self.groups:
                self._child(group, {**self.base_env, SUPERVISED: "1"})
            self._start_children()
            return
        users = broker_users(services, settings.credentials_dir())
        operator = credentials.load(users.seeds[credentials.OPERATOR])
        self.broker = EmbeddedNats(settings.home() / "nats", authorization=users.config,
                                   credentials=operator, sync=settings.nats_sync())
        await self.broker.start()
        settings.broker_file().write_text(self.broker.url)
        await _provision(services, self.broker.url, operator, replicas=1)
        for group in self.groups:
            # One service: its seed; several: the directory of seeds, each its own.
            creds = users.seeds[group[0]] if len(group) == 1 else settings.credentials_dir()
            env = {**self.base_env, "PIZZA_NATS_URL": self.broker.url,
                   "PIZZA_NATS_CREDS": str(creds), SUPERVISED: "1",
                   "PIZZA_NATS_REPLICAS": "1"}  # one embedded server: one copy
            self._child(group, env)
        self._start_children()

    def _child(self, group: list[str], env: dict[str, str]) -> None:
        name = "+".join(group)
        self.children[name] = Child(name, free_port(), env, services=group)

    def _start_children(self) -> None:
        self._tasks = [asyncio.create_task(self._keep_running(child), name=child.service)
                       for child in self.children.values()]

    async def _keep_running(self, child: Child) -> None:
        attempt = 0
        while not self._stopping.is_set():
            if not _free(child.port):  # taken meanwhile (by anyone): the child moves
                child.port = free_port()
            child.process = await asyncio.create_subprocess_exec(
                *pizza_command(), "serve", *child.services, "--port", str(child.port),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=child.env, start_new_session=True,
                # A service whose supervisor died outright must not linger: its clean
                # stop may wait on the broker, which died with the supervisor.
                preexec_fn=dies_with_parent(signal.SIGKILL))
            child.started_at = time.monotonic()
            pump = asyncio.create_task(_print_lines(child))
            code = await child.process.wait()
            await pump
            child.exits.append(code)
            if self._stopping.is_set():
                return
            child.restarts += 1
            ran = time.monotonic() - child.started_at
            attempt = 1 if ran >= STEADY else attempt + 1
            delay = self.backoff.delay(attempt)
            log.warning("%s exited with %s after %.1f s; restarting in %.1f s",
                        child.service, code, ran, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def stop(self) -> None:
        self._stopping.set()
        running = [c for c in self.children.values() if c.running]
        for child in running:
            assert child.process is not None
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGINT)
        if self._tasks:
            _done, late = await asyncio.wait(self._tasks, timeout=STOP_SECONDS)
            for child in self.children.values():
                if child.running:
                    assert child.process is not None
                    log.warning("%s did not stop within %.0f s; killing it", child.service,
                                STOP_SECONDS)
                    with contextlib.suppress(ProcessLookupError):
                        child.process.kill()
            if late:
                await asyncio.wait(late, timeout=5)
        if self.broker is not None:
            settings.broker_file().unlink(missing_ok=True)
            await self.broker.stop()
            self.broker = None


def _free(port: int) -> bool:
    """Whether a child could listen on ``port`` now (the gateway finds it by its port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def _provision(services: Sequence[Service], url: str,
                     user: credentials.Credentials | None, replicas: int | None = None) -> None:
    """Every service's queues and declarations before any child starts, so no child
    misses another's first messages (``eventing/topology.py``)."""
    try:
        await topology.provision_broker(services, url, user, replicas=replicas)
    except Exception as error:  # e.g. credentials of one service only: each child then
        log.warning("could not provision the queues of every service before starting "
                    "them (%s); a consumer that starts late may miss a producer's first "
                    "messages", str(error)[:300])


async def _print_lines(child: Child) -> None:
    """Copy the child's output to ours, one line at a time, each with the service's name."""
    assert child.process is not None and child.process.stdout is not None
    out = sys.stderr
    prefix = f"{child.service:<13}| "
    while True:
        try:
            line = await child.process.stdout.readline()
        except ValueError:  # a line over the stream's limit: take what is there
            line = await child.process.stdout.read(64 * 1024)
        if not line:
            return
        text = line.decode("utf-8", "replace").rstrip("\n")
        if len(text) > MAX_CHARACTERS * 2:
            text = f"{text[:MAX_CHARACTERS * 2]}... [{len(text)} characters]"
        out.write(prefix + text + "\n")
        out.flush()
