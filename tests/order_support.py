"""Orders for the order service's integration tests (a one-line $12 card order)."""

from __future__ import annotations

from helpers import unique

from kernel.money import Money
from order.model.order import Address, NewOrder, OrderLine, Totals

USD = "USD"


def new_order(customer_id: str, payment_id: str) -> NewOrder:
    price = Money(USD, 1200)
    return NewOrder(
        checkout_session_id=unique("sess"),
        customer_id=customer_id,
        email="",
        lines=(OrderLine("fig", "Fig", 1, price, price, "w1", ""),),
        discounts=(),
        totals=Totals(price, Money.zero(USD), Money.zero(USD), Money.zero(USD), price),
        shipping_address=Address(name="Ada", line1="1 Main St", city="Springfield", country_code="US"),
        billing_address=None,
        shipping_method="standard",
        payment_id=payment_id,
        payment_method="tok_visa",
        notes="",
        authorized_amount=price,
    )
