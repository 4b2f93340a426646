"""`pizza up --processes N`: how the supervisor spreads the services over N processes."""

from __future__ import annotations

import pytest

from pizza.app import SERVICES
from pizza.supervisor import spread


@pytest.mark.parametrize("processes", [0, len(SERVICES), 50])
def test_zero_or_enough_processes_give_each_service_its_own(processes: int) -> None:
    assert spread(SERVICES, processes) == [[name] for name in SERVICES]


@pytest.mark.parametrize("processes", [1, 2, 3, 6])
def test_every_service_runs_in_exactly_one_of_n_processes(processes: int) -> None:
    groups = spread(SERVICES, processes)
    assert len(groups) == processes
    assert sorted(name for group in groups for name in group) == sorted(SERVICES)
    sizes = [len(group) for group in groups]
    assert max(sizes) - min(sizes) <= 1  # dealt evenly


def test_the_busiest_services_land_in_different_processes() -> None:
    first, second = spread(SERVICES, 2)
    assert "orders" in first and "notifications" in second
