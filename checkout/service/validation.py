"""The checks of CheckoutService's requests that the servicer runs before it calls a use case, so nothing is
written for a bad request; each refusal is an InvalidArgument naming the request field (DESIGN.md §4.6).

The field rules are infra.validation's. The checks the use cases run themselves (a sku, a quantity against the
policy's maximum, a session's notes and payment method, the ids they load by) stay in checkout/biz/validation.py
and the use cases.
"""

from __future__ import annotations

from infra.validation import check_amount, check_country, check_text
from kassa.checkout.v1 import checkout_service_pb2 as pb

__all__ = ["check_confirm_checkout", "check_start_checkout"]

MAX_IDEMPOTENCY_KEY = 255


def check_start_checkout(request: pb.StartCheckoutRequest) -> None:
    """The country to ship to may be left out (it is asked for later); one that is given is an ISO code."""
    if request.ship_to_country_code:
        check_country("ship_to_country_code", request.ship_to_country_code)


def check_confirm_checkout(request: pb.ConfirmCheckoutRequest) -> None:
    """The idempotency key is storable text; the total the client saw, when sent, a currency code and a payable
    amount (its currency is compared with the session's by the use case)."""
    check_text("idempotency_key", request.idempotency_key, max_length=MAX_IDEMPOTENCY_KEY)
    if request.HasField("expected_grand_total"):
        total = request.expected_grand_total
        check_text("expected_grand_total.currency_code", total.currency_code, max_length=3)
        check_amount("expected_grand_total.amount_minor", total.amount_minor)
