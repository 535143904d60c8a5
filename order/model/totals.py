"""The order's totals, a rule that holds whoever places the order (DESIGN.md §4.6 and §3 step 7).

Pure. :func:`verify_totals` recomputes the totals from the lines and discounts and refuses the first
inconsistent total, so an order is never stored with amounts that do not add up, and
:func:`verify_authorized_amount` refuses an order whose payment holds another amount than that grand
total. The request's own field checks run before, in ``order/service/validation.py``.
"""

from __future__ import annotations

from kernel.errors import FailedPrecondition, InvalidArgument, Reason
from kernel.money import Money
from order.model.order import NewOrder, Totals

__all__ = ["recompute_totals", "verify_authorized_amount", "verify_totals"]


def recompute_totals(order: NewOrder) -> Totals:
    """The totals the lines and discounts imply; shipping and tax are taken as quoted.

    subtotal = Σ line totals, discount_total = Σ discounts,
    grand_total = subtotal - discount_total + shipping_total + tax_total. Integer minor units only,
    so there is no rounding here: the rounding happened upstream (pricing, promotion) and is
    captured in the line totals and discount amounts this sums.
    """
    currency = order.currency_code
    subtotal = sum((line.line_total for line in order.lines), Money.zero(currency))
    discount_total = sum((d.amount for d in order.discounts), Money.zero(currency))
    shipping, tax = order.totals.shipping_total, order.totals.tax_total
    return Totals(
        subtotal=subtotal,
        discount_total=discount_total,
        shipping_total=shipping,
        tax_total=tax,
        grand_total=subtotal - discount_total + shipping + tax,
    )


def verify_totals(order: NewOrder) -> None:
    """Refuse the first total that differs from its recomputation, naming it."""
    expected = recompute_totals(order)
    given = order.totals
    if given.subtotal != expected.subtotal:
        raise InvalidArgument("totals.subtotal", f"must be the sum of the line totals, {expected.subtotal}")
    if given.discount_total != expected.discount_total:
        raise InvalidArgument("totals.discount_total", f"must be the sum of the discounts, {expected.discount_total}")
    if expected.discount_total.amount_minor > (expected.subtotal + expected.shipping_total).amount_minor:
        raise InvalidArgument("totals.discount_total", "must not exceed subtotal plus shipping")
    if given.grand_total != expected.grand_total:
        raise InvalidArgument(
            "totals.grand_total",
            f"must be subtotal - discount_total + shipping_total + tax_total = {expected.grand_total}",
        )


def verify_authorized_amount(order: NewOrder) -> None:
    """Refuse an order whose payment holds anything but its recomputed grand total.

    A FailedPrecondition (PAYMENT_AMOUNT_MISMATCH), not an InvalidArgument: the request is well formed,
    but the money held does not match the order, and the caller must void the authorization.
    """
    expected = recompute_totals(order).grand_total
    authorized = order.authorized_amount
    if authorized != expected:
        raise FailedPrecondition(
            f"the payment holds {authorized}, but the order's grand total is {expected}",
            reason=Reason.PAYMENT_AMOUNT_MISMATCH,
            metadata={
                "authorized_minor": str(authorized.amount_minor if authorized else ""),
                "grand_total_minor": str(expected.amount_minor),
                "currency_code": expected.currency_code,
            },
        )
