"""Protobuf ↔ model conversions for kassa.warehouse.v1."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from kassa.common.v1 import address_pb2
from kassa.warehouse.v1 import inventory_pb2
from warehouse.model.inventory import Address, Reservation, ReservationStatus, StockLevel, Warehouse

__all__ = ["address_from_pb", "earliest_expiry", "level_to_pb", "reservation_to_pb", "warehouse_to_pb"]

_STATUS = {
    ReservationStatus.ACTIVE: inventory_pb2.RESERVATION_STATUS_ACTIVE,
    ReservationStatus.CONFIRMED: inventory_pb2.RESERVATION_STATUS_CONFIRMED,
    ReservationStatus.RELEASED: inventory_pb2.RESERVATION_STATUS_RELEASED,
    ReservationStatus.EXPIRED: inventory_pb2.RESERVATION_STATUS_EXPIRED,
}


def timestamp(dt: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(dt)
    return ts


def address_to_pb(a: Address) -> address_pb2.Address:
    return address_pb2.Address(
        name=a.name,
        line1=a.line1,
        line2=a.line2,
        city=a.city,
        region=a.region,
        postal_code=a.postal_code,
        country_code=a.country_code,
        phone=a.phone,
    )


def address_from_pb(a: address_pb2.Address) -> Address:
    return Address(
        name=a.name,
        line1=a.line1,
        line2=a.line2,
        city=a.city,
        region=a.region,
        postal_code=a.postal_code,
        country_code=a.country_code,
        phone=a.phone,
    )


def reservation_to_pb(r: Reservation) -> inventory_pb2.Reservation:
    return inventory_pb2.Reservation(
        reservation_id=r.reservation_id,
        reservation_ref=r.reservation_ref,
        sku=r.sku,
        warehouse_id=r.warehouse_id,
        quantity=r.quantity,
        status=_STATUS[r.status],
        expires_at=timestamp(r.expires_at),
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
    return timestamp(min(active)) if active else None
