"""The short form of `pizza torture`: each scenario against the real system, and its goal.

Goal of every scenario: 0 lost, 0 duplicate effects, 0 stuck, 0 healthy messages
dead-lettered, /api/health always answered within 1 s (and, for hostile input, every
hostile delivery dead-lettered). Each scenario starts and removes its own nats-server,
PostgreSQL, PIZZA_HOME and processes.
"""

from __future__ import annotations

import pytest

from pizza.torture import run_scenario
from pizza.torture.infrastructure import SHARED_POSTGRES, shared_postgres_answers, why_no_postgres
from pizza.torture.ledger import Ledger

pytestmark = pytest.mark.e2e


async def postgres_or_skip(name: str) -> None:
    own = why_no_postgres()
    if name == "database" and own:
        pytest.skip(f"needs a PostgreSQL cluster of its own (initdb, pg_ctl): {own}")
    if name in ("writers", "kill") and own and not await shared_postgres_answers():
        pytest.skip(f"needs PostgreSQL: neither {SHARED_POSTGRES} answers nor can initdb "
                    f"run ({own})")


def explain(ledger: Ledger) -> str:
    return "\n".join([f"{ledger.scenario} missed its goal: {'; '.join(ledger.misses())}",
                      f"stuck: {dict(ledger.stuck)}", f"lost: {ledger.lost[:5]}",
                      f"dead letters: {dict(ledger.dead_reasons)}",
                      f"refused: {dict(ledger.refused)}", *ledger.events])


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", ["writers", "kill", "broker", "database", "hostile",
                                  "cluster"])
async def test_the_quick_torture_scenario_meets_the_goal(name: str) -> None:
    await postgres_or_skip(name)
    ledger = await run_scenario(name, quick=True)
    assert ledger.accepted > 0, explain(ledger)
    assert ledger.met, explain(ledger)


@pytest.mark.timeout(300)
async def test_the_broker_outage_meets_the_goal_with_every_service_in_one_process() -> None:
    # The scenarios above run `pizza up` as it runs by default, a process per service.
    ledger = await run_scenario("broker", quick=True, processes=1)
    assert ledger.accepted > 0, explain(ledger)
    assert ledger.met, explain(ledger)


@pytest.mark.parametrize("broken", ["lost", "duplicate", "stuck", "dead letter", "slow health",
                                    "hostile kept", "crashed"])
def test_each_broken_promise_misses_the_goal(broken: str) -> None:
    ledger = Ledger("sample", offered=10, accepted=10, completed=10)
    assert ledger.met
    if broken == "lost":
        ledger.lost.append("an-order")
    elif broken == "duplicate":
        ledger.duplicate_emails = 1
    elif broken == "stuck":
        ledger.stuck["prepared"] = 1
    elif broken == "dead letter":
        ledger.healthy_dead_lettered = 1
    elif broken == "slow health":
        ledger.health_slowest = 1.2
    elif broken == "hostile kept":
        ledger.hostile_expected, ledger.hostile_dead_lettered = 7, 6
    else:
        ledger.error = "RuntimeError: orders exited while starting"
    assert not ledger.met and ledger.misses()
