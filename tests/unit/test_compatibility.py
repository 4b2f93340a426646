"""Schema compatibility: which changes to a message break its consumers."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from pizza.eventing import Event
from pizza.eventing.compatibility import Incompatibility, check


def schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(by_alias=True)


def rules(found: list[Incompatibility]) -> set[tuple[str, str]]:
    return {(i.path, i.rule) for i in found}


class Part(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Money(Part):
    amount: float
    currency: str = "GBP"


class LineV1(Part):
    menu_item_id: str
    quantity: int


class LineNoQuantity(Part):
    menu_item_id: str


class LineStringQuantity(Part):
    menu_item_id: str
    quantity: str


class OrderV1(Event):
    order_id: str
    items: list[LineV1]
    order_value: float
    fulfilment: Literal["delivery", "pickup"]
    delivery_id: str | None = None


class OrderWithNote(OrderV1):
    note: str | None = None


class OrderWithRequiredNote(OrderV1):
    note: str


class OrderWithDefaultedNote(OrderV1):
    note: str = "none"


class OrderWithoutDeliveryId(Event):
    order_id: str
    items: list[LineV1]
    order_value: float
    fulfilment: Literal["delivery", "pickup"]


class OrderMoney(Event):  # the talk's example: orderValue number -> object
    order_id: str
    items: list[LineV1]
    order_value: Money
    fulfilment: Literal["delivery", "pickup"]
    delivery_id: str | None = None


class OrderDeliveryOnly(Event):
    order_id: str
    items: list[LineV1]
    order_value: float
    fulfilment: Literal["delivery"]
    delivery_id: str | None = None


class OrderAnyFulfilment(Event):
    order_id: str
    items: list[LineV1]
    order_value: float
    fulfilment: Literal["delivery", "pickup", "dine-in"]
    delivery_id: str | None = None


class OrderLinesWithoutQuantity(Event):
    order_id: str
    items: list[LineNoQuantity]
    order_value: float
    fulfilment: Literal["delivery", "pickup"]
    delivery_id: str | None = None


class OrderLinesStringQuantity(Event):
    order_id: str
    items: list[LineStringQuantity]
    order_value: float
    fulfilment: Literal["delivery", "pickup"]
    delivery_id: str | None = None


class OrderDeliveryIdRequired(Event):
    order_id: str
    items: list[LineV1]
    order_value: float
    fulfilment: Literal["delivery", "pickup"]
    delivery_id: str


class Count(Event):
    count: int


class CountFloat(Event):
    count: float


class Code(Event):
    code: str = Field(max_length=10)


class ShortCode(Event):
    code: str = Field(max_length=5)


class PatternCode(Event):
    code: str = Field(max_length=10, pattern="^[A-Z]+$")


class Node(Part):
    name: str
    children: list[Node] = []


class Tree(Event):
    root: Node


OLD = schema(OrderV1)


def test_identical_schemas_are_compatible_in_every_mode() -> None:
    for mode in ("BACKWARD", "FORWARD", "FULL"):
        assert check(OLD, schema(OrderV1), mode) == []


def test_adding_an_optional_field_is_compatible() -> None:
    assert check(OLD, schema(OrderWithNote)) == []
    assert check(OLD, schema(OrderWithNote), "FULL") == []


def test_adding_a_required_field_without_a_default_breaks() -> None:
    [issue] = check(OLD, schema(OrderWithRequiredNote))
    assert (issue.path, issue.rule) == ("note", "required-field-added")
    assert "note" in issue.message and "without a default" in issue.message


def test_adding_a_field_with_a_default_is_compatible() -> None:
    assert "note" not in schema(OrderWithDefaultedNote)["required"]  # pydantic: not required
    assert check(OLD, schema(OrderWithDefaultedNote)) == []


def test_removing_a_field_breaks_in_the_default_mode() -> None:
    [issue] = check(OLD, schema(OrderWithoutDeliveryId))
    assert (issue.path, issue.rule) == ("deliveryId", "field-removed")
    assert "string | null" in issue.message


def test_removing_an_optional_field_is_fine_for_a_pure_open_model_reader() -> None:
    assert check(OLD, schema(OrderWithoutDeliveryId), forbid_removal=False) == []
    assert check(OLD, schema(OrderWithoutDeliveryId), "FORWARD", forbid_removal=False) == []


def test_removing_a_required_field_breaks_old_consumers_even_without_the_rule() -> None:
    found = check(schema(OrderWithRequiredNote), OLD, "FORWARD", forbid_removal=False)
    assert rules(found) == {("note", "field-removed")}


def test_number_to_object_is_a_type_change() -> None:
    [issue] = check(OLD, schema(OrderMoney))
    assert (issue.path, issue.rule) == ("orderValue", "type-changed")
    assert "from number to object Money" in issue.message


def test_integer_to_number_widens_for_the_new_reader_only() -> None:
    assert check(schema(Count), schema(CountFloat)) == []
    [issue] = check(schema(Count), schema(CountFloat), "FORWARD")
    assert (issue.path, issue.rule) == ("count", "type-changed")
    assert "from integer to number" in issue.message
    assert check(schema(CountFloat), schema(Count)) != []  # number -> integer narrows


def test_narrowing_an_enum_breaks_and_widening_it_does_not() -> None:
    [issue] = check(OLD, schema(OrderDeliveryOnly))
    assert (issue.path, issue.rule) == ("fulfilment", "enum-narrowed")
    assert "'pickup'" in issue.message
    assert check(OLD, schema(OrderAnyFulfilment)) == []
    [widened] = check(OLD, schema(OrderAnyFulfilment), "FORWARD")
    assert (widened.path, widened.rule) == ("fulfilment", "enum-widened")


def test_changes_inside_list_items_are_found_by_path() -> None:
    removed = check(OLD, schema(OrderLinesWithoutQuantity))
    assert rules(removed) == {("items[].quantity", "field-removed")}
    [changed] = check(OLD, schema(OrderLinesStringQuantity))
    assert (changed.path, changed.rule) == ("items[].quantity", "type-changed")
    assert "from integer to string" in changed.message


def test_optional_to_required_breaks() -> None:
    found = check(OLD, schema(OrderDeliveryIdRequired))
    assert rules(found) == {("deliveryId", "field-made-required"),
                            ("deliveryId", "type-changed")}  # null no longer accepted
    assert check(OLD, schema(OrderDeliveryIdRequired), "FORWARD") == []


def test_full_catches_both_directions() -> None:
    assert check(OLD, schema(OrderWithoutDeliveryId), "BACKWARD") != []
    assert rules(check(schema(Count), schema(CountFloat), "FULL")) == {("count", "type-changed")}
    assert rules(check(OLD, schema(OrderAnyFulfilment), "FULL")) == {
        ("fulfilment", "enum-widened")}
    assert rules(check(OLD, schema(OrderDeliveryOnly), "FULL")) == {
        ("fulfilment", "enum-narrowed")}


def test_string_constraints_may_only_be_relaxed_by_the_reader() -> None:
    [shorter] = check(schema(Code), schema(ShortCode))
    assert (shorter.path, shorter.rule) == ("code", "constraint-narrowed")
    assert "maxLength changed from 10 to 5" in shorter.message
    assert check(schema(ShortCode), schema(Code)) == []
    [pattern] = check(schema(Code), schema(PatternCode))
    assert pattern.rule == "constraint-narrowed" and "pattern" in pattern.message
    [relaxed] = check(schema(ShortCode), schema(Code), "FORWARD")
    assert relaxed.rule == "constraint-relaxed"


def test_recursive_models_terminate() -> None:
    assert check(schema(Tree), schema(Tree), "FULL") == []


def test_messages_name_the_direction() -> None:
    [backward] = check(OLD, schema(OrderMoney), "BACKWARD")
    assert "consumers of the new schema cannot read old data" in backward.message
    [forward] = check(OLD, schema(OrderMoney), "FORWARD")
    assert "from number to object Money" in forward.message  # still old -> new
    assert "consumers of the old schema cannot read new data" in forward.message


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="SIDEWAYS"):
        check(OLD, OLD, "SIDEWAYS")
