"""`pizza torture`: the real system under concurrency, crashes, outages and hostile input,
black-box through HTTP and the bus, with a ledger per scenario (see the README)."""

from typing import Any

from pizza.torture.ledger import Ledger


def __getattr__(name: str) -> Any:
    """The scenarios (and all they import) load when first used, not with the CLI."""
    if name in ("SCENARIOS", "run_scenario"):
        from pizza.torture import scenarios

        return getattr(scenarios, name)
    raise AttributeError(name)

__all__ = ["SCENARIOS", "Ledger", "run_scenario"]
