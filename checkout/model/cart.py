"""A shopping cart and its lines, priced in integer minor units of one currency."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from kernel.money import Money

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

    def put(self, item: CartItem) -> None:
        """The sku's line replaced in place, or a new line last: the order lines keep when stored
        (they sort by the time they were added)."""
        if self.item(item.sku) is None:
            self.items = [*self.items, item]
        else:
            self.items = [item if i.sku == item.sku else i for i in self.items]

    def drop(self, sku: str) -> bool:
        """Remove the sku's line; False when there was none."""
        before = len(self.items)
        self.items = [i for i in self.items if i.sku != sku]
        return len(self.items) < before


@dataclass(frozen=True, slots=True)
class PriceChange:
    """A line whose catalog price moved since it was added to the cart."""

    sku: str
    old_price: Money
    new_price: Money
