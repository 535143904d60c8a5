"""The checks of checkout's requests (CartService, CheckoutService) that the servicers run before they call a
use case, so nothing is written for a bad request; each refusal is an InvalidArgument naming the request field
(DESIGN.md §4.6). Where a request has several bad fields, the first refused is the one these checks reach first.

The field rules are kernel.validation's. What needs policy or state stays in the use cases: a cart's currency
(defaulted from the policy), a line's summed quantity against the policy's maximum, an unknown sku, the
session's currency, whether it is still open. Ids are returned in their canonical form for the use cases.
"""

from __future__ import annotations

from dataclasses import replace

from checkout.biz.checkout.update_state import StateUpdate
from kassa.checkout.v1 import cart_service_pb2 as cart_pb
from kassa.checkout.v1 import checkout_service_pb2 as pb
from kernel.errors import InvalidArgument
from kernel.validation import (
    check_address,
    check_amount,
    check_country,
    check_email,
    check_payment_method,
    check_shipping_method,
    check_sku,
    check_text,
    check_uuid,
)

__all__ = [
    "MAX_IDEMPOTENCY_KEY",
    "MAX_NOTES",
    "check_cart_id",
    "check_cart_line",
    "check_confirm_checkout",
    "check_remove_cart_item",
    "check_session_id",
    "check_start_checkout",
    "check_state_update",
    "validate_quantity",
    "validate_sku",
]

MAX_IDEMPOTENCY_KEY = 255
MAX_PROMOTION_CODES = 5
MAX_CODE_LENGTH = 64
MAX_NOTES = 500


def validate_sku(sku: str, field: str = "sku") -> str:
    """The catalog's sku rule (kernel.validation.check_sku), so a sku pricing would refuse is refused here by
    the request's own field name rather than by pricing's; surrounding white space is dropped."""
    sku = (sku or "").strip()
    if not sku:
        raise InvalidArgument(field, "is required")
    return check_sku(field, sku)


def validate_quantity(quantity: int, maximum: int, field: str = "quantity") -> int:
    """``maximum`` is the policy's max_item_quantity, handed to the servicer by bootstrap."""
    if not 1 <= quantity <= maximum:
        raise InvalidArgument(field, f"must be between 1 and {maximum}")
    return quantity


def check_cart_id(cart_id: str) -> str:
    """GetCart, and the cart every cart request names: a UUID, returned in its canonical form."""
    return check_uuid("cart_id", cart_id)


def check_session_id(session_id: str) -> str:
    """The session a CheckoutService request names: a UUID, returned in its canonical form."""
    return check_uuid("session_id", session_id)


def check_cart_line(
    request: cart_pb.AddCartItemRequest | cart_pb.UpdateCartItemRequest, max_quantity: int
) -> tuple[str, str]:
    """AddCartItem and UpdateCartItem: the sku, the quantity, then the cart id; the cart id (canonical) and the
    sku (without surrounding white space)."""
    sku = validate_sku(request.sku)
    validate_quantity(request.quantity, max_quantity)
    return check_cart_id(request.cart_id), sku


def check_remove_cart_item(request: cart_pb.RemoveCartItemRequest) -> tuple[str, str]:
    """RemoveCartItem: the sku, then the cart id; both as check_cart_line returns them."""
    sku = validate_sku(request.sku)
    return check_cart_id(request.cart_id), sku


def check_start_checkout(request: pb.StartCheckoutRequest) -> str:
    """The country to ship to may be left out (it is asked for later); one that is given is an ISO code. Then
    the cart id, returned in its canonical form."""
    if request.ship_to_country_code:
        check_country("ship_to_country_code", request.ship_to_country_code)
    return check_cart_id(request.cart_id)


def check_state_update(update: StateUpdate) -> StateUpdate:
    """UpdateCheckoutState's fields, in this order, each named; the update as it is stored (email, methods and
    codes without surrounding white space, methods in their stored case, codes upper-case and without repeats).
    An empty value clears the field and is not checked."""
    if update.email is not None:
        update = replace(update, email=check_email("email", update.email) if update.email.strip() else "")
    if update.shipping_address is not None:
        check_address("shipping_address", update.shipping_address)
    if update.billing_address is not None:
        check_address("billing_address", update.billing_address)
    if update.shipping_method is not None:
        method = update.shipping_method.strip().lower()
        if method:
            check_shipping_method("shipping_method", method)
        update = replace(update, shipping_method=method)
    if update.payment_method is not None:
        payment = update.payment_method
        update = replace(
            update, payment_method=check_payment_method("payment_method", payment) if payment.strip() else ""
        )
    if update.promotion_codes is not None:
        codes = list(dict.fromkeys(c.strip().upper() for c in update.promotion_codes))
        if len(codes) > MAX_PROMOTION_CODES:
            raise InvalidArgument("promotion_codes", f"at most {MAX_PROMOTION_CODES} codes")
        for i, code in enumerate(codes):
            bare = code.replace("-", "").replace("_", "")
            if not code or len(code) > MAX_CODE_LENGTH or not (bare.isascii() and bare.isalnum()):
                raise InvalidArgument(f"promotion_codes[{i}]", "must be 1-64 letters, digits, '-' or '_'")
        update = replace(update, promotion_codes=codes)
    if update.notes is not None:
        # Free text for the order: it may span lines, but holds no other control character.
        check_text("notes", update.notes, max_length=MAX_NOTES, multiline=True)
    return update


def check_confirm_checkout(request: pb.ConfirmCheckoutRequest) -> str:
    """The idempotency key is storable text; the total the client saw, when sent, a currency code and a payable
    amount; then the session id (returned in its canonical form), a key that is not blank and a total that is
    sent. Its currency is compared with the session's by the use case."""
    check_text("idempotency_key", request.idempotency_key, max_length=MAX_IDEMPOTENCY_KEY)
    if request.HasField("expected_grand_total"):
        total = request.expected_grand_total
        check_text("expected_grand_total.currency_code", total.currency_code, max_length=3)
        check_amount("expected_grand_total.amount_minor", total.amount_minor)
    session_id = check_session_id(request.session_id)
    key = request.idempotency_key
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or not key.strip():
        raise InvalidArgument("idempotency_key", "must be 1 to 255 characters")
    if not request.HasField("expected_grand_total"):
        raise InvalidArgument("expected_grand_total", "is required: send the grand total the customer saw")
    return session_id
