"""The ``pizza`` command: run the system, one service, an order, a load, the tools."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import orjson
import typer
from rich.console import Console
from rich.table import Table

from pizza import config, reaching
from pizza.broker_cli import broker_config, broker_provision
from pizza.cli_common import check_nats_creds, fail
from pizza.customers_cli import customers
from pizza.deadletters_cli import deadletters
from pizza.eventing import settings
from pizza.events_cli import events
from pizza.migrate_cli import migrate
from pizza.status_cli import status as status_command
from pizza.torture.command import torture

app = typer.Typer(help="Plant-Based Pizza: an event-driven system on NATS JetStream.",
                  no_args_is_help=True, add_completion=False)
app.add_typer(events, name="events", help="The event catalog and the schema gate.")
app.add_typer(deadletters, name="deadletters", help="Messages the queues gave up on.")
app.add_typer(customers, name="customers", help="A customer's personal data (forget).")
app.command()(torture)
app.command(name="broker-config")(broker_config)
app.command(name="broker-provision")(broker_provision)
app.command(name="status")(status_command)
app.command()(migrate)
console = Console()

SERVICE_PORTS = {"orders": 8001, "kitchen": 8002, "delivery": 8003, "pickup": 8004,
                 "loyalty": 8005, "notifications": 8006, "tracking": 8007}
ANSWER_SECONDS = 3.0  # how long a tool waits for the system to accept a connection


def _claim_home(command: str, shared_by: str | Sequence[str] | None = None,
                supervised: bool = False) -> None:
    """One PIZZA_HOME, one system: refuse at once, before touching the broker or a file."""
    from pizza import home

    try:
        home.claim(command, shared_by=shared_by, supervised=supervised)
    except home.HomeInUse as refused:
        fail(str(refused))
    except OSError as error:
        fail(f"{command}: cannot lock PIZZA_HOME {settings.home()}: {error.strerror or error}")


def _system_answers(url: str, hint: str = "`pizza up`") -> None:
    """Fail in seconds, in one line, when nothing answers at the system's URL."""
    try:
        httpx.get(f"{url}/api/health", timeout=ANSWER_SECONDS)
    except httpx.HTTPError:
        fail(f"nothing answers at {url}: is {hint} running?")


def _logging(verbose: bool) -> None:
    from pizza import logs

    logs.configure(verbose)  # one bounded line per event, text or PIZZA_LOG_FORMAT=json


