"""The published language: every event and command that crosses a service boundary.

Services never import each other; they import these declarations, which are the schema
contract the governance gate (``pizza events check``) protects. One module per owner.
"""

from pizza.contracts import delivery, kitchen, loyalty, notifications, orders, pickup

__all__ = ["delivery", "kitchen", "loyalty", "notifications", "orders", "pickup"]
