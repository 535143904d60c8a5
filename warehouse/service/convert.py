"""Protobuf ↔ model conversions for kassa.warehouse.v1."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from infra.pb import address_to_pb, timestamp_to_pb
from kassa.warehouse.v1 import inventory_pb2
from warehouse.model.inventory import Reservation, ReservationStatus, StockLevel, Warehouse

__all__ = ["earliest_expiry", "level_to_pb", "reservation_to_pb", "warehouse_to_pb"]

_STATUS = {
    ReservationStatus.ACTIVE: inventory_pb2.RESERVATION_STATUS_ACTIVE,
    ReservationStatus.CONFIRMED: inventory_pb2.RESERVATION_STATUS_CONFIRMED,
    ReservationStatus.RELEASED: inventory_pb2.RESERVATION_STATUS_RELEASED,
    ReservationStatus.EXPIRED: inventory_pb2.RESERVATION_STATUS_EXPIRED,
    # The proto has no RESTOCKED yet; like a released one, a restocked reservation holds and sells nothing.
    ReservationStatus.RESTOCKED: inventory_pb2.RESERVATION_STATUS_RELEASED,
}


def reservation_to_pb(r: Reservation) -> inventory_pb2.Reservation:
    return inventory_pb2.Reservation(
        reservation_id=r.reservation_id,
        reservation_ref=r.reservation_ref,
        sku=r.sku,
        warehouse_id=r.warehouse_id,
        quantity=r.quantity,
        status=_STATUS[r.status],
        expires_at=timestamp_to_pb(r.expires_at),
        origin=address_to_pb(r.origin),
    )


def level_to_pb(level: StockLevel) -> inventory_pb2.StockLevel:
    return inventory_pb2.StockLevel(
        sku=level.sku,
        warehouse_id=level.warehouse_id,
        on_hand=level.on_hand,
        reserved=level.reserved,
        available=level.available,
    )


def warehouse_to_pb(w: Warehouse) -> inventory_pb2.Warehouse:
    return inventory_pb2.Warehouse(warehouse_id=w.warehouse_id, name=w.name, address=address_to_pb(w.address))


def earliest_expiry(reservations: Sequence[Reservation]) -> Timestamp | None:
    """When the first still-active reservation lapses (the whole set must be extended by then)."""
    active = [r.expires_at for r in reservations if r.status is ReservationStatus.ACTIVE]
    return timestamp_to_pb(min(active)) if active else None