def _serve(fastapi_app: Any, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(fastapi_app, host=host, port=port, log_config=None, access_log=False,
                timeout_graceful_shutdown=10)


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Address to serve the API on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the web app and API.")] = 8000,
    simulate: Annotated[bool, typer.Option(
        help="Kitchen, drivers and the pickup counter act by themselves.")] = False,
    cook_seconds: Annotated[float, typer.Option(help="Simulated cooking time.")] = 0.0,
    drive_seconds: Annotated[float, typer.Option(help="Simulated driving time.")] = 0.0,
    loyalty: Annotated[str, typer.Option(
        help="Loyalty backend: our own 'ledger' or the third-party 'saas'.")] = "",
    processes: Annotated[int, typer.Option(
        envvar="PIZZA_PROCESSES",
        help="0: a process per service behind one origin (every core); 1: every service "
        "in this process (for debugging); N: the services spread over N processes.")] = 0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """The whole system: embedded NATS, every service, the SMTP sink, one origin."""
    if processes < 0:
        raise typer.BadParameter("0 (a process per service), 1 (one process) or more",
                                 param_hint="--processes")
    _claim_home("pizza up")  # first: a second system must not touch this one's broker
    from pizza.app import SERVICES, Extras, as_environment, create_app, load

    _logging(verbose)
    changes: dict[str, Any] = {"simulate": simulate or config.settings().simulate}
    if cook_seconds:
        changes["cook_seconds"] = cook_seconds
    if drive_seconds:
        changes["drive_seconds"] = drive_seconds
    if loyalty:
        if loyalty not in ("ledger", "saas"):
            raise typer.BadParameter("choose 'ledger' or 'saas'", param_hint="--loyalty")
        changes["loyalty_backend"] = loyalty
    # Final before any service is made from them: the options, and where the SMTP sink
    # and the loyalty SaaS will be.
    extras = Extras(smtp_sink=True, loyalty_saas=True)
    current = extras.settle(config.configure(**changes))
    if processes == 1:
        fastapi_app = create_app(load(settings=current), extras=extras)
    else:
        from pizza.gateway import create_gateway
        from pizza.supervisor import Supervisor

        # Each child is told the settings as the PIZZA_* variables `pizza serve` reads.
        supervisor = Supervisor(SERVICES, {**os.environ, **as_environment(current)},
                                processes=processes)
        fastapi_app = create_gateway(load(settings=current), supervisor, extras)
    url = f"http://{host}:{port}"
    console.print(f"[bold green]Plant-Based Pizza[/] on [link={url}]{url}[/]")
    console.print(f"  order      {url}/   (customers sign up there)")
    console.print(f"  staff      {url}/kitchen  /delivery  /pickup  /mailbox  /events")
    console.print(f"  catalog    {url}/catalog   API docs {url}/docs")
    console.print(f"  state      {os.environ.get('PIZZA_HOME', '.pizza')}"
                  + ("   (simulating staff)" if changes["simulate"] else ""))
    console.print("  sign in    pizza token --role kitchen --link   (or driver, counter, "
                  "operator; a customer: --role customer --customer ID)")
    console.print("Ctrl-C stops it cleanly.")
    reaching.record_url(url)  # the tools on this PIZZA_HOME find the system here
    try:
        _serve(fastapi_app, host, port)
    finally:
        reaching.forget_url()


# The page a sign-in link (pizza token --link) leads each role to.
LINK_PAGES = {"kitchen": "/kitchen", "driver": "/delivery", "counter": "/pickup",
              "operator": "/events", "customer": "/"}


@app.command()
def token(
    role: Annotated[str, typer.Option(
        help="customer, kitchen, driver, counter or operator.")],
    customer: Annotated[str | None, typer.Option(
        help="The customer id a customer's token acts for.")] = None,
    ttl: Annotated[float, typer.Option(help="Seconds the token is valid.")] = 3600.0,
    link: Annotated[bool, typer.Option(
        "--link", help="Print a sign-in link to the web app (the role's page) instead: "
        "how staff sign in.")] = False,
    url: Annotated[str | None, typer.Option(
        help="With --link: the system's base URL (default: the one `pizza up` on "
        "$PIZZA_HOME serves).")] = None,
) -> None:
    """Print a bearer token that the system on this PIZZA_HOME accepts (one line)."""
    from pizza.web.identity import issue_token

    issuer = config.settings().oidc_issuer
    if issuer:
        fail(f"tokens come from the identity provider {issuer[:200]} (PIZZA_OIDC_ISSUER); "
             "pizza token signs only for the system's own issuer")
    if ttl <= 0 or ttl > 366 * 86400:
        raise typer.BadParameter("between 1 second and a year", param_hint="--ttl")
    try:
        made = issue_token(role, customer, ttl=ttl)
        if link:  # the token rides in the fragment, which no server or log ever sees
            page = quote(LINK_PAGES.get(role, "/"), safe="/")
            made = f"{reaching.system_url(url)}/sign-in?next={page}#token={made}"
        print(made)
    except ValueError as wrong:
        raise typer.BadParameter(str(wrong)) from None
    except OSError as error:
        fail(f"cannot read or make the signing key under {settings.home()}: {error}")


@app.command()
def serve(
    services: Annotated[list[str], typer.Argument(
        help="orders, kitchen, delivery, pickup, loyalty, notifications or tracking; "
        "several share the process", show_default=False)],
    host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (default: the first service's, "
                                      "8001-8007)")] = 0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Services in a process of their own (distributed mode; one, or a few together),
    configured by PIZZA_* variables."""
    from pizza.app import Extras, create_app, load

    _logging(verbose)
    unknown = [name for name in services if name not in SERVICE_PORTS]
    if unknown or len(set(services)) != len(services):
        raise typer.BadParameter(f"each once, from {', '.join(SERVICE_PORTS)}",
                                 param_hint="SERVICES")
    check_nats_creds(services)
    from pizza.supervisor import SUPERVISED

    command = f"pizza serve {' '.join(services)}"
    if os.environ.get(SUPERVISED):  # a process of `pizza up`, which holds the home
        _claim_home(command, shared_by=services, supervised=True)
    elif settings.nats_url() is None:  # it runs the embedded broker on PIZZA_HOME's store
        _claim_home(command)
    elif settings.database_url() is None:  # its SQLite files under PIZZA_HOME
        _claim_home(command, shared_by=services)
    port = port or SERVICE_PORTS[services[0]]
    extras = Extras(smtp_sink="notifications" in services and config.settings().smtp_sink)
    fastapi_app = create_app(load(services, extras.settle(config.settings())),
                             extras=extras)
    console.print(f"[bold green]{', '.join(services)}[/] on http://{host}:{port}")
    _serve(fastapi_app, host, port)


URL_HELP = "The system's base URL (default: the one `pizza up` on $PIZZA_HOME serves)."


@app.command()
def order(
    url: Annotated[str | None, typer.Option(help=URL_HELP)] = None,
    item: Annotated[list[str] | None, typer.Option(
        help="menuItemId[:quantity], repeatable.")] = None,
    pickup: Annotated[bool, typer.Option(help="Collect it instead of delivery.")] = False,
    customer: Annotated[str, typer.Option(help="Customer id.")] = "",
    email: Annotated[str, typer.Option(help="Where the receipt goes.")] = "",
    wait: Annotated[float, typer.Option(help="Seconds to follow the order.")] = 300.0,
) -> None:
    """Place an order and watch its status change live (signed in as the customer)."""
    url = reaching.system_url(url)
    customer = customer or f"cli-{uuid.uuid4().hex[:6]}"
    email = email or f"{customer}@example.com"
    lines = []
    for raw in item or ["margherita:1"]:
        name, _, quantity = raw.partition(":")
        lines.append({"menuItemId": name, "quantity": int(quantity or 1)})
    _system_answers(url)
    headers = _signed_in("customer", customer)
    try:
        asyncio.run(_order(url, headers, customer, email, lines, pickup, wait))
    except httpx.TransportError as error:
        fail(f"{url} stopped answering: {error!r}")


async def _order(url: str, headers: dict[str, str], customer: str, email: str,
                 lines: list[dict[str, Any]], pickup: bool, wait: float) -> None:
    timeout = httpx.Timeout(10, connect=ANSWER_SECONDS)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, headers=headers) as client:
        body: dict[str, Any] = {"customerId": customer, "email": email, "items": lines,
                                "fulfilment": "pickup" if pickup else "delivery"}
        if not pickup:
            address = await client.post("/api/delivery-addresses", json={
                "customerId": customer, "line1": "1 Basil Street", "city": "London",
                "postcode": "E1 6AN"})
            _fail_unless(address, 201)
            body["deliveryId"] = address.json()["deliveryId"]
        response = await client.post("/api/orders", json=body,
                                     headers={"Idempotency-Key": str(uuid.uuid4())})
        _fail_unless(response, 202)
        order_id = response.json()["orderId"]
        started = time.perf_counter()
        console.print(f"order [bold]{order_id}[/] accepted")
        seen: set[str] = set()
        try:
            await _follow(client, order_id, started, seen, wait)
        except TimeoutError:
            fail(f"order {order_id} not finished after {wait:g}s; statuses seen: "
                 f"{', '.join(seen) or 'none'}")


async def _follow(client: httpx.AsyncClient, order_id: str, started: float, seen: set[str],
                  wait: float) -> None:
    async with asyncio.timeout(wait), client.stream(
            "GET", f"/api/orders/{order_id}/stream", timeout=None) as stream:
        async for line in stream.aiter_lines():
            if not line.startswith("data:"):
                continue
            document = orjson.loads(line[5:].strip())
            status, points = document.get("status"), document.get("loyaltyPoints")
            elapsed = f"  {time.perf_counter() - started:7.2f}s  "
            if status and status not in seen:
                seen.add(status)
                console.print(elapsed + status)
            if points is not None and "points" not in seen:
                seen.add("points")
                console.print(f"{elapsed}+{points} loyalty points")
            if status == "cancelled" or (status == "completed" and points is not None):
                break


def _signed_in(role: str, customer: str | None = None) -> dict[str, str]:
    try:
        return reaching.signed_in(role, customer)
    except reaching.NoToken as why:
        fail(str(why))
    except (OSError, ValueError) as error:
        fail(f"cannot make a {role} token from PIZZA_HOME {settings.home()}: {error}")


def _fail_unless(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        console.print(f"[red]{response.request.method} {response.request.url.path} "
                      f"answered {response.status_code}[/]: {response.text}")
        raise typer.Exit(1)


@app.command()
def replay(
    service: Annotated[str, typer.Argument(help="The service to rebuild, e.g. tracking.")],
    url: Annotated[str | None, typer.Option(help=URL_HELP)] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the replay.")] = 300.0,
) -> None:
    """Rebuild a service's state from the whole history on the bus (CQRS replay)."""
    url = reaching.system_url(url)
    _system_answers(url)
    headers = _signed_in("operator")
    try:
        asyncio.run(_replay(url, headers, service, wait))
    except httpx.TransportError as error:
        fail(f"{url} stopped answering: {error!r}")
    except TimeoutError:
        fail(f"{service} not rebuilt after {wait:g}s")


async def _replay(url: str, headers: dict[str, str], service: str, wait: float) -> None:
    from rich.progress import Progress

    timeout = httpx.Timeout(30, connect=ANSWER_SECONDS)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, headers=headers) as client:
        started = await client.post(f"/api/admin/replay/{service}")
        _fail_unless(started, 202)
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"replaying {service}", total=None)
            async with asyncio.timeout(wait):
                while True:
                    await asyncio.sleep(0.3)
                    health = (await client.get("/api/health")).json()
                    queues = health["services"][service]["queues"].values()
                    counts = [q[k] for q in queues for k in ("waiting", "inFlight")]
                    if None in counts:  # health could not ask the broker in time
                        continue
                    left = sum(counts)
                    handled = sum(q["handled"] for q in queues)
                    bar.update(task, description=f"replaying {service}: {handled} handled, "
                                                 f"{left} to go")
                    if left == 0:
                        break
        console.print(f"[green]{service} rebuilt[/] from {handled} messages")


