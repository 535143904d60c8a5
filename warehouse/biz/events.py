"""Payloads of the events the warehouse publishes (subjects ``kassa.warehouse.<EventType>``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from warehouse.model.inventory import Reservation

RESERVATIONS_CONFIRMED = "ReservationsConfirmed"
RESERVATION_EXPIRED = "ReservationExpired"


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
