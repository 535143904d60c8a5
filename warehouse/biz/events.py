"""Payloads of the events the warehouse publishes (subjects ``kassa.warehouse.<EventType>``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from warehouse.model.inventory import Reservation
from warehouse.model.reconciliation import StockAudit

RESERVATIONS_CONFIRMED = "ReservationsConfirmed"
RESERVATION_EXPIRED = "ReservationExpired"
STOCK_RESTOCKED = "StockRestocked"
STOCK_RECONCILED = "StockReconciled"


def reservation_payload(reservation_ref: str, reservations: Sequence[Reservation]) -> dict[str, Any]:
    """{reservation_ref, lines: [{reservation_id, sku, warehouse_id, quantity}]}."""
    return {
        "reservation_ref": reservation_ref,
        "lines": [
            {
                "reservation_id": r.reservation_id,
                "sku": r.sku,
                "warehouse_id": r.warehouse_id,
                "quantity": r.quantity,
            }
            for r in reservations
        ],
    }


def reconciled_payload(repaired: Sequence[StockAudit]) -> dict[str, Any]:
    """{repairs: [{sku, warehouse_id, on_hand, reserved_before, reserved_after}]}."""
    return {
        "repairs": [
            {
                "sku": a.sku,
                "warehouse_id": a.warehouse_id,
                "on_hand": a.on_hand,
                "reserved_before": a.reserved,
                "reserved_after": a.active_reserved,
            }
            for a in repaired
        ]
    }
