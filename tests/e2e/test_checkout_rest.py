"""The happy path and the sad paths that matter, over REST through the gateway (issue #2, items 5 and 6)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import grpc
import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy
from support import US_ADDRESS, Rest, RestError, sku

from kassa.warehouse.v1 import inventory_service_pb2 as inv_pb
from kassa.warehouse.v1 import inventory_service_pb2_grpc as inv_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


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
    started = await client.call("POST", "/v1/checkout/start", {"cartId": cart_id})
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
                event = json.loads(m.data)
                if event.get("aggregate_id") == match:
                    assert m.headers and m.headers.get("Nats-Msg-Id") == event["event_id"]
                    return event
        raise AssertionError(f"no {subject} event for {match} within {wait_seconds}s")
    finally:
        await nc.close()


async def test_happy_path_over_rest(mesh: Any) -> None:
    skus = await make_catalog(mesh)
    coupon = await make_coupon(mesh)
    before = await stock_of(mesh, skus)
    client = Rest(mesh.gateway_url)
    try:
        customer_id = await client.guest()
        cart_id = await fill_cart(client, skus, [1, 2, 3])
        s = await ready_session(client, cart_id, codes=[coupon])
        assert s["started"].get("priceChanges", []) == []
        session = s["started"]["session"]
        assert session["status"] == "SESSION_STATUS_OPEN"
        assert {line["sku"] for line in session["lines"]} == set(skus)
        assert all(line["warehouseId"] for line in session["lines"])
        reserved = await stock_of(mesh, skus)
        assert [reserved[x][1] - before[x][1] for x in skus] == [1, 2, 3]

        preview = s["preview"]
        subtotal = int(preview["subtotal"]["amountMinor"])
        assert subtotal == 1999 * 1 + 2099 * 2 + 2199 * 3
        assert int(preview["discountTotal"]["amountMinor"]) == (subtotal * 1000 + 5000) // 10000
        assert int(preview["shippingTotal"]["amountMinor"]) > 0
        grand = int(preview["grandTotal"]["amountMinor"])
        assert grand == (
            subtotal
            - int(preview["discountTotal"]["amountMinor"])
            + int(preview["shippingTotal"]["amountMinor"])
            + int(preview.get("taxTotal", {}).get("amountMinor", 0))
        )

        key = uuid.uuid4().hex
        result = await confirm(client, s["session_id"], preview["grandTotal"], key)
        assert result["orderStatus"] == "ORDER_STATUS_CONFIRMED"
        assert result["paymentStatus"] == "PAYMENT_STATUS_CAPTURED"
        assert int(result["grandTotal"]["amountMinor"]) == grand

        order = (await client.call("GET", f"/v1/orders/{result['orderId']}"))["order"]
        assert order["status"] == "ORDER_STATUS_CONFIRMED"
        assert order["customerId"] == customer_id
        assert {
            (line["sku"], int(line["quantity"]), int(line["unitPrice"]["amountMinor"])) for line in order["lines"]
        } == {
            (skus[0], 1, 1999),
            (skus[1], 2, 2099),
            (skus[2], 3, 2199),
        }
        assert int(order["totals"]["grandTotal"]["amountMinor"]) == grand

        # Reservations confirmed: stock deducted, nothing left reserved.
        after = await stock_of(mesh, skus)
        assert [before[x][0] - after[x][0] for x in skus] == [1, 2, 3]
        assert [after[x][1] - before[x][1] for x in skus] == [0, 0, 0]

        cart = (await client.call("GET", f"/v1/carts/{cart_id}"))["cart"]
        assert cart["status"] == "CART_STATUS_CONVERTED"

        timeline = (await client.call("GET", f"/v1/orders/{result['orderId']}/timeline"))["events"]
        assert [e["status"] for e in timeline][-1] == "ORDER_STATUS_CONFIRMED"

        event = await wait_for_event(mesh.env["KASSA_NATS_URL"], "kassa.order.OrderConfirmed", result["orderId"])
        assert event["event_type"] == "OrderConfirmed"
    finally:
        await client.close()


async def test_repeated_confirm_returns_the_same_order(mesh: Any) -> None:
    skus = await make_catalog(mesh)
    client = Rest(mesh.gateway_url)
    try:
        await client.guest()
        cart_id = await fill_cart(client, skus, [1, 1, 1])
        s = await ready_session(client, cart_id)
        key = uuid.uuid4().hex
        first = await confirm(client, s["session_id"], s["preview"]["grandTotal"], key)
        again = await confirm(client, s["session_id"], s["preview"]["grandTotal"], key)
        assert again["orderId"] == first["orderId"]
        assert again["paymentStatus"] == first["paymentStatus"]
        orders = (await client.call("GET", "/v1/orders"))["orders"]
        assert [o["orderId"] for o in orders] == [first["orderId"]]
        # A double click racing with itself still yields one order.
        s2 = await ready_session(client, await fill_cart(client, skus, [1, 1, 1]))
        key2 = uuid.uuid4().hex
        results = await asyncio.gather(
            *(confirm(client, s2["session_id"], s2["preview"]["grandTotal"], key2) for _ in range(2)),
            return_exceptions=True,
        )
        ok = [r for r in results if isinstance(r, dict)]
        errs = [r for r in results if isinstance(r, RestError)]
        assert ok, results
        assert all(e.reason == "CHECKOUT_IN_PROGRESS" for e in errs), [(e.status, e.body) for e in errs]
        assert len({r["orderId"] for r in ok}) == 1
        orders = (await client.call("GET", "/v1/orders"))["orders"]
        assert len(orders) == 2
    finally:
        await client.close()


async def test_bad_cart_input_names_the_field(mesh: Any) -> None:
    skus = await make_catalog(mesh, n=1)
    client = Rest(mesh.gateway_url)
    try:
        await client.guest()
        cart_id = (await client.call("POST", "/v1/carts", {"currencyCode": "USD"}))["cart"]["cartId"]
        cases = [
            ({"sku": "NO-SUCH-SKU", "quantity": 1}, "sku"),
            ({"sku": skus[0], "quantity": 0}, "quantity"),
            ({"sku": skus[0], "quantity": -3}, "quantity"),
            ({"sku": skus[0], "quantity": 1_000_000_000}, "quantity"),
        ]
        for body, field in cases:
            with pytest.raises(RestError) as exc:
                await client.call("POST", f"/v1/carts/{cart_id}/items", body)
            assert exc.value.status == 400
            assert exc.value.body["code"] == 3
            assert exc.value.reason == "INVALID_ARGUMENT"
            assert exc.value.metadata.get("field") == field
        cart = (await client.call("GET", f"/v1/carts/{cart_id}"))["cart"]
        assert cart.get("items", []) == []
    finally:
        await client.close()


async def test_out_of_stock_reserves_nothing(mesh: Any) -> None:
    skus = await make_catalog(mesh, n=3, on_hand=2)
    client = Rest(mesh.gateway_url)
    try:
        await client.guest()
        cart_id = await fill_cart(client, skus, [1, 5, 1])
        with pytest.raises(RestError) as exc:
            await client.call("POST", "/v1/checkout/start", {"cartId": cart_id})
        assert exc.value.reason == "OUT_OF_STOCK"
        assert exc.value.body["code"] == 9  # FAILED_PRECONDITION
        assert skus[1] in exc.value.metadata.get("skus", "")
        stock = await stock_of(mesh, skus)
        assert [stock[x][1] for x in skus] == [0, 0, 0]
        cart = (await client.call("GET", f"/v1/carts/{cart_id}"))["cart"]
        assert cart["status"] == "CART_STATUS_ACTIVE"
    finally:
        await client.close()


async def test_declined_card_releases_everything_and_the_cart_stays_usable(mesh: Any) -> None:
    skus = await make_catalog(mesh)
    coupon = await make_coupon(mesh, usage_limit=1)
    client = Rest(mesh.gateway_url)
    try:
        await client.guest()
        cart_id = await fill_cart(client, skus, [1, 1, 2])
        s = await ready_session(client, cart_id, token="tok_chargeDeclined", codes=[coupon])
        with pytest.raises(RestError) as exc:
            await confirm(client, s["session_id"], s["preview"]["grandTotal"])
        assert exc.value.reason == "PAYMENT_DECLINED"
        assert exc.value.status == 400
        stock = await stock_of(mesh, skus)
        assert [stock[x] for x in skus] == [(20, 0), (20, 0), (20, 0)]
        cart = (await client.call("GET", f"/v1/carts/{cart_id}"))["cart"]
        assert cart["status"] == "CART_STATUS_ACTIVE"
        # The coupon (usage limit 1) was released: the same cart checks out with it and a good card.
        s2 = await ready_session(client, cart_id, codes=[coupon])
        assert [d["code"] for d in s2["preview"].get("discounts", [])] == [coupon]
        result = await confirm(client, s2["session_id"], s2["preview"]["grandTotal"])
        assert result["orderStatus"] == "ORDER_STATUS_CONFIRMED"
        assert (await client.call("GET", "/v1/orders"))["orders"][0]["orderId"] == result["orderId"]
    finally:
        await client.close()


async def test_another_customer_cannot_touch_my_cart_session_or_order(mesh: Any) -> None:
    skus = await make_catalog(mesh, n=1)
    alice, mallory = Rest(mesh.gateway_url), Rest(mesh.gateway_url)
    try:
        await alice.guest()
        await mallory.guest()
        cart_id = await fill_cart(alice, skus, [1])
        s = await ready_session(alice, cart_id)
        attempts = [
            ("GET", f"/v1/carts/{cart_id}", None),
            ("POST", f"/v1/carts/{cart_id}/items", {"sku": skus[0], "quantity": 1}),
            ("GET", f"/v1/checkout/sessions/{s['session_id']}", None),
            ("PUT", "/v1/checkout/state", {"sessionId": s["session_id"], "paymentMethod": "tok_visa"}),
        ]
        for method, path, body in attempts:
            with pytest.raises(RestError) as exc:
                await mallory.call(method, path, body)
            assert exc.value.status in (403, 404), (path, exc.value.body)
        with pytest.raises(RestError) as exc:
            await confirm(mallory, s["session_id"], s["preview"]["grandTotal"])
        assert exc.value.status in (403, 404)
        result = await confirm(alice, s["session_id"], s["preview"]["grandTotal"])
        for path in (f"/v1/orders/{result['orderId']}", f"/v1/orders/{result['orderId']}/timeline"):
            with pytest.raises(RestError) as exc:
                await mallory.call("GET", path)
            assert exc.value.status in (403, 404)
        assert (await mallory.call("GET", "/v1/orders")).get("orders", []) == []
        # Without a token at all: 401.
        anonymous = Rest(mesh.gateway_url)
        with pytest.raises(RestError) as exc:
            await anonymous.call("GET", f"/v1/orders/{result['orderId']}")
        assert exc.value.status == 401
        await anonymous.close()
    finally:
        await alice.close()
        await mallory.close()
