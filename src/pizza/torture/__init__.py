"""`pizza torture`: the real system under concurrency, crashes, outages and hostile input,
black-box through HTTP and the bus, with a ledger per scenario (see the README)."""

from pizza.torture.ledger import Ledger
from pizza.torture.scenarios import SCENARIOS, run_scenario

__all__ = ["SCENARIOS", "Ledger", "run_scenario"]
