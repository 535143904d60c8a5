from __future__ import annotations

import pytest

from warehouse.model.allocation import Allocation, Shortage, allocate
from warehouse.model.inventory import ReserveLine, StockLevel, collapse_lines

pytestmark = pytest.mark.unit


def level(sku: str, wh: str, on_hand: int, reserved: int = 0) -> StockLevel:
    return StockLevel(sku, wh, on_hand, reserved)


def test_one_warehouse_serving_the_whole_order_wins_over_a_split() -> None:
    lines = [ReserveLine("A", 2), ReserveLine("B", 1)]
    levels = [level("A", "w1", 10), level("B", "w2", 10), level("A", "w3", 2), level("B", "w3", 1)]
    plan = allocate(lines, levels, {"w1": "US", "w2": "US", "w3": "DE"}, "US")
    assert plan.allocations == (Allocation("A", "w3", 2), Allocation("B", "w3", 1))


def test_a_whole_order_warehouse_in_the_ship_to_country_is_preferred() -> None:
    lines = [ReserveLine("A", 1)]
    levels = [level("A", "a-de", 5), level("A", "z-fr", 5)]
    plan = allocate(lines, levels, {"a-de": "DE", "z-fr": "FR"}, "FR")
    assert plan.allocations == (Allocation("A", "z-fr", 1),)


def test_without_ship_to_country_the_whole_order_warehouse_with_most_stock_wins() -> None:
    lines = [ReserveLine("A", 1), ReserveLine("B", 1)]
    levels = [level("A", "w1", 5), level("B", "w1", 5), level("A", "w2", 50), level("B", "w2", 2)]
    plan = allocate(lines, levels, {"w1": "SG", "w2": "US"})
    assert plan.allocations == (Allocation("A", "w2", 1), Allocation("B", "w2", 1))


def test_without_ship_to_country_equal_stock_ties_break_by_warehouse_id() -> None:
    plan = allocate([ReserveLine("A", 1)], [level("A", "w2", 5), level("A", "w1", 5)], {"w1": "DE", "w2": "FR"})
    assert plan.allocations == (Allocation("A", "w1", 1),)


def test_split_uses_the_fewest_warehouses_greedily_by_largest_available() -> None:
    lines = [ReserveLine("A", 6)]
    levels = [level("A", "small1", 3), level("A", "small2", 3), level("A", "big", 5), level("A", "tiny", 1)]
    plan = allocate(lines, levels, {}, "")
    assert plan.allocations == (Allocation("A", "big", 5), Allocation("A", "small1", 1))


def test_split_across_skus_counts_reserved_units_as_unavailable() -> None:
    lines = [ReserveLine("A", 3), ReserveLine("B", 3)]
    levels = [level("A", "w1", 10, reserved=7), level("B", "w1", 2), level("B", "w2", 3), level("A", "w2", 0)]
    plan = allocate(lines, levels, {}, "")
    assert plan.servable
    assert plan.allocations == (Allocation("A", "w1", 3), Allocation("B", "w1", 2), Allocation("B", "w2", 1))
    served = {sku: sum(a.quantity for a in plan.allocations if a.sku == sku) for sku in ("A", "B")}
    assert served == {"A": 3, "B": 3}


def test_every_short_sku_is_reported_with_its_total_available() -> None:
    lines = [ReserveLine("A", 5), ReserveLine("B", 1), ReserveLine("C", 3)]
    levels = [level("A", "w1", 2), level("A", "w2", 2, reserved=1), level("B", "w1", 1), level("C", "w1", 3, 1)]
    plan = allocate(lines, levels, {}, "")
    assert not plan.servable
    assert plan.allocations == ()
    assert plan.shortages == (Shortage("A", 3), Shortage("C", 2))


def test_unknown_sku_is_short_with_zero_available() -> None:
    plan = allocate([ReserveLine("ghost", 1)], [], {}, "")
    assert plan.shortages == (Shortage("ghost", 0),)


def test_duplicate_skus_are_collapsed_by_summing_in_first_seen_order() -> None:
    lines = [ReserveLine("B", 1), ReserveLine("A", 2), ReserveLine("B", 3)]
    assert collapse_lines(lines) == [ReserveLine("B", 4), ReserveLine("A", 2)]
