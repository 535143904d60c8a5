"""Clients for the end-to-end tests: REST through the gateway and gRPC straight to the services."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import nats
from google.rpc import error_details_pb2
from nats.js.api import ConsumerConfig, DeliverPolicy

from infra.grpc_errors import error_info
from kassa.warehouse.v1 import inventory_service_pb2 as inv_pb
from kassa.warehouse.v1 import inventory_service_pb2_grpc as inv_grpc


@dataclass
class RestError(Exception):
    status: int
    body: dict[str, Any]

    @property
    def reason(self) -> str:
        for d in self.body.get("details", []):
            if d.get("@type", "").endswith("google.rpc.ErrorInfo"):
                return str(d.get("reason"))
        return ""

    @property
    def metadata(self) -> dict[str, str]:
        for d in self.body.get("details", []):
            if d.get("@type", "").endswith("google.rpc.ErrorInfo"):
                return dict(d.get("metadata", {}))
        return {}


class Rest:
    """A web client of the gateway, holding one customer's token."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=30)
        self.token = token

    async def close(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, json: Any = None, headers: dict[str, str] | None = None) -> Any:
        h = dict(headers or {})
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        resp = await self.http.request(method, path, json=json, headers=h)
        body = resp.json() if resp.content else {}
        if resp.status_code >= 400:
            raise RestError(resp.status_code, body)
        return body

    async def guest(self) -> str:
        body = await self.call("POST", "/v1/auth/guest")
        self.token = body["token"]
        return str(body["customerId"])


def grpc_reason(err: grpc.aio.AioRpcError) -> tuple[str, dict[str, str]]:
    info: error_details_pb2.ErrorInfo | None = error_info(err)
    assert info is not None, f"no ErrorInfo in {err.code()} {err.details()}"
    assert info.domain == "kassa"
    return info.reason, dict(info.metadata)


def sku(prefix: str = "E2E") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


US_ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "1 Main Street",
    "city": "Newark",
    "region": "NJ",
    "postalCode": "07102",
    "countryCode": "US",
    "phone": "+1 555 0100",
}


async def make_catalog(mesh: Any, *, n: int = 3, on_hand: int = 20, price: int = 1999) -> list[str]:
    """Products with unique skus, priced in USD and EUR, stocked in the first seeded warehouse."""
    admin = Rest(mesh.gateway_url, mesh.admin_token)
    try:
        warehouses = (await admin.call("GET", "/v1/admin/warehouses"))["warehouses"]
        wh = next(w["warehouseId"] for w in warehouses if w["address"]["countryCode"] == "US")
        skus = [sku() for _ in range(n)]
        products = [
            {
                "sku": s,
                "name": f"Test product {s}",
                "category": "test",
                "brand": "Kassa",
                "weightGrams": "400",
                "taxClass": "standard",
                "prices": [
                    {"currencyCode": "USD", "amountMinor": str(price + 100 * i)},
                    {"currencyCode": "EUR", "amountMinor": str(price + 100 * i - 50)},
                ],
            }
            for i, s in enumerate(skus)
        ]
        await admin.call("POST", "/v1/admin/products", {"products": products})
        await admin.call(
            "PUT", "/v1/admin/stock", {"items": [{"sku": s, "warehouseId": wh, "onHand": str(on_hand)} for s in skus]}
        )
        return skus
    finally:
        await admin.close()


async def make_coupon(mesh: Any, *, usage_limit: int = 100) -> str:
    code = f"E2E{uuid.uuid4().hex[:8].upper()}"
    admin = Rest(mesh.gateway_url, mesh.admin_token)
    try:
        await admin.call(
            "POST",
            "/v1/admin/promotions",
            {
                "promotion": {
                    "code": code,
                    "name": "ten percent off",
                    "type": "PROMOTION_TYPE_PERCENTAGE",
                    "percentOff": 10,
                    "usageLimit": str(usage_limit),
                    "currencyCode": "USD",
                    "combinable": True,
                }
            },
        )
    finally:
        await admin.close()
    return code


async def stock_of(mesh: Any, skus: list[str]) -> dict[str, tuple[int, int]]:
    """(on_hand, reserved) per sku, summed over warehouses, read straight from the warehouse service."""
    async with grpc.aio.insecure_channel(mesh.addr("warehouse")) as ch:
        resp = await inv_grpc.InventoryServiceStub(ch).CheckStock(
            inv_pb.CheckStockRequest(items=[inv_pb.StockQuery(sku=s, quantity=1) for s in skus]),
            metadata=(("authorization", f"Bearer {mesh.admin_token}"),),
            timeout=10,
        )
    out = {s: (0, 0) for s in skus}
    for level in resp.levels:
        on_hand, reserved = out[level.sku]
        out[level.sku] = (on_hand + level.on_hand, reserved + level.reserved)
    return out


async def fill_cart(client: Rest, skus: list[str], quantities: list[int]) -> str:
    cart = (await client.call("POST", "/v1/carts", {"currencyCode": "USD"}))["cart"]
    for s, q in zip(skus, quantities, strict=True):
        cart = (await client.call("POST", f"/v1/carts/{cart['cartId']}/items", {"sku": s, "quantity": q}))["cart"]
    assert [i["sku"] for i in cart["items"]] == sorted(skus) or {i["sku"] for i in cart["items"]} == set(skus)
    return str(cart["cartId"])


async def ready_session(client: Rest, cart_id: str, *, token: str = "tok_visa", codes: list[str] | None = None) -> dict:
    started = await client.call("POST", "/v1/checkout/start", {"cartId": cart_id, "shipToCountryCode": "US"})
    session_id = started["session"]["sessionId"]
    state = {
        "sessionId": session_id,
        "email": "ada@example.com",
        "shippingAddress": US_ADDRESS,
        "shippingMethod": "standard",
        "paymentMethod": token,
        "promotionCodes": codes or [],
    }
    await client.call("PUT", "/v1/checkout/state", state)
    preview = (await client.call("GET", f"/v1/checkout/sessions/{session_id}/preview"))["preview"]
    return {"session_id": session_id, "preview": preview, "started": started}


async def confirm(client: Rest, session_id: str, total: dict, key: str | None = None) -> dict:
    return await client.call(
        "POST",
        "/v1/checkout/confirm",
        {"sessionId": session_id, "expectedGrandTotal": total},
        headers={"Idempotency-Key": key or uuid.uuid4().hex},
    )


async def wait_for_event(nats_url: str, subject: str, match: str, wait_seconds: float = 20.0) -> dict:
    """The first event on ``subject`` whose aggregate is ``match``, read from JetStream (bounded wait)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(subject, durable=None, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while asyncio.get_running_loop().time() < deadline:
            try:
                msgs = await sub.fetch(50, timeout=1)
            except nats.errors.TimeoutError:
                continue
            for m in msgs:
                await m.ack()
                try:
                    event = json.loads(m.data)
                except ValueError:
                    continue  # the stack is shared with suites that publish malformed events on purpose
                if event.get("aggregate_id") == match:
                    assert m.headers and m.headers.get("Nats-Msg-Id") == event["event_id"]
                    return event
        raise AssertionError(f"no {subject} event for {match} within {wait_seconds}s")
    finally:
        await nc.close()
