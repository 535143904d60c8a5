"""The blocking client (grpc): ``with KassaClient(target, token=...) as kassa: ...``; see kassa_client.aio."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import grpc
import tenacity
from google.protobuf import message

from kassa.checkout.v1 import cart_pb2, checkout_pb2
from kassa.checkout.v1 import checkout_service_pb2 as checkout_pb
from kassa.common.v1 import address_pb2, money_pb2
from kassa.order.v1 import order_pb2
from kassa.order.v1 import order_service_pb2 as order_pb
from kassa_client import _core
from kassa_client.errors import from_rpc_error

__all__ = ["KassaClient"]

TokenProvider = Callable[[], str]


class KassaClient:
    """Carts, checkout and orders over blocking gRPC; the same arguments and methods as AsyncKassaClient.

    ``target`` is the checkout service (it serves CartService and CheckoutService), ``orders_target`` the
    order service (default: ``target``, for one ingress in front of both). Auth: a bearer ``token``, or a
    ``token_provider`` called before every attempt, so a refreshed token is used on retry.
    ``credentials`` makes the channels TLS. ``timeout`` is the default deadline of a call in seconds
    (ConfirmCheckout gets three times it); ``retry`` the backoff on UNAVAILABLE (kassa_client._core says
    which calls are retried).
    """

    def __init__(
        self,
        target: str,
        *,
        orders_target: str | None = None,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        timeout: float = 10.0,
        retry: _core.RetryPolicy | None = None,
        channel_options: Mapping[str, Any] | None = None,
    ) -> None:
        if token is not None and token_provider is not None:
            raise ValueError("pass token or token_provider, not both")
        options = _core.channel_options(channel_options)
        targets = {"checkout": target, "orders": orders_target or target}
        # One channel per distinct address: checkout and orders may be one ingress.
        self._channels: dict[str, grpc.Channel] = {}
        for addr in targets.values():
            if addr not in self._channels:
                self._channels[addr] = (
                    grpc.secure_channel(addr, credentials, options=options)
                    if credentials is not None
                    else grpc.insecure_channel(addr, options=options)
                )
        self._stubs = {name: stub(self._channels[targets[role]]) for name, (stub, role) in _core.STUBS.items()}
        self._token = token
        self._token_provider = token_provider
        self.timeout = timeout
        self.retry = retry or _core.RetryPolicy()
        self.carts = Carts(self)
        self.checkout = Checkout(self)
        self.orders = Orders(self)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def __enter__(self) -> KassaClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return _core.bearer(self._token_provider() if self._token_provider is not None else self._token)

    def call(self, rpc: _core.Rpc, request: message.Message, timeout: float | None = None) -> Any:
        """Send ``request`` with a deadline, retrying per the policy; a failure raises a KassaError subclass."""
        deadline = time.monotonic() + (timeout or rpc.timeout or self.timeout)
        method = getattr(self._stubs[rpc.stub], rpc.method)
        try:
            for attempt in tenacity.Retrying(**self.retry.tenacity_args(rpc, deadline)):
                with attempt:
                    return method(request, timeout=_core.remaining(deadline), metadata=self._metadata())
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        raise AssertionError("unreachable: tenacity returns or raises")


class _Part:
    def __init__(self, client: KassaClient) -> None:
        self._client = client

    def _send(self, call: _core.Call, timeout: float | None) -> Any:
        return self._client.call(*call, timeout=timeout)


class Carts(_Part):
    """kassa.checkout.v1.CartService; each method returns the cart as it is after the call."""

    def create(self, *, currency_code: str = "", timeout: float | None = None) -> cart_pb2.Cart:
        return (self._send(_core.create_cart(currency_code), timeout)).cart

    def get(self, cart_id: str, *, timeout: float | None = None) -> cart_pb2.Cart:
        return (self._send(_core.get_cart(cart_id), timeout)).cart

    def add_item(self, cart_id: str, *, sku: str, quantity: int, timeout: float | None = None) -> cart_pb2.Cart:
        return (self._send(_core.add_cart_item(cart_id, sku, quantity), timeout)).cart

    def update_item(self, cart_id: str, *, sku: str, quantity: int, timeout: float | None = None) -> cart_pb2.Cart:
        return (self._send(_core.update_cart_item(cart_id, sku, quantity), timeout)).cart

    def remove_item(self, cart_id: str, *, sku: str, timeout: float | None = None) -> cart_pb2.Cart:
        return (self._send(_core.remove_cart_item(cart_id, sku), timeout)).cart


class Checkout(_Part):
    """kassa.checkout.v1.CheckoutService."""

    def start(
        self, cart_id: str, *, ship_to_country_code: str = "", timeout: float | None = None
    ) -> checkout_pb.StartCheckoutResponse:
        """The new session and the lines whose price changed since they were added."""
        return self._send(_core.start_checkout(cart_id, ship_to_country_code), timeout)

    def update_state(
        self,
        session_id: str,
        *,
        email: str | None = None,
        shipping_address: address_pb2.Address | None = None,
        billing_address: address_pb2.Address | None = None,
        shipping_method: str | None = None,
        payment_method: str | None = None,
        promotion_codes: list[str] | None = None,
        notes: str | None = None,
        timeout: float | None = None,
    ) -> checkout_pb2.CheckoutSession:
        """Replace the fields given (even by empty values, which clear them); the others are kept."""
        call = _core.update_checkout_state(
            session_id,
            email=email,
            shipping_address=shipping_address,
            billing_address=billing_address,
            shipping_method=shipping_method,
            payment_method=payment_method,
            promotion_codes=promotion_codes,
            notes=notes,
        )
        return (self._send(call, timeout)).session

    def preview(self, session_id: str, *, timeout: float | None = None) -> checkout_pb2.OrderPreview:
        return (self._send(_core.preview_order(session_id), timeout)).preview

    def get_session(self, session_id: str, *, timeout: float | None = None) -> checkout_pb2.CheckoutSession:
        return (self._send(_core.get_checkout_session(session_id), timeout)).session

    def confirm(
        self,
        session_id: str,
        *,
        expected_grand_total: money_pb2.Money | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> checkout_pb.ConfirmCheckoutResponse:
        """Place the order. Pass your own ``idempotency_key`` to make a later retry of yours safe too."""
        call = _core.confirm_checkout(session_id, expected_grand_total, idempotency_key, self._client.timeout)
        return self._send(call, timeout)


class Orders(_Part):
    """kassa.order.v1.OrderService (the caller's own orders)."""

    def get(self, order_id: str, *, timeout: float | None = None) -> order_pb2.Order:
        return (self._send(_core.get_order(order_id), timeout)).order

    def list(
        self, *, page_size: int = 0, page_token: str = "", timeout: float | None = None
    ) -> order_pb.ListOrdersResponse:
        return self._send(_core.list_orders(page_size, page_token), timeout)

    def cancel(self, order_id: str, *, reason: str = "", timeout: float | None = None) -> order_pb2.Order:
        return (self._send(_core.cancel_order(order_id, reason), timeout)).order

    def timeline(self, order_id: str, *, timeout: float | None = None) -> list[order_pb2.OrderEvent]:
        return list((self._send(_core.order_timeline(order_id), timeout)).events)
