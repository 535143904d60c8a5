"""One full checkout, as a backend team calls it over gRPC or a web client over REST.

guest token -> create cart -> add the items -> StartCheckout -> UpdateCheckoutState (address,
"standard", "tok_visa") -> PreviewOrder -> ConfirmCheckout (fresh idempotency key, the previewed
grand total as the expected total). Each step's latency is recorded; the first refusal ends the flow
with a :class:`FlowError` whose ``key`` ("confirm: OUT_OF_STOCK", "start: HTTP 409 OUT_OF_STOCK")
is what the report counts errors by.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar

import aiohttp
import grpc

from infra.auth import mint_token
from infra.channels import ROUND_ROBIN, grpc_target
from infra.grpc_errors import error_info
from kassa.common.v1 import address_pb2
from kassa.order.v1 import order_pb2
from kassa_client import NO_RETRY, AsyncKassaClient, KassaError

__all__ = [
    "STEPS",
    "CheckoutFlow",
    "FlowError",
    "FlowOutcome",
    "GrpcCheckout",
    "HttpExchange",
    "RestCheckout",
    "grpc_reason",
    "rest_reason",
]

T = TypeVar("T")

# In the order a flow runs them; "guest" only over REST (over gRPC the token is minted locally).
STEPS: tuple[str, ...] = ("guest", "create_cart", "add_item", "start", "update", "preview", "confirm")

SHIP_TO = {
    "name": "Ada Lovelace",
    "line1": "1 Main Street",
    "city": "Newark",
    "region": "NJ",
    "postalCode": "07102",
    "countryCode": "US",
}
EMAIL = "bench@example.com"
SHIPPING_METHOD = "standard"
PAYMENT_METHOD = "tok_visa"
_CONFIRMED_GRPC = order_pb2.ORDER_STATUS_CONFIRMED
_CONFIRMED_REST = "ORDER_STATUS_CONFIRMED"


class FlowError(Exception):
    """A step was refused or failed; ``reason`` is the ErrorInfo reason, an HTTP status or a transport error."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason

    @property
    def key(self) -> str:
        return f"{self.step}: {self.reason}"


@dataclass
class FlowOutcome:
    """What a successful checkout produced, and how long each step took (seconds)."""

    session_id: str = ""
    order_id: str = ""
    steps: dict[str, list[float]] = field(default_factory=dict)

    @property
    def confirm_s(self) -> float:
        return self.steps["confirm"][-1]


class CheckoutFlow(Protocol):
    async def run(self, skus: Sequence[str], outcome: FlowOutcome) -> FlowOutcome: ...


async def _timed(outcome: FlowOutcome, step: str, call: Callable[[], Awaitable[T]]) -> T:
    started = time.perf_counter()
    result = await call()
    outcome.steps.setdefault(step, []).append(time.perf_counter() - started)
    return result


def grpc_reason(err: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a failed call, else its status code's name (chaos's clients count by it)."""
    info = error_info(err)
    return info.reason if info is not None and info.reason else err.code().name


_TOKEN: contextvars.ContextVar[str] = contextvars.ContextVar("bench_customer_token", default="")


class GrpcCheckout:
    """Straight to the checkout service through ``kassa_client`` (one client, one channel round-robin over the
    replicas), as a customer with a minted JWT: each flow sets its own token in a context variable that the
    client's token provider reads. No retries: a refused or failed call is what the bench counts."""

    def __init__(self, checkout_addr: str, jwt_secret: str, *, subject_prefix: str, timeout: float) -> None:
        self.kassa = AsyncKassaClient(
            grpc_target(checkout_addr),
            token_provider=_TOKEN.get,
            timeout=timeout,
            retry=NO_RETRY,
            channel_options={"grpc.service_config": ROUND_ROBIN},
        )
        self._secret = jwt_secret
        self._prefix = subject_prefix
        self._address = address_pb2.Address(
            name=SHIP_TO["name"],
            line1=SHIP_TO["line1"],
            city=SHIP_TO["city"],
            region=SHIP_TO["region"],
            postal_code=SHIP_TO["postalCode"],
            country_code=SHIP_TO["countryCode"],
        )

    async def run(self, skus: Sequence[str], outcome: FlowOutcome) -> FlowOutcome:
        _TOKEN.set(mint_token(self._secret, f"{self._prefix}-{uuid.uuid4().hex[:12]}"))
        carts, checkout = self.kassa.carts, self.kassa.checkout
        step = "create_cart"
        try:
            cart_id = (await _timed(outcome, step, lambda: carts.create(currency_code="USD"))).cart_id
            step = "add_item"
            for sku in skus:
                await _timed(outcome, step, partial(carts.add_item, cart_id, sku=sku, quantity=1))
            step = "start"
            started = await _timed(outcome, step, lambda: checkout.start(cart_id, ship_to_country_code="US"))
            outcome.session_id = session_id = started.session.session_id
            step = "update"
            await _timed(
                outcome,
                step,
                lambda: checkout.update_state(
                    session_id,
                    email=EMAIL,
                    shipping_address=self._address,
                    shipping_method=SHIPPING_METHOD,
                    payment_method=PAYMENT_METHOD,
                ),
            )
            step = "preview"
            previewed = await _timed(outcome, step, lambda: checkout.preview(session_id))
            step = "confirm"
            result = await _timed(
                outcome,
                step,
                lambda: checkout.confirm(
                    session_id, expected_grand_total=previewed.grand_total, idempotency_key=uuid.uuid4().hex
                ),
            )
        except KassaError as exc:
            raise FlowError(step, exc.reason or exc.code.name) from exc
        if result.order_status != _CONFIRMED_GRPC:
            raise FlowError("confirm", order_pb2.OrderStatus.Name(result.order_status))
        outcome.order_id = result.order_id
        return outcome


