"""Promotions, the cart they are applied to, and what applying them gives. Pure values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from kernel.money import Money

__all__ = [
    "Applied",
    "Cart",
    "CartLine",
    "Conditions",
    "Evaluation",
    "Promotion",
    "PromotionType",
    "Rejected",
]


class PromotionType(StrEnum):
    PERCENTAGE = "PERCENTAGE"
    FIXED_AMOUNT = "FIXED_AMOUNT"
    FREE_SHIPPING = "FREE_SHIPPING"
    BUY_X_GET_Y = "BUY_X_GET_Y"


@dataclass(frozen=True, slots=True)
class CartLine:
    sku: str
    category: str
    brand: str
    quantity: int
    unit_price: Money

    @property
    def total_minor(self) -> int:
        return self.unit_price.amount_minor * self.quantity


@dataclass(frozen=True, slots=True)
class Cart:
    currency_code: str
    lines: tuple[CartLine, ...]
    shipping_total: Money

    @property
    def subtotal_minor(self) -> int:
        return sum(line.total_minor for line in self.lines)


@dataclass(frozen=True, slots=True)
class Conditions:
    """Which lines a promotion applies to; an empty set means every line.

    Categories and brands match case-insensitively (they are typed by people); skus exactly.
    """

    skus: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    brands: frozenset[str] = frozenset()
    buy_quantity: int = 0
    get_quantity: int = 0

    def matches(self, line: CartLine) -> bool:
        return (
            (not self.skus or line.sku in self.skus)
            and (not self.categories or line.category.casefold() in {c.casefold() for c in self.categories})
            and (not self.brands or line.brand.casefold() in {b.casefold() for b in self.brands})
        )


@dataclass(frozen=True, slots=True)
class Promotion:
    promotion_id: str
    # Upper case.
    code: str
    name: str
    type: PromotionType
    # 1..100 for PERCENTAGE, else 0.
    percent_off: int = 0
    # For FIXED_AMOUNT, in ``currency_code``.
    amount_off_minor: int = 0
    # "" means any currency (never for FIXED_AMOUNT or a minimum subtotal).
    currency_code: str = ""
    # 0 means unlimited.
    usage_limit: int = 0
    usage_limit_per_customer: int = 0
    min_subtotal_minor: int = 0
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    combinable: bool = False
    active: bool = True
    conditions: Conditions = field(default_factory=Conditions)
    used_count: int = 0
    reserved_count: int = 0

    @property
    def usage_count(self) -> int:
        """Confirmed plus reserved uses: what the usage limit is checked against."""
        return self.used_count + self.reserved_count

    @property
    def exhausted(self) -> bool:
        return self.usage_limit > 0 and self.usage_count >= self.usage_limit


@dataclass(frozen=True, slots=True)
class Applied:
    code: str
    promotion_id: str
    discount: Money
    free_shipping: bool = False


@dataclass(frozen=True, slots=True)
class Rejected:
    code: str
    # PROMOTION_INVALID or PROMOTION_EXHAUSTED.
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Evaluation:
    applied: list[Applied]
    rejected: list[Rejected]
    discount_total: Money
    free_shipping: bool
