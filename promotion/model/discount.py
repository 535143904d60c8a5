"""The pricing of promotions: which codes apply to a cart and what each takes off. Pure, no I/O: a domain rule.

Rules, in the order they are checked for each code (codes keep the customer's order):

1. the code exists, is active and inside its time window, matches the cart's currency, the cart's
   subtotal reaches its minimum, and at least one line meets its conditions (else PROMOTION_INVALID);
2. its usage limit and the customer's own limit are not reached (else PROMOTION_EXHAUSTED);
3. at most one non-combinable promotion: whichever comes first wins and the later codes are
   rejected (PROMOTION_INVALID);
4. the discount is capped so the total never exceeds the subtotal, and free shipping never exceeds
   the shipping total; a code left with nothing to take off is rejected rather than spending a use.

Every amount is an integer of the currency's minor unit; percentages round half up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from kernel.errors import Reason
from kernel.money import Money, percent_of
from promotion.model.promotion import (
    Applied,
    Cart,
    CartLine,
    Evaluation,
    Promotion,
    PromotionType,
    Rejected,
)

__all__ = [
    "buy_x_get_y_discount",
    "eligible_lines",
    "evaluate",
    "inapplicable_reason",
    "line_discount",
    "normalize_codes",
]


def normalize_codes(codes: Iterable[str]) -> list[str]:
    """Codes are case-insensitive and a code typed twice counts once; order is kept."""
    return list(dict.fromkeys(c.strip().upper() for c in codes if c.strip()))


def eligible_lines(promotion: Promotion, cart: Cart) -> list[CartLine]:
    return [line for line in cart.lines if line.quantity > 0 and promotion.conditions.matches(line)]


def buy_x_get_y_discount(lines: Sequence[CartLine], buy: int, get: int) -> int:
    """For every ``buy + get`` eligible units, the ``get`` cheapest units of the whole set are free."""
    if buy <= 0 or get <= 0:
        return 0
    units = sum(line.quantity for line in lines)
    free_units = (units // (buy + get)) * get
    discount = 0
    for line in sorted(lines, key=lambda line: line.unit_price.amount_minor):
        if free_units == 0:
            break
        taken = min(free_units, line.quantity)
        discount += taken * line.unit_price.amount_minor
        free_units -= taken
    return discount


def line_discount(promotion: Promotion, lines: Sequence[CartLine]) -> int:
    """What a non-shipping promotion takes off the eligible lines, before any cap."""
    eligible_minor = sum(line.total_minor for line in lines)
    match promotion.type:
        case PromotionType.PERCENTAGE:
            return percent_of(eligible_minor, promotion.percent_off * 100)
        case PromotionType.FIXED_AMOUNT:
            return min(promotion.amount_off_minor, eligible_minor)
        case PromotionType.BUY_X_GET_Y:
            conditions = promotion.conditions
            return buy_x_get_y_discount(lines, conditions.buy_quantity, conditions.get_quantity)
        case PromotionType.FREE_SHIPPING:
            return 0


def inapplicable_reason(promotion: Promotion, cart: Cart, now: datetime) -> str | None:
    """Why ``promotion`` cannot apply to ``cart`` at ``now``, or None when it can."""
    if not promotion.active:
        return f"{promotion.code} is not active"
    if promotion.starts_at is not None and now < promotion.starts_at:
        return f"{promotion.code} has not started yet"
    if promotion.ends_at is not None and now >= promotion.ends_at:
        return f"{promotion.code} has expired"
    if promotion.currency_code and promotion.currency_code != cart.currency_code:
        return f"{promotion.code} only applies to orders in {promotion.currency_code}"
    if cart.subtotal_minor < promotion.min_subtotal_minor:
        minimum = Money(cart.currency_code, promotion.min_subtotal_minor)
        return f"{promotion.code} needs a subtotal of at least {minimum}"
    if not eligible_lines(promotion, cart):
        return f"no item in the cart qualifies for {promotion.code}"
    return None


def _exhausted_reason(promotion: Promotion, customer_uses: int) -> str | None:
    if promotion.exhausted:
        return f"{promotion.code} has reached its usage limit"
    if promotion.usage_limit_per_customer > 0 and customer_uses >= promotion.usage_limit_per_customer:
        return f"{promotion.code} has already been used the maximum number of times by this customer"
    return None


def evaluate(
    codes: Sequence[str],
    promotions: Mapping[str, Promotion],
    cart: Cart,
    now: datetime,
    customer_uses: Mapping[str, int],
) -> Evaluation:
    """Apply ``codes`` (already normalized) in order; see the module docstring for the rules.

    ``promotions`` maps code to promotion (unknown codes are absent); ``customer_uses`` maps
    promotion id to the customer's reserved and confirmed uses.
    """
    applied: list[Applied] = []
    rejected: list[Rejected] = []
    exclusive: Applied | None = None
    items_left = cart.subtotal_minor
    free_shipping = False

    def reject(code: str, message: str, reason: str = Reason.PROMOTION_INVALID) -> None:
        rejected.append(Rejected(code, reason, message))

    for code in codes:
        promotion = promotions.get(code)
        if promotion is None:
            reject(code, f"unknown promotion code {code}")
            continue
        problem = inapplicable_reason(promotion, cart, now)
        if problem:
            reject(code, problem)
            continue
        problem = _exhausted_reason(promotion, customer_uses.get(promotion.promotion_id, 0))
        if problem:
            reject(code, problem, Reason.PROMOTION_EXHAUSTED)
            continue
        if exclusive is not None:
            reject(code, f"{code} cannot be combined with {exclusive.code}")
            continue
        if not promotion.combinable and applied:
            reject(code, f"{code} cannot be combined with other promotions")
            continue
        if promotion.type is PromotionType.FREE_SHIPPING:
            if free_shipping:
                reject(code, "shipping is already free")
                continue
            free_shipping = True
            result = Applied(code, promotion.promotion_id, cart.shipping_total, free_shipping=True)
        else:
            discount = min(line_discount(promotion, eligible_lines(promotion, cart)), items_left)
            if discount <= 0:
                reject(code, f"{code} takes nothing off this cart")
                continue
            items_left -= discount
            result = Applied(code, promotion.promotion_id, Money(cart.currency_code, discount))
        applied.append(result)
        if not promotion.combinable:
            exclusive = result
    total = sum(a.discount.amount_minor for a in applied)
    return Evaluation(applied, rejected, Money(cart.currency_code, total), free_shipping)
