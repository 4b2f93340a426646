"""The ledger of one scenario: what was promised, what happened, and whether the goal holds.

Goal (issue 8): 0 lost, 0 duplicate effects, 0 stuck, 0 healthy messages dead-lettered,
and every process meant to be up answers /api/health within 1 s throughout. A hostile
scenario also expects every hostile delivery dead-lettered (refused as malformed).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rich.table import Table

HEALTH_GOAL = 1.0


@dataclass
class Ledger:
    scenario: str
    offered: int = 0
    accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    completed: int = 0
    cancelled: int = 0
    lost: list[str] = field(default_factory=list)        # 202 but never confirmed on the bus
    stuck: Counter[str] = field(default_factory=Counter)  # status (and what is missing) -> n
    duplicate_points: int = 0   # customers with more points than their completed orders earn
    duplicate_emails: int = 0   # orders with one email (same subject) delivered twice or more
    duplicate_tickets: int = 0  # orders the kitchen cooked twice (OrderPrepared, distinct ids)
    dead_lettered: int = 0
    dead_reasons: Counter[str] = field(default_factory=Counter)
    healthy_dead_lettered: int = 0
    hostile_sent: int = 0
    hostile_expected: int = 0   # deliveries of hostile messages (one per queue on its subject)
    hostile_dead_lettered: int = 0
    settle_seconds: float | None = None  # from the last 202 to every order settled
    health_slowest: float = 0.0
    health_slowest_at: str = ""
    health_failures: int = 0
    health_last_failure: str = ""
    health_degraded: int = 0
    retries: int = 0
    seconds: float = 0.0
    events: list[str] = field(default_factory=list)  # what the scenario did, and when
    error: str | None = None

    @property
    def duplicates(self) -> int:
        return self.duplicate_points + self.duplicate_emails + self.duplicate_tickets

    @property
    def hostile_missed(self) -> int:
        return max(0, self.hostile_expected - self.hostile_dead_lettered)

    def misses(self) -> list[str]:
        """Why the goal is not met (empty when it is)."""
        why = []
        if self.error:
            why.append(f"the scenario failed: {self.error}")
        if self.accepted == 0:
            why.append("no order was accepted, so nothing was shown")
        if self.lost:
            why.append(f"{len(self.lost)} lost")
        if self.duplicates:
            why.append(f"{self.duplicates} duplicate effects")
        if self.stuck:
            why.append(f"{sum(self.stuck.values())} stuck")
        if self.healthy_dead_lettered:
            why.append(f"{self.healthy_dead_lettered} healthy messages dead-lettered")
        if self.hostile_missed:
            why.append(f"{self.hostile_missed} hostile deliveries not dead-lettered")
        if self.health_slowest >= HEALTH_GOAL:
            why.append(f"/api/health took {self.health_slowest:.2f}s ({self.health_slowest_at})")
        if self.health_failures:
            why.append(f"/api/health failed {self.health_failures} times")
        return why

    @property
    def met(self) -> bool:
        return not self.misses()

    def table(self) -> Table:
        verdict = "[green]goal met[/]" if self.met else "[red]goal missed[/]"
        table = Table(title=f"{self.scenario}: {verdict} ({self.seconds:.0f}s)",
                      title_justify="left")
        table.add_column("")
        table.add_column("value", justify="right")
        table.add_column("goal", justify="right")
        table.add_column("detail", overflow="fold")
        refused = sum(self.refused.values())
        rows: list[tuple[str, str, str, str]] = [
            ("accepted (202)", f"{self.accepted} of {self.offered}", "",
             f"{self.retries} retries" if self.retries else ""),
            ("refused", str(refused), "", _top(self.refused)),
            ("completed", str(self.completed), "", ""),
            ("cancelled", str(self.cancelled), "", ""),
            ("lost", str(len(self.lost)), "0", ", ".join(self.lost[:3])),
            ("duplicate effects", str(self.duplicates), "0",
             f"points {self.duplicate_points}, emails {self.duplicate_emails}, "
             f"tickets {self.duplicate_tickets}"),
            ("stuck", str(sum(self.stuck.values())), "0", _top(self.stuck)),
            ("dead-lettered", str(self.dead_lettered), "", _top(self.dead_reasons)),
            ("healthy dead-lettered", str(self.healthy_dead_lettered), "0", ""),
        ]
        if self.hostile_sent:
            rows.append(("hostile dead-lettered",
                         f"{self.hostile_dead_lettered} of {self.hostile_expected}",
                         str(self.hostile_expected),
                         f"{self.hostile_sent} hostile messages sent"))
        settle = "not settled" if self.settle_seconds is None else f"{self.settle_seconds:.1f}s"
        rows += [
            ("time to settle", settle, "", "from the last 202"),
            ("slowest /api/health", f"{self.health_slowest:.3f}s", f"< {HEALTH_GOAL:.0f}s",
             self.health_slowest_at),
            ("/api/health failures", str(self.health_failures), "0",
             "; ".join(filter(None, [self.health_last_failure, f"{self.health_degraded} x 503"
                                     if self.health_degraded else ""]))),
        ]
        for row in rows:
            table.add_row(*row)
        if self.error:
            head, _, rest = self.error.partition("\n")
            table.add_row("[red]error[/]", "", "", head[:200] + (f"\n...{rest[-300:]}"
                                                                   if rest else ""))
        return table


def _top(counts: Counter[str], n: int = 4) -> str:
    return ", ".join(f"{name}: {count}" for name, count in counts.most_common(n))


def summary(ledgers: list[Ledger]) -> list[str]:
    """One line per scenario (narrow terminals and CI logs wrap lines, not tables)."""
    lines = []
    for ledger in ledgers:
        settle = ("not settled" if ledger.settle_seconds is None
                  else f"settled in {ledger.settle_seconds:.1f}s")
        verdict = "[green]goal met[/]" if ledger.met else "[red]goal missed[/]"
        lines.append(
            f"{ledger.scenario:9} {verdict}: {ledger.accepted} accepted, {ledger.completed} "
            f"completed, {len(ledger.lost)} lost, {ledger.duplicates} duplicate effects, "
            f"{sum(ledger.stuck.values())} stuck, {ledger.healthy_dead_lettered} healthy "
            f"dead-lettered ({ledger.dead_lettered} in all), {settle}, /api/health max "
            f"{ledger.health_slowest:.2f}s")
    return lines
