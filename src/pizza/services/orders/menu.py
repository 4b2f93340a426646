"""The menu: a small fixed vegan menu kept in code, priced in pence.

It changes with a release, not at run time, so a module is the simplest honest store.
Prices are integer pence here (no float rounding in totals); HTTP and events show pounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CURRENCY = "GBP"


@dataclass(frozen=True, slots=True)
class MenuItem:
    id: str
    name: str
    price_pence: int

    @property
    def price(self) -> float:
        """The price in pounds, as the API and the events show it."""
        return pounds(self.price_pence)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "price": self.price, "currency": CURRENCY}


MENU: tuple[MenuItem, ...] = (
    MenuItem("margherita", "Margherita (cashew mozzarella, basil)", 950),
    MenuItem("pepperoni-seitan", "Seitan Pepperoni", 1150),
    MenuItem("funghi", "Funghi (wild mushrooms, truffle oil)", 1100),
    MenuItem("garden-supreme", "Garden Supreme (peppers, olives, red onion)", 1050),
    MenuItem("bbq-jackfruit", "BBQ Pulled Jackfruit", 1200),
    MenuItem("garlic-bread", "Garlic Bread", 450),
    MenuItem("dough-balls", "Dough Balls with Herb Butter", 500),
    MenuItem("side-salad", "Rocket and Pear Salad", 400),
    MenuItem("lemonade", "Cloudy Lemonade", 300),
    MenuItem("cola", "Cola", 250),
    MenuItem("chocolate-brownie", "Chocolate Brownie", 450),
)

_BY_ID = {item.id: item for item in MENU}


def find(item_id: str) -> MenuItem | None:
    return _BY_ID.get(item_id)


def pounds(pence: int) -> float:
    """Pence as a number of pounds (what CONTRACT's events and routes carry)."""
    return round(pence / 100, 2)