def rest_reason(status: int, body: bytes) -> str:
    """``HTTP 409 OUT_OF_STOCK``: the status and the ErrorInfo reason of a google.rpc.Status body."""
    reason = ""
    try:
        status_body = json.loads(body)
    except ValueError:
        status_body = None
    if isinstance(status_body, dict):
        for detail in status_body.get("details") or ():
            if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.ErrorInfo"):
                reason = str(detail.get("reason") or "")
                break
    return f"HTTP {status} {reason}".rstrip()


@dataclass(frozen=True)
class HttpExchange:
    """One HTTP request as the client saw it: ``seconds`` from sending it to its answer's headers."""

    path: str
    status: int
    seconds: float
    retry_after: str | None
    body: bytes


class RestCheckout:
    """Through the gateway on an aiohttp session (its base URL the gateway's), as a guest.

    ``timeout`` bounds each request as a whole, like the deadline of a gRPC call. ``on_exchange``, when given,
    is told of every exchange (the admission bench times refusals by it). aiohttp, not httpx: the load generators
    run on the cores the mesh runs on, and with httpx they spent three times the CPU per checkout (17.3 against
    5.7 ms in the README's measurements).
    """

    def __init__(
        self,
        client: aiohttp.ClientSession,
        *,
        timeout: float,
        on_exchange: Callable[[HttpExchange], None] | None = None,
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._on_exchange = on_exchange

    async def _call(
        self,
        outcome: FlowOutcome,
        step: str,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        try:
            async with asyncio.timeout(self._timeout):
                status, answer = await _timed(outcome, step, lambda: self._exchange(method, path, body, h))
        except TimeoutError as exc:
            raise FlowError(step, "TIMEOUT") from exc
        except aiohttp.ClientError as exc:
            raise FlowError(step, type(exc).__name__) from exc
        if status >= 400:
            raise FlowError(step, rest_reason(status, answer))
        try:
            data = json.loads(answer)
        except ValueError as exc:
            raise FlowError(step, f"HTTP {status} not JSON") from exc
        if not isinstance(data, dict):
            raise FlowError(step, f"HTTP {status} not a JSON object")
        return data

    async def _exchange(self, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, bytes]:
        started = time.perf_counter()
        async with self._client.request(method, path, json=body, headers=headers) as response:
            seconds = time.perf_counter() - started
            answer = await response.read()
        if self._on_exchange is not None:
            self._on_exchange(HttpExchange(path, response.status, seconds, response.headers.get("Retry-After"), answer))
        return response.status, answer

    async def run(self, skus: Sequence[str], outcome: FlowOutcome) -> FlowOutcome:
        guest = await self._call(outcome, "guest", "POST", "/v1/auth/guest", body={})
        token = str(guest.get("token", ""))
        cart = await self._call(outcome, "create_cart", "POST", "/v1/carts", token=token, body={"currencyCode": "USD"})
        cart_id = cart["cart"]["cartId"]
        for sku in skus:
            await self._call(
                outcome, "add_item", "POST", f"/v1/carts/{cart_id}/items", token=token, body={"sku": sku, "quantity": 1}
            )
        started = await self._call(
            outcome,
            "start",
            "POST",
            "/v1/checkout/start",
            token=token,
            body={"cartId": cart_id, "shipToCountryCode": "US"},
        )
        outcome.session_id = session_id = started["session"]["sessionId"]
        state = {
            "sessionId": session_id,
            "email": EMAIL,
            "shippingAddress": SHIP_TO,
            "shippingMethod": SHIPPING_METHOD,
            "paymentMethod": PAYMENT_METHOD,
        }
        await self._call(outcome, "update", "PUT", "/v1/checkout/state", token=token, body=state)
        previewed = await self._call(
            outcome, "preview", "GET", f"/v1/checkout/sessions/{session_id}/preview", token=token
        )
        confirmed = await self._call(
            outcome,
            "confirm",
            "POST",
            "/v1/checkout/confirm",
            token=token,
            body={"sessionId": session_id, "expectedGrandTotal": previewed["preview"]["grandTotal"]},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        status = str(confirmed.get("orderStatus", ""))
        if status != _CONFIRMED_REST:
            raise FlowError("confirm", status or "no orderStatus")
        outcome.order_id = str(confirmed.get("orderId", ""))
        return outcome
