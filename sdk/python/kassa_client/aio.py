"""The asyncio client (grpc.aio): ``async with AsyncKassaClient(target, token=...) as kassa: ...``."""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, cast

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

__all__ = ["AsyncKassaClient"]

TokenProvider = Callable[[], "str | Awaitable[str]"]


class AsyncKassaClient:
    """Carts, checkout and orders over grpc.aio.

    ``target`` is the checkout service (it serves CartService and CheckoutService), ``orders_target`` the
    order service (default: ``target``, for one ingress in front of both). Auth: a bearer ``token``, or a
    ``token_provider`` called before every attempt (plain or async), so a refreshed token is used on retry.
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
        self._channels: dict[str, grpc.aio.Channel] = {}
        for addr in targets.values():
            if addr not in self._channels:
                self._channels[addr] = (
                    grpc.aio.secure_channel(addr, credentials, options=options)
                    if credentials is not None
                    else grpc.aio.insecure_channel(addr, options=options)
                )
        self._stubs = {name: stub(self._channels[targets[role]]) for name, (stub, role) in _core.STUBS.items()}
        self._token = token
        self._token_provider = token_provider
        self.timeout = timeout
        self.retry = retry or _core.RetryPolicy()
        self.carts = AsyncCarts(self)
        self.checkout = AsyncCheckout(self)
        self.orders = AsyncOrders(self)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()

    async def __aenter__(self) -> AsyncKassaClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _metadata(self) -> tuple[tuple[str, str], ...]:
        token = self._token
        if self._token_provider is not None:
            provided = self._token_provider()
            token = await provided if inspect.isawaitable(provided) else cast(str, provided)
        return _core.bearer(token)

    async def call(self, rpc: _core.Rpc, request: message.Message, timeout: float | None = None) -> Any:
        """Send ``request`` with a deadline, retrying per the policy; a failure raises a KassaError subclass."""
        deadline = time.monotonic() + (timeout or rpc.timeout or self.timeout)
        method = getattr(self._stubs[rpc.stub], rpc.method)
        try:
            async for attempt in tenacity.AsyncRetrying(**self.retry.tenacity_args(rpc, deadline)):
                with attempt:
                    metadata = await self._metadata()
                    return await method(request, timeout=_core.remaining(deadline), metadata=metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        raise AssertionError("unreachable: tenacity returns or raises")


class _Part:
    def __init__(self, client: AsyncKassaClient) -> None:
        self._client = client

    async def _send(self, call: _core.Call, timeout: float | None) -> Any:
        return await self._client.call(*call, timeout=timeout)


class AsyncCarts(_Part):
    """kassa.checkout.v1.CartService; each method returns the cart as it is after the call."""

    async def create(self, *, currency_code: str = "", timeout: float | None = None) -> cart_pb2.Cart:
        return (await self._send(_core.create_cart(currency_code), timeout)).cart

    async def get(self, cart_id: str, *, timeout: float | None = None) -> cart_pb2.Cart:
        return (await self._send(_core.get_cart(cart_id), timeout)).cart

    async def add_item(self, cart_id: str, *, sku: str, quantity: int, timeout: float | None = None) -> cart_pb2.Cart:
        return (await self._send(_core.add_cart_item(cart_id, sku, quantity), timeout)).cart

    async def update_item(
        self, cart_id: str, *, sku: str, quantity: int, timeout: float | None = None
    ) -> cart_pb2.Cart:
        return (await self._send(_core.update_cart_item(cart_id, sku, quantity), timeout)).cart

    async def remove_item(self, cart_id: str, *, sku: str, timeout: float | None = None) -> cart_pb2.Cart:
        return (await self._send(_core.remove_cart_item(cart_id, sku), timeout)).cart


class AsyncCheckout(_Part):
    """kassa.checkout.v1.CheckoutService."""

    async def start(
        self, cart_id: str, *, ship_to_country_code: str = "", timeout: float | None = None
    ) -> checkout_pb.StartCheckoutResponse:
        """The new session and the lines whose price changed since they were added."""
        return await self._send(_core.start_checkout(cart_id, ship_to_country_code), timeout)

    async def update_state(
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
        return (await self._send(call, timeout)).session

    async def preview(self, session_id: str, *, timeout: float | None = None) -> checkout_pb2.OrderPreview:
        return (await self._send(_core.preview_order(session_id), timeout)).preview

    async def get_session(self, session_id: str, *, timeout: float | None = None) -> checkout_pb2.CheckoutSession:
        return (await self._send(_core.get_checkout_session(session_id), timeout)).session

    async def confirm(
        self,
        session_id: str,
        *,
        expected_grand_total: money_pb2.Money | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> checkout_pb.ConfirmCheckoutResponse:
        """Place the order. Pass your own ``idempotency_key`` to make a later retry of yours safe too."""
        call = _core.confirm_checkout(session_id, expected_grand_total, idempotency_key, self._client.timeout)
        return await self._send(call, timeout)


class AsyncOrders(_Part):
    """kassa.order.v1.OrderService (the caller's own orders)."""

    async def get(self, order_id: str, *, timeout: float | None = None) -> order_pb2.Order:
        return (await self._send(_core.get_order(order_id), timeout)).order

    async def list(
        self, *, page_size: int = 0, page_token: str = "", timeout: float | None = None
    ) -> order_pb.ListOrdersResponse:
        return await self._send(_core.list_orders(page_size, page_token), timeout)

    async def cancel(self, order_id: str, *, reason: str = "", timeout: float | None = None) -> order_pb2.Order:
        return (await self._send(_core.cancel_order(order_id, reason), timeout)).order

    async def timeline(self, order_id: str, *, timeout: float | None = None) -> list[order_pb2.OrderEvent]:
        return list((await self._send(_core.order_timeline(order_id), timeout)).events)
