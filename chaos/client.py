"""One API, two transports: the calls a customer makes, as JSON dicts, over gRPC or over REST.

Both sides speak the proto3 canonical JSON mapping (lowerCamelCase, enums by name), so a customer's
behaviour (``chaos.customer``) is written once: over REST the dict is the request body, over gRPC it is
parsed into the request message and the answer turned back into a dict. A refusal or a failure is a
:class:`CallError` whose ``reason`` is the ErrorInfo reason (``OUT_OF_STOCK``) or, without one, the
transport's own word (``UNAVAILABLE``, ``HTTP 503``, ``TIMEOUT``), and ``transient`` says whether a real
client would try again: a timeout, a 5xx, UNAVAILABLE, or a refusal to take more work right now.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import httpx
from google.protobuf import json_format
from google.protobuf.message import Message

from bench.flow import grpc_reason, rest_reason
from infra.auth import mint_token
from kassa.checkout.v1 import cart_service_pb2 as cart_pb
from kassa.checkout.v1 import cart_service_pb2_grpc as cart_grpc
from kassa.checkout.v1 import checkout_service_pb2 as co_pb
from kassa.checkout.v1 import checkout_service_pb2_grpc as co_grpc
from kassa.order.v1 import order_service_pb2 as order_pb
from kassa.order.v1 import order_service_pb2_grpc as order_grpc

__all__ = ["TRANSIENT_GRPC", "Api", "CallError", "GrpcApi", "RestApi", "Transports"]

TRANSIENT_GRPC = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
# Refusals that say "not now" rather than "no": worth the same request again after a pause.
TRANSIENT_REASONS = frozenset({"CHECKOUT_IN_PROGRESS", "RATE_LIMITED", "PAYMENT_PROVIDER_UNAVAILABLE"})


class CallError(Exception):
    def __init__(self, rpc: str, reason: str, *, transient: bool) -> None:
        super().__init__(f"{rpc}: {reason}")
        self.rpc = rpc
        self.reason = reason
        self.transient = transient


class Api(Protocol):
    transport: str

    async def login(self) -> None: ...

    async def call(self, rpc: str, body: Mapping[str, Any], *, key: str | None = None) -> dict[str, Any]: ...


# rpc -> (HTTP method, path template, the fields the path takes)
_ROUTES: dict[str, tuple[str, str]] = {
    "CreateCart": ("POST", "/v1/carts"),
    "AddCartItem": ("POST", "/v1/carts/{cartId}/items"),
    "StartCheckout": ("POST", "/v1/checkout/start"),
    "UpdateCheckoutState": ("PUT", "/v1/checkout/state"),
    "PreviewOrder": ("GET", "/v1/checkout/sessions/{sessionId}/preview"),
    "ConfirmCheckout": ("POST", "/v1/checkout/confirm"),
    "GetCheckoutSession": ("GET", "/v1/checkout/sessions/{sessionId}"),
    "GetOrder": ("GET", "/v1/orders/{orderId}"),
    "CancelOrder": ("POST", "/v1/orders/{orderId}:cancel"),
}


class RestApi:
    """Through the gateway, as a guest with a token from ``POST /v1/auth/guest``."""

    transport = "rest"

    def __init__(self, client: httpx.AsyncClient, *, timeout: float) -> None:
        self._client = client
        self._timeout = timeout
        self._token = ""

    async def login(self) -> None:
        self._token = str((await self._send("Guest", "POST", "/v1/auth/guest", {}, {})).get("token", ""))

    async def call(self, rpc: str, body: Mapping[str, Any], *, key: str | None = None) -> dict[str, Any]:
        method, template = _ROUTES[rpc]
        fields = dict(body)
        path = template
        for name in list(fields):
            if "{" + name + "}" in path:
                path = path.replace("{" + name + "}", str(fields.pop(name)))
        headers = {"Authorization": f"Bearer {self._token}"}
        if key:
            headers["Idempotency-Key"] = key
        return await self._send(rpc, method, path, None if method == "GET" else fields, headers)

    async def _send(
        self, rpc: str, method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]
    ) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._client.request(method, path, json=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise CallError(rpc, "TIMEOUT", transient=True) from exc
        except httpx.HTTPError as exc:
            raise CallError(rpc, type(exc).__name__, transient=True) from exc
        if response.status_code >= 400:
            reason = rest_reason(response.status_code, response.content)
            info = reason.split(" ", 2)[2] if reason.count(" ") >= 2 else ""
            transient = response.status_code >= 500 or response.status_code == 429 or info in TRANSIENT_REASONS
            raise CallError(rpc, info or f"HTTP {response.status_code}", transient=transient)
        try:
            data = response.json()
        except ValueError as exc:
            raise CallError(rpc, f"HTTP {response.status_code} not JSON", transient=True) from exc
        return data if isinstance(data, dict) else {}


class GrpcApi:
    """Straight to checkout (and order) over shared channels, as a customer with a minted JWT."""

    transport = "grpc"

    def __init__(self, checkout: grpc.aio.Channel, order: grpc.aio.Channel, jwt_secret: str, *, timeout: float) -> None:
        carts, sessions, orders = (
            cart_grpc.CartServiceStub(checkout),
            co_grpc.CheckoutServiceStub(checkout),
            order_grpc.OrderServiceStub(order),
        )
        self._rpcs: dict[str, tuple[Callable[..., Any], type[Message]]] = {
            "CreateCart": (carts.CreateCart, cart_pb.CreateCartRequest),
            "AddCartItem": (carts.AddCartItem, cart_pb.AddCartItemRequest),
            "StartCheckout": (sessions.StartCheckout, co_pb.StartCheckoutRequest),
            "UpdateCheckoutState": (sessions.UpdateCheckoutState, co_pb.UpdateCheckoutStateRequest),
            "PreviewOrder": (sessions.PreviewOrder, co_pb.PreviewOrderRequest),
            "ConfirmCheckout": (sessions.ConfirmCheckout, co_pb.ConfirmCheckoutRequest),
            "GetCheckoutSession": (sessions.GetCheckoutSession, co_pb.GetCheckoutSessionRequest),
            "GetOrder": (orders.GetOrder, order_pb.GetOrderRequest),
            "CancelOrder": (orders.CancelOrder, order_pb.CancelOrderRequest),
        }
        self._secret = jwt_secret
        self._timeout = timeout
        self._md: tuple[tuple[str, str], ...] = ()

    async def login(self) -> None:
        self._md = (("authorization", f"Bearer {mint_token(self._secret, f'chaos-{uuid.uuid4().hex[:12]}')}"),)

    async def call(self, rpc: str, body: Mapping[str, Any], *, key: str | None = None) -> dict[str, Any]:
        method, request_type = self._rpcs[rpc]
        fields = dict(body)
        if key:
            fields["idempotencyKey"] = key
        request = json_format.ParseDict(fields, request_type())
        try:
            reply = await method(request, metadata=self._md, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            reason = grpc_reason(exc)
            transient = exc.code() in TRANSIENT_GRPC or reason in TRANSIENT_REASONS
            raise CallError(rpc, reason, transient=transient) from exc
        return json_format.MessageToDict(reply)


@dataclass
class Transports:
    """The shared channels and HTTP client the customers of a run use; closed together."""

    checkout: grpc.aio.Channel
    order: grpc.aio.Channel
    http: httpx.AsyncClient
    jwt_secret: str
    timeout: float

    def api(self, transport: str) -> Api:
        if transport == "grpc":
            return GrpcApi(self.checkout, self.order, self.jwt_secret, timeout=self.timeout)
        return RestApi(self.http, timeout=self.timeout)

    async def aclose(self) -> None:
        await self.checkout.close()
        await self.order.close()
        await self.http.aclose()
