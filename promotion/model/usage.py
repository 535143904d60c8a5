"""Uses of promotions held by a reservation reference (the checkout session id), and their events."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kernel.money import Money

__all__ = ["Reservation", "Usage", "UsageEvent", "UsageStatus"]


class UsageStatus(StrEnum):
    """RESERVED → CONFIRMED (used) or RELEASED (back to the pool); CONFIRMED → RETURNED (the order was
    cancelled or its payment failed: the use went back to the pool). Only RESERVED and CONFIRMED count
    against the limits; a reservation never expires by itself (checkout or an order event ends it)."""

    RESERVED = "reserved"
    CONFIRMED = "confirmed"
    RELEASED = "released"
    RETURNED = "returned"


@dataclass(frozen=True, slots=True)
class Usage:
    promotion_id: str
    code: str
    reservation_ref: str
    customer_id: str
    status: UsageStatus
    # What the promotion took off when it was reserved, so a retry answers the same.
    discount: Money
    free_shipping: bool
    # The mailbox the use counts against besides the customer id (promotion.model.customer); None without one.
    customer_email_key: str | None = None


@dataclass(frozen=True, slots=True)
class Reservation:
    usages: list[Usage]
    discount_total: Money
    free_shipping: bool


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """PromotionUsageConfirmed or PromotionUsageReleased, one per reservation and transition."""

    event_type: str
    reservation_ref: str
    customer_id: str
    usages: tuple[Usage, ...]

    def data(self) -> dict[str, Any]:
        return {
            "reservation_ref": self.reservation_ref,
            "customer_id": self.customer_id,
            "promotions": [
                {
                    "promotion_id": u.promotion_id,
                    "code": u.code,
                    "discount": {"currency_code": u.discount.currency_code, "amount_minor": u.discount.amount_minor},
                    "free_shipping": u.free_shipping,
                }
                for u in self.usages
            ],
        }
