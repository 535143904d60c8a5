"""The scripted demo: one order placed over REST exactly as a web client would place it.

Why REST and not gRPC: the demo is the smoke test of the public contract (DESIGN.md §2): the gateway's
routes, the canonical JSON mapping, the guest token, the Idempotency-Key header on confirm and the
``expected_grand_total`` guard against a price the customer never saw.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from kernel.money import Money

__all__ = ["DEMO_ITEMS", "DemoError", "describe_order", "format_money", "run_demo"]

# (sku, quantity): all three are stocked in the US warehouse by the seed.
DEMO_ITEMS: list[tuple[str, int]] = [("KB-001", 1), ("MS-001", 2), ("CB-001", 3)]

_SHIPPING_ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "350 Fifth Avenue",
    "line2": "Suite 2100",
    "city": "New York",
    "region": "NY",
    "postalCode": "10118",
    "countryCode": "US",
    "phone": "+1 212 555 0123",
}


_TOTALS = (
    ("subtotal", "subtotal"),
    ("discount", "discountTotal"),
    ("shipping", "shippingTotal"),
    ("tax", "taxTotal"),
    ("grand total", "grandTotal"),
)


class DemoError(RuntimeError):
    """A step of the demo failed; carries the HTTP status and the error body the gateway returned."""

    def __init__(self, step: str, status: int, body: Any) -> None:
        self.step = step
        self.status = status
        self.body = body
        super().__init__(f"{step} failed with HTTP {status}: {json.dumps(body, indent=2)}")


def format_money(money: Mapping[str, Any] | None) -> str:
    """``{"currencyCode": "USD", "amountMinor": "12345"}`` → ``123.45 USD`` (int64 is a JSON string)."""
    if not money:
        return "-"
    return str(Money(str(money.get("currencyCode", "")), int(money.get("amountMinor", 0))))


async def _step(
    client: httpx.AsyncClient,
    step: str,
    method: str,
    url: str,
    *,
    log: Callable[[str], object],
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One REST call; any failure (transport, non-2xx, not a JSON object) becomes a DemoError."""
    log(f"-> {step}: {method} {url}")
    try:
        response = await client.request(method, url, json=json_body, headers=headers)
    except httpx.HTTPError as exc:
        raise DemoError(step, 0, {"error": f"{type(exc).__name__}: {exc}"}) from exc
    try:
        body = response.json() if response.content else {}
    except ValueError:
        body = {"raw": response.text}
    if not response.is_success or not isinstance(body, dict):
        raise DemoError(step, response.status_code, body)
    return body


def _field(body: Mapping[str, Any], step: str, *path: str) -> Any:
    """``body[path[0]][path[1]]...``, or a DemoError naming what the gateway left out."""
    value: Any = body
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            raise DemoError(step, 200, {"error": f"response has no {'.'.join(path)}", "body": body})
        value = value[key]
    return value


def _totals(totals: Mapping[str, Any]) -> list[str]:
    return [f"  {label:<12}{format_money(totals.get(key)):>16}" for label, key in _TOTALS]


async def run_demo(
    gateway_url: str,
    *,
    log: Callable[[str], object] = print,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, Any]:
    """Place one order as a guest and return it (the ``order`` of GET /v1/orders/{id}).

    Raises :class:`DemoError` at the first step the gateway refuses. ``transport`` lets tests stand
    in for the gateway.
    """
    async with httpx.AsyncClient(
        base_url=gateway_url.rstrip("/"), timeout=30.0, trust_env=False, transport=transport
    ) as client:
        guest = await _step(client, "guest token", "POST", "/v1/auth/guest", log=log, json_body={})
        client.headers["Authorization"] = f"Bearer {_field(guest, 'guest token', 'token')}"
        log(f"   guest customer {guest.get('customerId', '?')}")

        created = await _step(client, "create cart", "POST", "/v1/carts", log=log, json_body={"currencyCode": "USD"})
        cart_id = _field(created, "create cart", "cart", "cartId")
        log(f"   cart {cart_id}")
        cart: Mapping[str, Any] = created["cart"]
        for sku, quantity in DEMO_ITEMS:
            step = f"add {quantity} x {sku}"
            added = await _step(
                client,
                step,
                "POST",
                f"/v1/carts/{cart_id}/items",
                log=log,
                json_body={"sku": sku, "quantity": quantity},
            )
            cart = _field(added, step, "cart")
        log(f"   cart subtotal {format_money(cart.get('subtotal'))}")

        started = await _step(
            client,
            "start checkout",
            "POST",
            "/v1/checkout/start",
            log=log,
            json_body={"cartId": cart_id, "shipToCountryCode": _SHIPPING_ADDRESS["countryCode"]},
        )
        session_id = _field(started, "start checkout", "session", "sessionId")
        log(f"   session {session_id}")
        for change in started.get("priceChanges", []):
            log(
                f"   price changed: {change.get('sku')} {format_money(change.get('oldPrice'))}"
                f" -> {format_money(change.get('newPrice'))}"
            )

        await _step(
            client,
            "update checkout state",
            "PUT",
            "/v1/checkout/state",
            log=log,
            json_body={
                "sessionId": session_id,
                "email": "ada@example.com",
                "shippingAddress": _SHIPPING_ADDRESS,
                "shippingMethod": "standard",
                "paymentMethod": "tok_visa",
                "promotionCodes": ["WELCOME10"],
            },
        )

        previewed = await _step(client, "preview", "GET", f"/v1/checkout/sessions/{session_id}/preview", log=log)
        grand_total = _field(previewed, "preview", "preview", "grandTotal")
        preview: Mapping[str, Any] = previewed["preview"]
        for line in _totals(preview):
            log(line)
        for rejected in preview.get("rejectedCodes", []):
            log(f"   code {rejected.get('code')} rejected: {rejected.get('reason')} {rejected.get('message', '')}")

        confirmed = await _step(
            client,
            "confirm",
            "POST",
            "/v1/checkout/confirm",
            log=log,
            # The total the customer was shown: the saga refuses with PRICE_CHANGED if it moved since.
            json_body={"sessionId": session_id, "expectedGrandTotal": grand_total},
            headers={"Idempotency-Key": f"demo-{uuid.uuid4().hex}"},
        )
        order_id = _field(confirmed, "confirm", "orderId")
        log(
            f"   order {order_id}: {confirmed.get('orderStatus')}, payment {confirmed.get('paymentStatus')}, "
            f"charged {format_money(confirmed.get('grandTotal'))}"
        )
        if confirmed.get("nextActionUrl"):
            log(f"   customer action needed: {confirmed['nextActionUrl']}")

        fetched = await _step(client, "get order", "GET", f"/v1/orders/{order_id}", log=log)
        order: dict[str, Any] = _field(fetched, "get order", "order")

    for line in describe_order(order):
        log(line)
    return order


def describe_order(order: Mapping[str, Any]) -> list[str]:
    """The order as readable lines: status, each line's price snapshot, and the totals."""
    lines = [f"Order {order.get('orderId')}  status {order.get('status')}  ({order.get('email', '')})"]
    for item in order.get("lines", []):
        lines.append(
            f"  {item.get('sku', ''):<8} {item.get('name', ''):<36} {item.get('quantity', 0):>3} x "
            f"{format_money(item.get('unitPrice')):>12} = {format_money(item.get('lineTotal')):>12}"
            f"  [{item.get('warehouseId', '')}]"
        )
    for discount in order.get("discounts", []):
        lines.append(f"  discount {discount.get('code')}: -{format_money(discount.get('amount'))}")
    return lines + _totals(order.get("totals", {}))
