"""What the sync and async clients share: the RPC table, the retry policy and how requests are built.

Retries: a call is retried on UNAVAILABLE (with exponential backoff and jitter, within the call's deadline)
only when repeating it cannot do the work twice: reads, calls that set rather than add (UpdateCartItem,
RemoveCartItem, UpdateCheckoutState), and ConfirmCheckout, whose idempotency key is chosen once, before
the first attempt, and sent unchanged with every retry (Kassa answers a repeat with the first result).
CreateCart, AddCartItem, StartCheckout and CancelOrder are not retried: an UNAVAILABLE after the server
acted would repeat the work; the caller decides.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import tenacity
from google.protobuf import message

from kassa.checkout.v1 import cart_service_pb2 as cart_pb
from kassa.checkout.v1 import cart_service_pb2_grpc as cart_grpc
from kassa.checkout.v1 import checkout_service_pb2 as checkout_pb
from kassa.checkout.v1 import checkout_service_pb2_grpc as checkout_grpc
from kassa.common.v1 import address_pb2, money_pb2
from kassa.order.v1 import order_service_pb2 as order_pb
from kassa.order.v1 import order_service_pb2_grpc as order_grpc

__version__ = "0.1.0"

# The service each stub talks to, and which target (checkout or orders) serves it.
STUBS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "carts": (cart_grpc.CartServiceStub, "checkout"),
    "checkout": (checkout_grpc.CheckoutServiceStub, "checkout"),
    "orders": (order_grpc.OrderServiceStub, "orders"),
}
USER_AGENT = f"kassa-client-python/{__version__}"


@dataclass(frozen=True)
class Rpc:
    """One RPC: the stub that has it, whether a repeat is harmless, and its deadline when not the default."""

    stub: str
    method: str
    retry: bool
    timeout: float | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff on UNAVAILABLE for the calls that may repeat: ``attempts`` in all, within the call's deadline."""

    attempts: int = 4
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    retry_codes: frozenset[grpc.StatusCode] = field(default_factory=lambda: frozenset({grpc.StatusCode.UNAVAILABLE}))

    def tenacity_args(self, rpc: Rpc, deadline: float) -> dict[str, Any]:
        def retryable(exc: BaseException) -> bool:
            return rpc.retry and isinstance(exc, grpc.RpcError) and exc.code() in self.retry_codes

        def out_of_time(_state: tenacity.RetryCallState) -> bool:
            return time.monotonic() + self.initial_backoff >= deadline

        return {
            "retry": tenacity.retry_if_exception(retryable),
            "stop": tenacity.stop_after_attempt(self.attempts) | out_of_time,
            "wait": tenacity.wait_exponential_jitter(
                multiplier=self.initial_backoff, max=self.max_backoff, jitter=self.initial_backoff
            ),
            "reraise": True,
        }


NO_RETRY = RetryPolicy(attempts=1)


def channel_options(options: Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    return [("grpc.primary_user_agent", USER_AGENT), *(options or {}).items()]


def bearer(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def remaining(deadline: float) -> float:
    """Seconds left before ``deadline``; a call made with no time left fails DEADLINE_EXCEEDED at once."""
    return max(deadline - time.monotonic(), 0.001)


# -- requests ----------------------------------------------------------------------------------------------
# Each returns the Rpc and its request; the sync and async clients only send them.

Call = tuple[Rpc, message.Message]


def create_cart(currency_code: str) -> Call:
    return Rpc("carts", "CreateCart", retry=False), cart_pb.CreateCartRequest(currency_code=currency_code)


def get_cart(cart_id: str) -> Call:
    return Rpc("carts", "GetCart", retry=True), cart_pb.GetCartRequest(cart_id=cart_id)


def add_cart_item(cart_id: str, sku: str, quantity: int) -> Call:
    request = cart_pb.AddCartItemRequest(cart_id=cart_id, sku=sku, quantity=quantity)
    return Rpc("carts", "AddCartItem", retry=False), request


def update_cart_item(cart_id: str, sku: str, quantity: int) -> Call:
    request = cart_pb.UpdateCartItemRequest(cart_id=cart_id, sku=sku, quantity=quantity)
    return Rpc("carts", "UpdateCartItem", retry=True), request


def remove_cart_item(cart_id: str, sku: str) -> Call:
    return Rpc("carts", "RemoveCartItem", retry=True), cart_pb.RemoveCartItemRequest(cart_id=cart_id, sku=sku)


def start_checkout(cart_id: str, ship_to_country_code: str) -> Call:
    request = checkout_pb.StartCheckoutRequest(cart_id=cart_id, ship_to_country_code=ship_to_country_code)
    return Rpc("checkout", "StartCheckout", retry=False), request


def update_checkout_state(
    session_id: str,
    *,
    email: str | None = None,
    shipping_address: address_pb2.Address | None = None,
    billing_address: address_pb2.Address | None = None,
    shipping_method: str | None = None,
    payment_method: str | None = None,
    promotion_codes: list[str] | None = None,
    notes: str | None = None,
) -> Call:
    """Only the arguments given are sent (and so replaced); the rest of the session is kept."""
    request = checkout_pb.UpdateCheckoutStateRequest(session_id=session_id)
    given: dict[str, Any] = {
        "email": email,
        "shipping_address": shipping_address,
        "billing_address": billing_address,
        "shipping_method": shipping_method,
        "payment_method": payment_method,
        "promotion_codes": promotion_codes,
        "notes": notes,
    }
    for name, value in given.items():
        if value is None:
            continue
        if isinstance(value, message.Message):
            getattr(request, name).CopyFrom(value)
        elif isinstance(value, list):
            getattr(request, name).extend(value)
        else:
            setattr(request, name, value)
        request.update_mask.paths.append(name)
    return Rpc("checkout", "UpdateCheckoutState", retry=True), request


def preview_order(session_id: str) -> Call:
    return Rpc("checkout", "PreviewOrder", retry=True), checkout_pb.PreviewOrderRequest(session_id=session_id)


def get_checkout_session(session_id: str) -> Call:
    request = checkout_pb.GetCheckoutSessionRequest(session_id=session_id)
    return Rpc("checkout", "GetCheckoutSession", retry=True), request


# ConfirmCheckout runs the whole saga (authorize, reserve, create the order, capture): a longer deadline.
CONFIRM_TIMEOUT_FACTOR = 3.0


def confirm_checkout(
    session_id: str, expected_grand_total: money_pb2.Money | None, idempotency_key: str | None, timeout: float
) -> Call:
    """A fresh idempotency key unless given: chosen here, once, so every retry of this call sends it."""
    request = checkout_pb.ConfirmCheckoutRequest(
        session_id=session_id,
        idempotency_key=idempotency_key or uuid.uuid4().hex,
        expected_grand_total=expected_grand_total,
    )
    return Rpc("checkout", "ConfirmCheckout", retry=True, timeout=timeout * CONFIRM_TIMEOUT_FACTOR), request


def get_order(order_id: str) -> Call:
    return Rpc("orders", "GetOrder", retry=True), order_pb.GetOrderRequest(order_id=order_id)


def list_orders(page_size: int, page_token: str) -> Call:
    request = order_pb.ListOrdersRequest(page_size=page_size, page_token=page_token)
    return Rpc("orders", "ListOrders", retry=True), request


def cancel_order(order_id: str, reason: str) -> Call:
    return Rpc("orders", "CancelOrder", retry=False), order_pb.CancelOrderRequest(order_id=order_id, reason=reason)


def order_timeline(order_id: str) -> Call:
    return Rpc("orders", "GetOrderTimeline", retry=True), order_pb.GetOrderTimelineRequest(order_id=order_id)
