"""Request validation: every refusal is INVALID_ARGUMENT naming the field (DESIGN.md §4.6), before any write."""

from __future__ import annotations

import math

from google.protobuf.duration_pb2 import Duration

from infra.pb import address_from_pb
from kassa.warehouse.v1 import inventory_pb2, inventory_service_pb2
from kernel.errors import InvalidArgument
from kernel.validation import check_count, check_country, check_sku, check_text
from warehouse.model.inventory import ReserveLine, StockSetting, Warehouse

__all__ = [
    "MAX_DRIFT_SKUS",
    "MAX_LINES",
    "MAX_QUANTITY",
    "drift_skus",
    "reason",
    "reference",
    "reserve_lines",
    "ship_to_country",
    "skus",
    "stock_settings",
    "ttl_seconds",
    "warehouses",
]

MAX_LINES = 1000
MAX_QUANTITY = 100_000
MAX_ON_HAND = 1_000_000_000
MAX_TTL_SECONDS = 24 * 3600
MAX_ID_LENGTH = 200
MAX_TEXT_LENGTH = 200
MAX_REASON_LENGTH = 500
MAX_DRIFT_SKUS = 1000


def _identifier(value: str, field: str) -> str:
    if not value.strip():
        raise InvalidArgument(field, "must not be empty")
    if len(value) > MAX_ID_LENGTH or value != value.strip():
        raise InvalidArgument(field, f"must be at most {MAX_ID_LENGTH} characters with no surrounding spaces")
    return check_text(field, value, max_length=MAX_ID_LENGTH)


def reference(value: str, field: str = "reservation_ref") -> str:
    return _identifier(value, field)


def reason(value: str, field: str = "reason") -> str:
    """Free text that is only logged: it may span lines, but holds no other control character."""
    return check_text(field, value, max_length=MAX_REASON_LENGTH, multiline=True)


def ttl_seconds(ttl: Duration, present: bool, default: int, field: str = "ttl") -> int:
    """Whole seconds (rounded up) of a positive TTL of at most a day; ``default`` when absent."""
    if not present:
        return default
    seconds = ttl.seconds + ttl.nanos / 1e9
    if seconds <= 0 or seconds > MAX_TTL_SECONDS:
        raise InvalidArgument(field, f"must be positive and at most {MAX_TTL_SECONDS} seconds")
    return math.ceil(seconds)


def ship_to_country(value: str) -> str:
    """Empty (ship anywhere) or an upper-case country code (kernel.validation.check_country)."""
    return check_country("ship_to_country_code", value) if value else ""


def reserve_lines(lines: list[inventory_service_pb2.ReserveLine]) -> list[ReserveLine]:
    """Each line's sku and quantity; a sku repeated across lines may not exceed the limit in total."""
    check_count("lines", lines, MAX_LINES, required=True)
    totals: dict[str, int] = {}
    out: list[ReserveLine] = []
    for i, line in enumerate(lines):
        sku = _identifier(line.sku, f"lines[{i}].sku")
        if not 1 <= line.quantity <= MAX_QUANTITY:
            raise InvalidArgument(f"lines[{i}].quantity", f"must be between 1 and {MAX_QUANTITY}")
        totals[sku] = totals.get(sku, 0) + line.quantity
        if totals[sku] > MAX_QUANTITY:
            raise InvalidArgument(f"lines[{i}].quantity", f"total for sku {sku} exceeds {MAX_QUANTITY}")
        out.append(ReserveLine(sku, line.quantity))
    return out


def skus(items: list[inventory_service_pb2.StockQuery]) -> list[str]:
    check_count("items", items, MAX_LINES, required=True)
    out: list[str] = []
    for i, item in enumerate(items):
        out.append(_identifier(item.sku, f"items[{i}].sku"))
        if item.quantity < 0:
            raise InvalidArgument(f"items[{i}].quantity", "must not be negative")
    return out


def stock_settings(items: list[inventory_service_pb2.StockSetting]) -> list[StockSetting]:
    check_count("items", items, MAX_LINES, required=True)
    seen: set[tuple[str, str]] = set()
    out: list[StockSetting] = []
    for i, item in enumerate(items):
        sku = _identifier(item.sku, f"items[{i}].sku")
        warehouse_id = _identifier(item.warehouse_id, f"items[{i}].warehouse_id")
        if not 0 <= item.on_hand <= MAX_ON_HAND:
            raise InvalidArgument(f"items[{i}].on_hand", f"must be between 0 and {MAX_ON_HAND}")
        if (sku, warehouse_id) in seen:
            raise InvalidArgument(f"items[{i}]", "repeats an earlier sku and warehouse_id")
        seen.add((sku, warehouse_id))
        out.append(StockSetting(sku, warehouse_id, item.on_hand))
    return out


def warehouses(items: list[inventory_pb2.Warehouse]) -> list[Warehouse]:
    check_count("warehouses", items, MAX_LINES, required=True)
    seen: set[str] = set()
    out: list[Warehouse] = []
    for i, item in enumerate(items):
        warehouse_id = _identifier(item.warehouse_id, f"warehouses[{i}].warehouse_id")
        if warehouse_id in seen:
            raise InvalidArgument(f"warehouses[{i}].warehouse_id", "repeats an earlier warehouse")
        seen.add(warehouse_id)
        check_text(f"warehouses[{i}].name", item.name, max_length=MAX_TEXT_LENGTH, required=True)
        for name, value in address_from_pb(item.address).to_dict().items():
            check_text(f"warehouses[{i}].address.{name}", value, max_length=MAX_TEXT_LENGTH)
        check_country(f"warehouses[{i}].address.country_code", item.address.country_code)
        out.append(Warehouse(warehouse_id, item.name, address_from_pb(item.address)))
    return out


def drift_skus(skus: list[str]) -> list[str] | None:
    """The skus a drift report is limited to (StockAdminService); None (every sku) when there are none."""
    check_count("skus", skus, MAX_DRIFT_SKUS)
    return [check_sku(f"skus[{i}]", s) for i, s in enumerate(skus)] or None
