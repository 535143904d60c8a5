"""A shopping cart and its lines, priced in integer minor units of one currency."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from infra.money import Money

__all__ = ["Cart", "CartItem", "CartStatus", "PriceChange"]


class CartStatus(StrEnum):
    ACTIVE = "ACTIVE"
    CHECKOUT = "CHECKOUT"
    CONVERTED = "CONVERTED"


@dataclass(frozen=True, slots=True)
class CartItem:
    sku: str
    name: str
    quantity: int
    unit_price_minor: int

    @property
    def line_total_minor(self) -> int:
        return self.unit_price_minor * self.quantity


@dataclass(slots=True)
class Cart:
    cart_id: str
    customer_id: str
    currency_code: str
    status: CartStatus = CartStatus.ACTIVE
    version: int = 1
    items: list[CartItem] = field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def subtotal(self) -> Money:
        return Money(self.currency_code, sum(i.line_total_minor for i in self.items))

    def item(self, sku: str) -> CartItem | None:
        return next((i for i in self.items if i.sku == sku), None)


@dataclass(frozen=True, slots=True)
class PriceChange:
    """A line whose catalog price moved since it was added to the cart."""

    sku: str
    old_price: Money
    new_price: Money
