"""The happy path and the sad paths that matter, over REST through the gateway (issue #2, items 5 and 6)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from e2e.support import (
    Rest,
    RestError,
    confirm,
    fill_cart,
    make_catalog,
    make_coupon,
    make_promotion,
    ready_session,
    stock_of,
    wait_for_event,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


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
        # Stocked only in the US warehouse; reserved there, with its origin for the shipping quote.
        assert {line["warehouseId"] for line in session["lines"]} == {"wh-us-east"}
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
        assert exc.value.reason == "PAYMENT_DECLINED", exc.value.body
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


async def test_a_once_per_customer_coupon_is_once_per_email_even_for_a_fresh_guest(mesh: Any) -> None:
    """A guest token is a new customer id each time; the order's email is what makes it the same customer."""
    skus = await make_catalog(mesh, n=1)
    code = await make_promotion(
        mesh, type="PROMOTION_TYPE_PERCENTAGE", percentOff=10, combinable=True, usageLimitPerCustomer="1"
    )
    mailbox = f"once-{uuid.uuid4().hex[:8]}@example.com"
    first, second = Rest(mesh.gateway_url), Rest(mesh.gateway_url)
    try:
        await first.guest()
        s = await ready_session(first, await fill_cart(first, skus, [1]), codes=[code], email=mailbox)
        assert [d["code"] for d in s["preview"].get("discounts", [])] == [code]
        assert (await confirm(first, s["session_id"], s["preview"]["grandTotal"]))["orderStatus"] == (
            "ORDER_STATUS_CONFIRMED"
        )

        await second.guest()
        cart_id = await fill_cart(second, skus, [1])
        again = await ready_session(second, cart_id, codes=[code], email=mailbox.upper())
        assert again["preview"].get("discounts", []) == []
        assert [r["code"] for r in again["preview"]["rejectedCodes"]] == [code]
        # Another mailbox is another customer.
        other = await ready_session(second, cart_id, codes=[code], email=f"other-{mailbox}")
        assert [d["code"] for d in other["preview"].get("discounts", [])] == [code]
    finally:
        await first.close()
        await second.close()
