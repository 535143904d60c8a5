"""Every payment ends right, end to end through the gateway (issue #8): 3-D Secure, webhooks, cancellation,
refunds, replay and zero totals, checked against the sandbox provider's own ledger.

Each test asserts the DESIGN.md §4 invariants it touches: no oversell, stock conserved (on_hand drops by
exactly the units sold), at most one capture per order and one order per session, and no authorization
left open for an order that failed or was cancelled.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from e2e.support import (
    Rest,
    RestError,
    Sandbox,
    cart_reaches,
    confirm,
    eventually,
    fill_cart,
    intent_id_of,
    make_catalog,
    make_coupon,
    make_promotion,
    payment_of,
    post_webhook,
    provider_event,
    ready_session,
    stock_of,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

CONFIRMED = "ORDER_STATUS_CONFIRMED"
PENDING = "ORDER_STATUS_PENDING_PAYMENT"
FAILED = "ORDER_STATUS_PAYMENT_FAILED"
CANCELLED = "ORDER_STATUS_CANCELLED"
# Bounded waits for what the mesh does in the background (webhook → payment → NATS → checkout/order).
SETTLE_SECONDS = 30.0


@pytest.fixture
async def sandbox(mesh: Any) -> Any:
    client = Sandbox(mesh.env["KASSA_SANDBOX_URL"])
    yield client
    await client.close()


async def order_of(client: Rest, order_id: str) -> dict[str, Any]:
    return dict((await client.call("GET", f"/v1/orders/{order_id}"))["order"])


async def order_reaches(
    client: Rest, order_id: str, status: str, payment_status: str | tuple[str, ...] | None = None
) -> dict:
    """The order once it is in ``status`` (and ``payment_status``, or one of them), within a bounded wait.

    The two may arrive apart: checkout records the outcome (the status) and order's consumer of payment events
    the payment status, each when it gets there.
    """
    wanted = (payment_status,) if isinstance(payment_status, str) else payment_status

    async def probe() -> dict | None:
        order = await order_of(client, order_id)
        if order["status"] != status:
            return None
        if wanted is not None and order.get("paymentStatus") not in wanted:
            return None
        return order

    return await eventually(probe, within=SETTLE_SECONDS, what=f"order {order_id} reaching {status}/{payment_status}")


async def intent_reaches(sandbox: Sandbox, intent_id: str, status: str) -> dict:
    async def probe() -> dict | None:
        intent = await sandbox.intent(intent_id)
        return intent if intent["status"] == status else None

    return await eventually(probe, within=SETTLE_SECONDS, what=f"intent {intent_id} reaching {status}")


async def stock_back(mesh: Any, skus: list[str], before: dict[str, tuple[int, int]]) -> dict:
    """Stock as it was before the checkout: nothing reserved, nothing deducted (bounded wait)."""

    async def probe() -> dict | None:
        now = await stock_of(mesh, skus)
        return now if now == before else None

    return await eventually(probe, within=SETTLE_SECONDS, what=f"stock of {skus} back to {before}")


async def coupon_applies(client: Rest, probe_sku: str, coupon: str) -> bool:
    """Whether ``coupon`` (usage limit 1) applies to a fresh cart now, i.e. its one use is free again.

    The probe cart holds ``probe_sku``, a product of its own, so it never disturbs the stock being asserted.
    """
    cart_id = await fill_cart(client, [probe_sku], [1])
    started = await client.call("POST", "/v1/checkout/start", {"cartId": cart_id, "shipToCountryCode": "US"})
    sid = started["session"]["sessionId"]
    await client.call("PUT", "/v1/checkout/state", {"sessionId": sid, "promotionCodes": [coupon]})
    preview = (await client.call("GET", f"/v1/checkout/sessions/{sid}/preview"))["preview"]
    applied = [d["code"] for d in preview.get("discounts", [])]
    rejected = [r["code"] for r in preview.get("rejectedCodes", [])]
    assert applied == [coupon] or rejected == [coupon], preview
    return applied == [coupon]


async def three_ds_checkout(client: Rest, skus: list[str], quantities: list[int], coupon: str | None = None) -> dict:
    """A checkout paid with tok_threeDSecure up to the redirect: the order waits in PENDING_PAYMENT."""
    cart_id = await fill_cart(client, skus, quantities)
    s = await ready_session(client, cart_id, token="tok_threeDSecure", codes=[coupon] if coupon else [])
    if coupon:
        assert [d["code"] for d in s["preview"].get("discounts", [])] == [coupon]
    result = await confirm(client, s["session_id"], s["preview"]["grandTotal"])
    assert result["orderStatus"] == PENDING, result
    assert result["paymentStatus"] == "PAYMENT_STATUS_REQUIRES_ACTION", result
    assert result["nextActionUrl"], result
    return {**s, "cart_id": cart_id, "result": result, "intent_id": intent_id_of(result["nextActionUrl"])}


async def test_three_d_secure_completed_confirms_and_captures_once(mesh: Any, sandbox: Sandbox) -> None:
    skus = await make_catalog(mesh, n=2, on_hand=10)
    probe = (await make_catalog(mesh, n=1))[0]
    coupon = await make_coupon(mesh, usage_limit=1)
    before = await stock_of(mesh, skus)
    client = Rest(mesh.gateway_url)
    try:
        await client.guest()
        c = await three_ds_checkout(client, skus, [1, 2], coupon)
        order_id, sid, intent_id = c["result"]["orderId"], c["session_id"], c["intent_id"]
        # While the customer authenticates: units held (not sold), coupon held, nothing captured.
        order = await order_of(client, order_id)
        assert order["status"] == PENDING
        held = await stock_of(mesh, skus)
        assert [held[x][0] for x in skus] == [before[x][0] for x in skus]
        assert [held[x][1] - before[x][1] for x in skus] == [1, 2]
        assert (await sandbox.intent(intent_id))["status"] == "requires_action"
        assert not await coupon_applies(client, probe, coupon)

        await sandbox.complete_3ds(intent_id)
        order = await order_reaches(client, order_id, CONFIRMED, "PAYMENT_STATUS_CAPTURED")
        grand = int(order["totals"]["grandTotal"]["amountMinor"])
        assert grand == int(c["result"]["grandTotal"]["amountMinor"])

        # The ledger: one intent for the session, captured once for the grand total, reconcilable.
        intent = await intent_reaches(sandbox, intent_id, "succeeded")
        assert intent["amount_received"] == grand
        assert intent["amount_refunded"] == 0
        session_intents = await sandbox.intents_of_session(sid)
        assert [i["id"] for i in session_intents] == [intent_id]
        assert intent["metadata"].get("kassa_session_id") == sid, intent["metadata"]
        assert intent["metadata"].get("kassa_order_id") == order_id, intent["metadata"]
        payment = await payment_of(mesh, order["paymentId"])
        assert payment.provider_payment_id == intent_id
        assert payment.captured_amount.amount_minor == grand

        # Stock confirmed: on_hand down by the units, nothing left reserved (conserved, no oversell).
        after = await stock_of(mesh, skus)
        assert [before[x][0] - after[x][0] for x in skus] == [1, 2]
        assert [after[x][1] for x in skus] == [before[x][1] for x in skus]
        assert all(0 <= r <= h for h, r in after.values())
        # The coupon's only use is counted.
        assert not await coupon_applies(client, probe, coupon)
        await cart_reaches(client, c["cart_id"], "CART_STATUS_CONVERTED")
        assert [o["orderId"] for o in (await client.call("GET", "/v1/orders"))["orders"]] == [order_id]
    finally:
        await client.close()


async def test_three_d_secure_failed_releases_stock_and_coupon(mesh: Any, sandbox: Sandbox) -> None:
    skus = await make_catalog(mesh, n=2, on_hand=3)
    probe = (await make_catalog(mesh, n=1))[0]
    coupon = await make_coupon(mesh, usage_limit=1)
    before = await stock_of(mesh, skus)
    client = Rest(mesh.gateway_url)
    try:
        await client.guest()
        c = await three_ds_checkout(client, skus, [3, 1], coupon)
        order_id, intent_id = c["result"]["orderId"], c["intent_id"]

        await sandbox.fail_3ds(intent_id)
        order = await order_reaches(client, order_id, FAILED, ("PAYMENT_STATUS_FAILED", "PAYMENT_STATUS_VOIDED"))
        intent = await sandbox.intent(intent_id)
        assert intent["status"] in ("requires_payment_method", "canceled"), intent
        assert intent["amount_received"] == 0 and intent["amount_capturable"] == 0, intent
        payment = await payment_of(mesh, order["paymentId"])
        assert payment.captured_amount.amount_minor == 0

        # Every unit back on sale and the coupon's use given back.
        await stock_back(mesh, skus, before)
        assert await coupon_applies(client, probe, coupon)
        # The same cart checks out again, and the same units (all of them) can be sold.
        await cart_reaches(client, c["cart_id"], "CART_STATUS_ACTIVE")
        s2 = await ready_session(client, c["cart_id"])
        result = await confirm(client, s2["session_id"], s2["preview"]["grandTotal"])
        assert result["orderStatus"] == CONFIRMED, result
        after = await stock_of(mesh, skus)
        assert [before[x][0] - after[x][0] for x in skus] == [3, 1]
        assert [after[x][1] for x in skus] == [0, 0]
    finally:
        await client.close()


async def test_webhook_before_confirm_answers_gives_one_capture_and_one_order(mesh: Any, sandbox: Sandbox) -> None:
    skus = await make_catalog(mesh, n=1, on_hand=5)
    before = await stock_of(mesh, skus)
    client = Rest(mesh.gateway_url)
    try:
        await client.guest()
        cart_id = await fill_cart(client, skus, [2])
        s = await ready_session(client, cart_id, token="tok_threeDSecure")
        sid = s["session_id"]

        async def authenticate_as_soon_as_the_intent_exists() -> dict:
            intent = (await eventually(lambda: sandbox.intents_of_session(sid), interval=0.02, what="the intent"))[0]
            # The provider's webhook (amount_capturable_updated) goes out at once, while the saga may still run;
            # a second, signed copy of it from us races it too.
            done = await sandbox.complete_3ds(intent["id"])
            await post_webhook(mesh, provider_event("payment_intent.amount_capturable_updated", done))
            return done

        result, intent = await asyncio.gather(
            confirm(client, sid, s["preview"]["grandTotal"]), authenticate_as_soon_as_the_intent_exists()
        )
        assert result["orderStatus"] in (PENDING, CONFIRMED), result
        order = await order_reaches(client, result["orderId"], CONFIRMED, "PAYMENT_STATUS_CAPTURED")
        captured = await intent_reaches(sandbox, intent["id"], "succeeded")
        assert captured["amount_received"] == int(order["totals"]["grandTotal"]["amountMinor"])
        assert [i["id"] for i in await sandbox.intents_of_session(sid)] == [intent["id"]]
        assert [o["orderId"] for o in (await client.call("GET", "/v1/orders"))["orders"]] == [result["orderId"]]
        after = await stock_of(mesh, skus)
        assert before[skus[0]][0] - after[skus[0]][0] == 2
        assert after[skus[0]][1] == before[skus[0]][1]
    finally:
        await client.close()


async def test_webhooks_forged_duplicated_out_of_order_and_stale_change_nothing(mesh: Any, sandbox: Sandbox) -> None:
    from infra.webhook_signature import sign

    skus = await make_catalog(mesh, n=1, on_hand=5)
    before = await stock_of(mesh, skus)
    client = Rest(mesh.gateway_url)
    try:
        await client.guest()
        c = await three_ds_checkout(client, skus, [1])
        order_id, intent_id = c["result"]["orderId"], c["intent_id"]
        pending = await sandbox.intent(intent_id)
        # What a forger would claim: authenticated and capturable, or already paid.
        paid = {**pending, "status": "requires_capture", "amount_capturable": pending["amount"], "next_action": None}
        secret = mesh.env["KASSA_WEBHOOK_SECRET"]
        forged = [
            ({}, "payment_intent.amount_capturable_updated", "sha256=deadbeef"),
            ({}, "payment_intent.succeeded", sign("not-the-secret", b"{}")),
            ({"secret": "not-the-secret"}, "payment_intent.amount_capturable_updated", None),
            ({}, "payment_intent.amount_capturable_updated", ""),
        ]
        for kwargs, event_type, signature in forged:
            resp = await post_webhook(mesh, provider_event(event_type, paid), signature=signature, **kwargs)
            assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
        # A correct signature over a stale timestamp is a replay of an old request: refused too.
        event = provider_event("payment_intent.amount_capturable_updated", paid)
        old = sign(secret, json.dumps(event, separators=(",", ":")).encode(), timestamp=int(time.time()) - 3600)
        resp = await post_webhook(mesh, event, signature=old)
        assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
        # Nothing moved.
        assert (await order_of(client, order_id))["status"] == PENDING
        assert (await sandbox.intent(intent_id))["status"] == "requires_action"

        await sandbox.complete_3ds(intent_id)
        order = await order_reaches(client, order_id, CONFIRMED, "PAYMENT_STATUS_CAPTURED")
        captured = await intent_reaches(sandbox, intent_id, "succeeded")
        authorized = {**captured, "status": "requires_capture", "amount_capturable": captured["amount"]}
        authorized["amount_received"] = 0

        # Duplicated: one event id twice; the second is acknowledged as a duplicate.
        dup = provider_event("payment_intent.succeeded", captured)
        first, second = await post_webhook(mesh, dup), await post_webhook(mesh, dup)
        assert first.status_code == 200 and second.status_code == 200, (first.text, second.text)
        assert second.json()["duplicate"] is True
        # Out of order: "authorized" arriving after "succeeded"; stale: a failure and a cancel after success.
        late = [
            provider_event("payment_intent.amount_capturable_updated", authorized),
            provider_event("payment_intent.payment_failed", {**pending, "status": "requires_payment_method"}),
            provider_event("payment_intent.canceled", {**captured, "status": "canceled"}),
        ]
        for event in late:
            resp = await post_webhook(mesh, event)
            assert resp.status_code == 200, (event["type"], resp.status_code, resp.text)
        # Give the mesh the time it takes to apply an event (a probe that must stay false), then check.
        await wait_for_outbox_quiet(client, order_id)
        order = await order_of(client, order_id)
        assert (order["status"], order.get("paymentStatus")) == (CONFIRMED, "PAYMENT_STATUS_CAPTURED"), order
        payment = await payment_of(mesh, order["paymentId"])
        assert payment.captured_amount.amount_minor == captured["amount_received"]
        intent = await sandbox.intent(intent_id)
        assert (intent["status"], intent["amount_received"], intent["amount_refunded"]) == (
            "succeeded",
            captured["amount_received"],
            0,
        )
        after = await stock_of(mesh, skus)
        assert before[skus[0]][0] - after[skus[0]][0] == 1
        assert after[skus[0]][1] == before[skus[0]][1]
    finally:
        await client.close()


async def wait_for_outbox_quiet(client: Rest, order_id: str) -> None:
    """Let events posted just now reach the order (a marker: the timeline stops growing for a second)."""
    last: list[Any] = []
    stable = 0

    async def probe() -> bool:
        nonlocal last, stable
        events = (await client.call("GET", f"/v1/orders/{order_id}/timeline"))["events"]
        stable = stable + 1 if events == last else 0
        last = events
        return stable >= 4

    await eventually(probe, within=SETTLE_SECONDS, interval=0.3, what="the order timeline settling")


async def admin_fulfil(mesh: Any, order_id: str, status: str) -> None:
    """An admin moves an order through fulfilment over gRPC with an admin token."""
    import grpc

    from kassa.order.v1 import order_pb2
    from kassa.order.v1 import order_service_pb2 as order_pb
    from kassa.order.v1 import order_service_pb2_grpc as order_grpc

    async with grpc.aio.insecure_channel(mesh.addr("order")) as ch:
        await order_grpc.OrderServiceStub(ch).UpdateFulfillment(
            order_pb.UpdateFulfillmentRequest(
                order_id=order_id,
                status=order_pb2.OrderStatus.Value(status),
                tracking_number="1Z999" if status == "ORDER_STATUS_SHIPPED" else "",
                carrier="ups" if status == "ORDER_STATUS_SHIPPED" else "",
            ),
            metadata=(("authorization", f"Bearer {mesh.admin_token}"),),
            timeout=10,
        )


async def cancel(client: Rest, order_id: str, reason: str = "changed my mind") -> dict[str, Any]:
    return dict((await client.call("POST", f"/v1/orders/{order_id}:cancel", {"reason": reason}))["order"])


async def test_cancel_a_confirmed_order_refunds_restocks_and_gives_the_coupon_back(mesh: Any, sandbox: Sandbox) -> None:
    skus = await make_catalog(mesh, n=2, on_hand=4)
    probe = (await make_catalog(mesh, n=1))[0]
    coupon = await make_coupon(mesh, usage_limit=1)
    before = await stock_of(mesh, skus)
    client = Rest(mesh.gateway_url)
    try:
        await client.guest()
        s = await ready_session(client, await fill_cart(client, skus, [1, 3]), codes=[coupon])
        result = await confirm(client, s["session_id"], s["preview"]["grandTotal"])
        assert result["orderStatus"] == CONFIRMED
        order_id = result["orderId"]
        order = await order_of(client, order_id)
        intent_id = (await payment_of(mesh, order["paymentId"])).provider_payment_id
        grand = int(order["totals"]["grandTotal"]["amountMinor"])
        assert (await sandbox.intent(intent_id))["amount_received"] == grand
        assert not await coupon_applies(client, probe, coupon)

        cancelled = await cancel(client, order_id)
        assert cancelled["status"] == CANCELLED
        order = await order_reaches(client, order_id, CANCELLED, "PAYMENT_STATUS_REFUNDED")
        intent = await eventually(
            lambda: _refunded(sandbox, intent_id, grand), within=SETTLE_SECONDS, what="the refund at the sandbox"
        )
        assert intent["amount_received"] == grand
        await stock_back(mesh, skus, before)
        await eventually(lambda: coupon_applies(client, probe, coupon), within=SETTLE_SECONDS, what="coupon back")
        # Idempotent: cancelling again changes nothing and moves no more money.
        again = await cancel(client, order_id)
        assert again["status"] == CANCELLED
        assert (await sandbox.intent(intent_id))["amount_refunded"] == grand
        events = (await client.call("GET", f"/v1/orders/{order_id}/timeline"))["events"]
        causes = [e["cause"] for e in events if e["status"] == CANCELLED]
        # Each step recorded once: the cancellation (not repeated by the second call) and the refund.
        assert sum("cancel" in cause for cause in causes) == 1, events
        assert sum("refund" in cause for cause in causes) == 1, events
        assert events[-1]["status"] == CANCELLED, events
    finally:
        await client.close()


async def _refunded(sandbox: Sandbox, intent_id: str, amount: int) -> dict | None:
    intent = await sandbox.intent(intent_id)
    return intent if intent["amount_refunded"] == amount else None


async def test_cancel_a_cash_on_delivery_order_voids_and_restocks(mesh: Any, sandbox: Sandbox) -> None:
    skus = await make_catalog(mesh, n=1, on_hand=3)
    before = await stock_of(mesh, skus)
    client = Rest(mesh.gateway_url)
    try:
        await client.guest()
        s = await ready_session(client, await fill_cart(client, skus, [3]), token="cod")
        result = await confirm(client, s["session_id"], s["preview"]["grandTotal"])
        assert result["orderStatus"] == "ORDER_STATUS_AWAITING_SHIPMENT", result
        assert result["paymentStatus"] == "PAYMENT_STATUS_CASH_ON_DELIVERY", result
        sold = await stock_of(mesh, skus)
        assert sold[skus[0]] == (before[skus[0]][0] - 3, before[skus[0]][1])
        # Nothing was ever held at the provider for it.
        assert await sandbox.intents_of_session(s["session_id"]) == []

        assert (await cancel(client, result["orderId"]))["status"] == CANCELLED
        await order_reaches(client, result["orderId"], CANCELLED, "PAYMENT_STATUS_VOIDED")
        await stock_back(mesh, skus, before)
        assert await sandbox.intents_of_session(s["session_id"]) == []
    finally:
        await client.close()


async def test_cancel_while_3ds_is_pending_cancels_the_intent_and_a_late_completion_captures_nothing(
    mesh: Any, sandbox: Sandbox
) -> None:
    skus = await make_catalog(mesh, n=1, on_hand=2)
    probe = (await make_catalog(mesh, n=1))[0]
    coupon = await make_coupon(mesh, usage_limit=1)
    before = await stock_of(mesh, skus)
    client = Rest(mesh.gateway_url)
    try:
        await client.guest()
        c = await three_ds_checkout(client, skus, [2], coupon)
        order_id, intent_id = c["result"]["orderId"], c["intent_id"]

        assert (await cancel(client, order_id))["status"] == CANCELLED
        await intent_reaches(sandbox, intent_id, "canceled")
        await order_reaches(client, order_id, CANCELLED, "PAYMENT_STATUS_VOIDED")
        await stock_back(mesh, skus, before)
        await eventually(lambda: coupon_applies(client, probe, coupon), within=SETTLE_SECONDS, what="coupon back")

        # The customer finishes 3-D Secure in a tab left open: nothing is authorized or captured.
        late = await sandbox.complete_3ds(intent_id)
        assert late["status"] == "canceled", late
        await wait_for_outbox_quiet(client, order_id)
        intent = await sandbox.intent(intent_id)
        assert (intent["status"], intent["amount_capturable"], intent["amount_received"]) == ("canceled", 0, 0)
        order = await order_of(client, order_id)
        assert (order["status"], order.get("paymentStatus")) == (CANCELLED, "PAYMENT_STATUS_VOIDED"), order
        assert await stock_of(mesh, skus) == before
    finally:
        await client.close()


async def test_a_packed_order_is_cancelled_by_an_admin_only(mesh: Any, sandbox: Sandbox) -> None:
    skus = await make_catalog(mesh, n=1, on_hand=2)
    before = await stock_of(mesh, skus)
    client, admin = Rest(mesh.gateway_url), Rest(mesh.gateway_url, mesh.admin_token)
    try:
        await client.guest()
        s = await ready_session(client, await fill_cart(client, skus, [1]))
        result = await confirm(client, s["session_id"], s["preview"]["grandTotal"])
        order_id = result["orderId"]
        await admin_fulfil(mesh, order_id, "ORDER_STATUS_PACKED")
        assert (await order_of(client, order_id))["status"] == "ORDER_STATUS_PACKED"

        with pytest.raises(RestError) as exc:
            await cancel(client, order_id)
        assert exc.value.status in (400, 409), exc.value.body
        assert exc.value.body["code"] == 9, exc.value.body  # FAILED_PRECONDITION
        # Still packed; its payment status comes from payment's event, which may land just after the refusal.
        await order_reaches(client, order_id, "ORDER_STATUS_PACKED", "PAYMENT_STATUS_CAPTURED")

        assert (await cancel(admin, order_id, "warehouse damaged it"))["status"] == CANCELLED
        order = await order_reaches(client, order_id, CANCELLED, "PAYMENT_STATUS_REFUNDED")
        intent_id = (await payment_of(mesh, order["paymentId"])).provider_payment_id
        grand = int(order["totals"]["grandTotal"]["amountMinor"])
        await eventually(lambda: _refunded(sandbox, intent_id, grand), within=SETTLE_SECONDS, what="the refund")
        await stock_back(mesh, skus, before)
    finally:
        await client.close()
        await admin.close()


async def refund(admin: Rest, order_id: str, amount: int, key: str, reason: str = "partial refund") -> dict:
    return dict(
        await admin.call(
            "POST",
            f"/v1/admin/orders/{order_id}:refund",
            {"amount": {"currencyCode": "USD", "amountMinor": str(amount)}, "reason": reason},
            headers={"Idempotency-Key": key},
        )
    )


async def test_partial_refunds_up_to_the_capture_and_never_past_it(mesh: Any, sandbox: Sandbox) -> None:
    skus = await make_catalog(mesh, n=1, on_hand=5)
    client, admin = Rest(mesh.gateway_url), Rest(mesh.gateway_url, mesh.admin_token)
    try:
        await client.guest()
        s = await ready_session(client, await fill_cart(client, skus, [2]))
        result = await confirm(client, s["session_id"], s["preview"]["grandTotal"])
        order_id = result["orderId"]
        order = await order_of(client, order_id)
        grand = int(order["totals"]["grandTotal"]["amountMinor"])
        intent_id = (await payment_of(mesh, order["paymentId"])).provider_payment_id
        first_part = grand // 3
        key1, key2 = uuid.uuid4().hex, uuid.uuid4().hex

        first = await refund(admin, order_id, first_part, key1)
        assert int(first["payment"]["refundedAmount"]["amountMinor"]) == first_part, first
        assert first["refundId"]
        await order_reaches(client, order_id, CONFIRMED, "PAYMENT_STATUS_PARTIALLY_REFUNDED")
        assert (await sandbox.intent(intent_id))["amount_refunded"] == first_part

        # The same key again: the first refund, and no more money moves.
        replayed = await refund(admin, order_id, first_part, key1)
        assert replayed["refundId"] == first["refundId"]
        assert (await sandbox.intent(intent_id))["amount_refunded"] == first_part

        # One cent past what is left: refused, nothing moves.
        with pytest.raises(RestError) as exc:
            await refund(admin, order_id, grand - first_part + 1, uuid.uuid4().hex)
        assert exc.value.reason == "REFUND_EXCEEDS_CAPTURE", exc.value.body
        assert 400 <= exc.value.status < 500
        assert (await sandbox.intent(intent_id))["amount_refunded"] == first_part

        second = await refund(admin, order_id, grand - first_part, key2)
        assert second["refundId"] != first["refundId"]
        assert int(second["payment"]["refundedAmount"]["amountMinor"]) == grand
        await order_reaches(client, order_id, CONFIRMED, "PAYMENT_STATUS_REFUNDED")
        intent = await sandbox.intent(intent_id)
        assert (intent["amount_received"], intent["amount_refunded"]) == (grand, grand)

        # Fully refunded: even one cent more is refused; a replay of the first key still moves nothing.
        with pytest.raises(RestError) as exc:
            await refund(admin, order_id, 1, uuid.uuid4().hex)
        assert exc.value.reason == "REFUND_EXCEEDS_CAPTURE", exc.value.body
        assert (await refund(admin, order_id, first_part, key1))["refundId"] == first["refundId"]
        assert (await sandbox.intent(intent_id))["amount_refunded"] == grand
        # A customer may not refund.
        with pytest.raises(RestError) as exc:
            await refund(client, order_id, 1, uuid.uuid4().hex)
        assert exc.value.status in (401, 403)
    finally:
        await client.close()
        await admin.close()


async def test_a_decline_replays_and_the_cart_then_pays(mesh: Any, sandbox: Sandbox) -> None:
    skus = await make_catalog(mesh, n=2, on_hand=2)
    before = await stock_of(mesh, skus)
    client = Rest(mesh.gateway_url)
    try:
        await client.guest()
        cart_id = await fill_cart(client, skus, [2, 1])
        s = await ready_session(client, cart_id, token="tok_chargeDeclined")
        key, total = uuid.uuid4().hex, s["preview"]["grandTotal"]
        with pytest.raises(RestError) as first:
            await confirm(client, s["session_id"], total, key)
        assert first.value.reason == "PAYMENT_DECLINED", first.value.body
        await stock_back(mesh, skus, before)

        with pytest.raises(RestError) as again:
            await confirm(client, s["session_id"], total, key)
        assert (again.value.status, again.value.body) == (first.value.status, first.value.body)

        other_total = {**total, "amountMinor": str(int(total["amountMinor"]) + 1)}
        with pytest.raises(RestError) as reused:
            await confirm(client, s["session_id"], other_total, key)
        assert reused.value.reason == "IDEMPOTENCY_KEY_REUSED", reused.value.body
        # One declined intent at the provider, nothing held.
        declined = await sandbox.intents_of_session(s["session_id"])
        assert [(i["status"], i["amount_capturable"], i["amount_received"]) for i in declined] == [
            ("requires_payment_method", 0, 0)
        ]

        s2 = await ready_session(client, cart_id, token="tok_visa")
        assert s2["session_id"] != s["session_id"]
        result = await confirm(client, s2["session_id"], s2["preview"]["grandTotal"], uuid.uuid4().hex)
        assert (result["orderStatus"], result["paymentStatus"]) == (CONFIRMED, "PAYMENT_STATUS_CAPTURED"), result
        # The decline's key still answers the decline, not the new order.
        with pytest.raises(RestError) as still:
            await confirm(client, s["session_id"], total, key)
        assert (still.value.status, still.value.body) == (first.value.status, first.value.body)
        after = await stock_of(mesh, skus)
        assert [before[x][0] - after[x][0] for x in skus] == [2, 1]
        assert [after[x][1] for x in skus] == [0, 0]
        assert [o["orderId"] for o in (await client.call("GET", "/v1/orders"))["orders"]] == [result["orderId"]]
    finally:
        await client.close()


async def test_a_zero_total_confirms_without_authorizing_anything(mesh: Any, sandbox: Sandbox) -> None:
    skus = await make_catalog(mesh, n=2, on_hand=3)
    before = await stock_of(mesh, skus)
    everything = await make_promotion(
        mesh, type="PROMOTION_TYPE_PERCENTAGE", percentOff=100, usageLimit="1", combinable=True
    )
    free_shipping = await make_promotion(mesh, type="PROMOTION_TYPE_FREE_SHIPPING", usageLimit="1", combinable=True)
    client = Rest(mesh.gateway_url)
    try:
        await client.guest()
        s = await ready_session(client, await fill_cart(client, skus, [1, 2]), codes=[everything, free_shipping])
        preview = s["preview"]
        assert sorted(d["code"] for d in preview.get("discounts", [])) == sorted([everything, free_shipping]), preview
        assert int(preview["grandTotal"].get("amountMinor", 0)) == 0, preview
        result = await confirm(client, s["session_id"], preview["grandTotal"])
        assert result["orderStatus"] == CONFIRMED, result
        order = await order_of(client, result["orderId"])
        assert int(order["totals"]["grandTotal"].get("amountMinor", 0)) == 0
        assert await sandbox.intents_of_session(s["session_id"]) == []
        after = await stock_of(mesh, skus)
        assert [before[x][0] - after[x][0] for x in skus] == [1, 2]
        assert [after[x][1] for x in skus] == [0, 0]
    finally:
        await client.close()
