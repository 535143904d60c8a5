"""Clients for the end-to-end tests: REST through the gateway and gRPC straight to the services."""

from __future__ import annotations

import asyncio
import json
import time
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

# Where a variant mesh started by the ``start_mesh`` fixture with ``backup=`` has its second sandbox (MeshHandle.env).
BACKUP_SANDBOX_URL = "KASSA_E2E_BACKUP_SANDBOX_URL"


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
    """Products with unique skus, priced in USD and EUR, stocked in the seeded US warehouse.

    By its id: other tests may add warehouses (in the US too) to the shared mesh.
    """
    admin = Rest(mesh.gateway_url, mesh.admin_token)
    try:
        warehouses = (await admin.call("GET", "/v1/admin/warehouses"))["warehouses"]
        wh = next(w["warehouseId"] for w in warehouses if w["warehouseId"] == "wh-us-east")
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


async def ready_session(
    client: Rest,
    cart_id: str,
    *,
    token: str = "tok_visa",
    codes: list[str] | None = None,
    email: str = "ada@example.com",
) -> dict:
    started = await client.call("POST", "/v1/checkout/start", {"cartId": cart_id, "shipToCountryCode": "US"})
    session_id = started["session"]["sessionId"]
    state = {
        "sessionId": session_id,
        "email": email,
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


# -- payments: the sandbox provider's ledger, webhooks, polling ---------------------------------------


async def eventually(probe: Any, *, within: float = 30.0, interval: float = 0.25, what: str = "a condition") -> Any:
    """Call the async ``probe`` until it returns something truthy; that value, or AssertionError at the deadline.

    A bounded wait for work the mesh does in the background (webhooks, outbox consumers, workers);
    the assertion is on the state reached, never on how long it took.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last: Any = None
    while True:
        last = await probe()
        if last:
            return last
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not happen within {within:.0f}s; last seen: {last!r}")
        await asyncio.sleep(interval)


class Sandbox:
    """The sandbox payment provider's own HTTP API: its ledger and its 3-D Secure pages."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=30, trust_env=False)

    async def close(self) -> None:
        await self.http.aclose()

    async def intent(self, intent_id: str) -> dict[str, Any]:
        resp = await self.http.get(f"/v1/payment_intents/{intent_id}")
        resp.raise_for_status()
        return dict(resp.json())

    async def all_intents(self) -> list[dict[str, Any]]:
        """Every intent in the ledger, newest first, following the pagination cursor."""
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100}
            if cursor:
                params["starting_after"] = cursor
            resp = await self.http.get("/v1/payment_intents", params=params)
            resp.raise_for_status()
            page = resp.json()
            out.extend(page["data"])
            if not page["has_more"] or not page["data"]:
                return out
            cursor = page["data"][-1]["id"]

    async def intents_of_session(self, session_id: str) -> list[dict[str, Any]]:
        return [i for i in await self.all_intents() if i.get("metadata", {}).get("kassa_session_id") == session_id]

    async def complete_3ds(self, intent_id: str) -> dict[str, Any]:
        resp = await self.http.post(f"/v1/3ds/{intent_id}/complete")
        resp.raise_for_status()
        return dict(resp.json())

    async def fail_3ds(self, intent_id: str) -> dict[str, Any]:
        resp = await self.http.post(f"/v1/3ds/{intent_id}/fail")
        resp.raise_for_status()
        return dict(resp.json())


def intent_id_of(next_action_url: str) -> str:
    """The sandbox intent id in a 3-D Secure ``nextActionUrl`` (``…/v1/3ds/<intent id>``)."""
    assert "/v1/3ds/" in next_action_url, next_action_url
    return next_action_url.rsplit("/v1/3ds/", 1)[1].split("/", 1)[0].split("?", 1)[0]


async def post_webhook(
    mesh: Any, event: dict[str, Any], *, secret: str | None = None, signature: str | None = None
) -> httpx.Response:
    """POST a provider event to the gateway's webhook route, signed as the sandbox signs (or as given)."""
    from infra.webhook_signature import SIGNATURE_HEADER, sign

    body = json.dumps(event, separators=(",", ":")).encode()
    header = signature if signature is not None else sign(secret or mesh.env["KASSA_WEBHOOK_SECRET"], body)
    async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=30, trust_env=False) as http:
        return await http.post(
            "/v1/payments/webhooks/sandbox",
            content=body,
            headers={SIGNATURE_HEADER: header, "Content-Type": "application/json"},
        )


def provider_event(event_type: str, intent: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    """A provider event shaped as the sandbox sends it."""
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": intent},
    }


async def payment_of(mesh: Any, payment_id: str) -> Any:
    """The payment as the payment service holds it (GetPayment over gRPC, as an admin)."""
    from kassa.payment.v1 import payment_service_pb2 as pay_pb
    from kassa.payment.v1 import payment_service_pb2_grpc as pay_grpc

    async with grpc.aio.insecure_channel(mesh.addr("payment")) as ch:
        resp = await pay_grpc.PaymentServiceStub(ch).GetPayment(
            pay_pb.GetPaymentRequest(payment_id=payment_id),
            metadata=(("authorization", f"Bearer {mesh.admin_token}"),),
            timeout=10,
        )
    return resp.payment


async def make_promotion(mesh: Any, **fields: Any) -> str:
    """A promotion created through the admin route; ``fields`` are REST (camelCase) Promotion fields."""
    code = f"E2E{uuid.uuid4().hex[:8].upper()}"
    admin = Rest(mesh.gateway_url, mesh.admin_token)
    try:
        await admin.call(
            "POST",
            "/v1/admin/promotions",
            {"promotion": {"code": code, "name": f"promotion {code}", "currencyCode": "USD", **fields}},
        )
    finally:
        await admin.close()
    return code


async def cart_reaches(client: Rest, cart_id: str, status: str, within: float = 30.0) -> dict[str, Any]:
    """The cart once it is in ``status`` (a failed checkout frees its cart just after it fails the order)."""

    async def probe() -> dict[str, Any] | None:
        cart = (await client.call("GET", f"/v1/carts/{cart_id}"))["cart"]
        return dict(cart) if cart["status"] == status else None

    return dict(await eventually(probe, within=within, what=f"cart {cart_id} reaching {status}"))