@app.command()
def bench(
    scenarios: Annotated[list[str] | None, typer.Argument(
        help="publish, consume, handlers, e2e, api, orders (default: all)")] = None,
    quick: Annotated[bool, typer.Option(help="A short run (smaller N), still 3 rounds.")] = False,
    out: Annotated[Path, typer.Option(help="Where the JSON results go.")] = Path(
        "bench-results/results.json"),
    plot: Annotated[Path | None, typer.Option(help="Draw PNG charts into DIR.")] = None,
) -> None:
    """How fast it is, next to raw nats-py and FastStream, measured in one run."""
    from pizza.bench import SCENARIOS, run

    names = list(scenarios or SCENARIOS)
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise typer.BadParameter(f"unknown {', '.join(unknown)}; choose from "
                                 f"{', '.join(SCENARIOS)}", param_hint="SCENARIOS")
    results = run(names, quick, out, plot)
    console.print(f"results written to {out}")
    if any(r.get("status") == "error" for r in results["scenarios"].values()):
        raise typer.Exit(1)


@app.command()
def simulate(
    url: Annotated[str | None, typer.Option(help=URL_HELP)] = None,
    orders: Annotated[int, typer.Option(help="How many orders to place.")] = 100,
    rate: Annotated[float, typer.Option(help="Orders per second offered.")] = 10.0,
    follow_seconds: Annotated[float, typer.Option(
        help="How long to follow each order.")] = 60.0,
) -> None:
    """Drive load through the HTTP API; report completions and latency to each status."""
    from rich.progress import Progress

    from pizza.loadgen import STATUSES, run_load

    if orders < 1 or rate <= 0:
        raise typer.BadParameter("--orders must be at least 1 and --rate positive")
    url = reaching.system_url(url)
    _system_answers(url, "`pizza up --simulate`")
    headers = _signed_in("operator")
    with Progress(console=console) as bar:
        accepted = bar.add_task("accepted", total=orders)
        finished = bar.add_task("finished", total=orders)
        tasks = {"accepted": accepted, "finished": finished}
        try:
            result = asyncio.run(run_load(
                url, orders=orders, rate=rate, follow_seconds=follow_seconds, headers=headers,
                progress=lambda name, n: bar.advance(tasks[name], n)))
        except httpx.HTTPError as broken:
            fail(f"{url} stopped answering: {broken!r}")
    table = Table(title=f"{result.accepted} accepted, {result.completed} completed of "
                        f"{orders} ({result.completed_per_second():.1f} completed/s)")
    table.add_column("status")
    for column in ("orders", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(column, justify="right")
    for status in STATUSES:
        values = result.latencies(status)
        if not values:
            continue
        cells = result.percentiles(status)
        table.add_row(status, str(len(values)),
                      *(f"{(cells[p] or 0) * 1000:.1f}" for p in ("p50", "p95", "p99")))
    console.print(table)
    for error in result.errors[:5]:
        console.print(f"[red]{error}[/]")
    if result.completed < orders:
        raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    app()
