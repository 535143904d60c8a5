"""Customers are told, end to end (issue 12): checkouts over REST through the whole mesh, email over SMTP to the
local stack's sink, fulfilment over the admin REST route, and capture on shipment against the sandbox ledger.

The sink keeps every message it receives, so "exactly one email" is checked against everything that arrived,
after the notification consumer has nothing left pending.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import nats
import psycopg
import pytest
from e2e.support import (
    Rest,
    RestError,
    Sandbox,
    confirm,
    eventually,
    fill_cart,
    make_catalog,
    payment_of,
    ready_session,
)

from devstack import check as invariant_check
from devstack.smtp_sink import MailboxMessage, read_mailbox
from kernel.money import Money
from notification.model.formatting import format_window

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

SETTLE_SECONDS = 30.0
CONSUMER = "notification-orders"


def mailbox(mesh: Any, order_id: str) -> list[MailboxMessage]:
    return [m for m in read_mailbox(Path(mesh.env["KASSA_MAIL_DIR"])) if order_id in m.body()]


async def mail_arrives(mesh: Any, order_id: str, subject_part: str) -> MailboxMessage:
    async def probe() -> MailboxMessage | None:
        return next((m for m in mailbox(mesh, order_id) if subject_part in m.subject), None)

    return await eventually(probe, within=SETTLE_SECONDS, what=f"a '{subject_part}' email for order {order_id}")


async def notifications_drained(mesh: Any) -> None:
    """The notification consumer has handled everything published so far (nothing pending, nothing unacked)."""
    nc = await nats.connect(mesh.env["KASSA_NATS_URL"])
    try:
        js = nc.jetstream()

        async def probe() -> bool:
            info = await js.consumer_info("KASSA_ORDER", CONSUMER)
            return info.num_pending == 0 and info.num_ack_pending == 0

        await eventually(probe, within=SETTLE_SECONDS, what="the notification consumer draining")
    finally:
        await nc.close()


async def checkout(client: Rest, mesh: Any, email: str, *, token: str = "tok_visa") -> dict[str, Any]:
    skus = await make_catalog(mesh, n=2, on_hand=10)
    cart_id = await fill_cart(client, skus, [1, 2])
    s = await ready_session(client, cart_id, token=token, email=email)
    result = await confirm(client, s["session_id"], s["preview"]["grandTotal"])
    return {**s, "result": result}


async def fulfil(admin: Rest, order_id: str, status: str, **extra: str) -> dict[str, Any]:
    body = {"status": status, **extra}
    return dict((await admin.call("POST", f"/v1/admin/orders/{order_id}/fulfillment", body))["order"])


async def order_reaches(client: Rest, order_id: str, status: str, payment_status: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        order = dict((await client.call("GET", f"/v1/orders/{order_id}"))["order"])
        return order if (order["status"], order.get("paymentStatus")) == (status, payment_status) else None

    return await eventually(probe, within=SETTLE_SECONDS, what=f"order {order_id} reaching {status}/{payment_status}")


async def captures_of(mesh: Any, payment_id: str) -> int:
    """How many captures the payment service made at the provider for ``payment_id`` (its attempt log)."""
    url = mesh.env["KASSA_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://", 1)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM payment.payment_attempts WHERE payment_id = %s AND operation = 'capture' "
            "AND outcome = 'captured'",
            (payment_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def invariants_hold(mesh: Any) -> None:
    """``kassa check`` (DESIGN.md §4) passes on the mesh's stack, once the background work has settled."""
    argv = ["--database-url", mesh.env["KASSA_DATABASE_URL"], "--sandbox-url", mesh.env["KASSA_SANDBOX_URL"]]

    async def probe() -> bool:
        return await asyncio.to_thread(invariant_check.main, argv) == 0

    await eventually(probe, within=SETTLE_SECONDS, interval=1.0, what="kassa check passing")


async def test_a_confirmed_checkout_sends_exactly_one_confirmation_with_its_total(mesh: Any) -> None:
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    client = Rest(mesh.gateway_url)
    try:
        await client.guest()
        c = await checkout(client, mesh, email)
        order_id = c["result"]["orderId"]
        assert c["result"]["orderStatus"] == "ORDER_STATUS_CONFIRMED"
        mail = await mail_arrives(mesh, order_id, "is confirmed")
        await notifications_drained(mesh)
        [only] = mailbox(mesh, order_id)
        assert only.key == mail.key and only.to == email
        # The preview, the order and the email carry the delivery window of the shipping method (US -> US standard).
        preview_window = c["preview"]["deliveryWindow"]
        assert (preview_window["minBusinessDays"], preview_window["maxBusinessDays"]) == (3, 5)
        order = (await client.call("GET", f"/v1/orders/{order_id}"))["order"]
        window = order["deliveryWindow"]
        assert (window["minBusinessDays"], window["maxBusinessDays"]) == (3, 5)
        earliest, latest = date.fromisoformat(window["earliestDate"]), date.fromisoformat(window["latestDate"])
        assert f"Estimated delivery: {format_window(earliest, latest)}" in mail.body()
        grand = c["result"]["grandTotal"]
        total = Money(grand["currencyCode"], int(grand["amountMinor"]))
        assert f"Total      ${int(total.amount_minor) // 100:,}.{int(total.amount_minor) % 100:02d}" in mail.body()
        assert f"<strong>${total.amount_minor // 100:,}.{total.amount_minor % 100:02d}</strong>" in mail.body("html")
    finally:
        await client.close()


async def test_a_redelivered_order_event_sends_nothing_more(mesh: Any) -> None:
    client = Rest(mesh.gateway_url)
    try:
        await client.guest()
        c = await checkout(client, mesh, f"again-{uuid.uuid4().hex[:8]}@example.com")
        order_id = c["result"]["orderId"]
        first = await mail_arrives(mesh, order_id, "is confirmed")
        await notifications_drained(mesh)
        # JetStream redelivering it: the same envelope, under a new Nats-Msg-Id so the broker lets it through.
        nc = await nats.connect(mesh.env["KASSA_NATS_URL"])
        try:
            js = nc.jetstream()
            sub = await js.subscribe("kassa.order.OrderConfirmed", ordered_consumer=True)
            while True:
                envelope = json.loads((await sub.next_msg(timeout=SETTLE_SECONDS)).data)
                if envelope["aggregate_id"] == order_id:
                    break
            await sub.unsubscribe()
            await js.publish(
                "kassa.order.OrderConfirmed", json.dumps(envelope).encode(), headers={"Nats-Msg-Id": uuid.uuid4().hex}
            )
        finally:
            await nc.close()
        await notifications_drained(mesh)
        assert [m.key for m in mailbox(mesh, order_id)] == [first.key]
    finally:
        await client.close()


async def test_a_failed_payment_sends_the_failure_email(mesh: Any) -> None:
    sandbox = Sandbox(mesh.env["KASSA_SANDBOX_URL"])
    client = Rest(mesh.gateway_url)
    try:
        await client.guest()
        c = await checkout(client, mesh, f"fail-{uuid.uuid4().hex[:8]}@example.com", token="tok_threeDSecure")
        result = c["result"]
        assert result["orderStatus"] == "ORDER_STATUS_PENDING_PAYMENT"
        await sandbox.fail_3ds(result["nextActionUrl"].rstrip("/").rsplit("/", 1)[-1])
        mail = await mail_arrives(mesh, result["orderId"], "did not go through")
        assert "nothing was charged" in mail.body() and "Reason: " in mail.body()
        await notifications_drained(mesh)
        assert [m.subject for m in mailbox(mesh, result["orderId"])] == [mail.subject]
    finally:
        await client.close()
        await sandbox.close()


async def test_fulfilment_over_the_admin_route_tells_the_customer_and_refuses_illegal_steps(mesh: Any) -> None:
    client, admin = Rest(mesh.gateway_url), Rest(mesh.gateway_url, mesh.admin_token)
    try:
        await client.guest()
        c = await checkout(client, mesh, f"ship-{uuid.uuid4().hex[:8]}@example.com")
        order_id = c["result"]["orderId"]
        await mail_arrives(mesh, order_id, "is confirmed")
        # Customers can't use the admin route; steps are taken in order; shipping needs its tracking number.
        with pytest.raises(RestError) as denied:
            await fulfil(client, order_id, "ORDER_STATUS_PACKED")
        assert denied.value.status == 403
        with pytest.raises(RestError) as skipped:
            await fulfil(admin, order_id, "ORDER_STATUS_SHIPPED", trackingNumber="1Z9", carrier="UPS")
        assert (skipped.value.status, skipped.value.reason) == (400, "ORDER_STATUS_CONFLICT")
        assert (await fulfil(admin, order_id, "ORDER_STATUS_PACKED"))["status"] == "ORDER_STATUS_PACKED"
        with pytest.raises(RestError) as untracked:
            await fulfil(admin, order_id, "ORDER_STATUS_SHIPPED", carrier="UPS")
        assert untracked.value.metadata.get("field") == "tracking_number"
        shipped = await fulfil(admin, order_id, "ORDER_STATUS_SHIPPED", trackingNumber="1Z999AA1", carrier="UPS")
        assert (shipped["trackingNumber"], shipped["carrier"]) == ("1Z999AA1", "UPS")
        mail = await mail_arrives(mesh, order_id, "has shipped")
        assert "Tracking number: 1Z999AA1" in mail.body() and "with UPS" in mail.body()
        await fulfil(admin, order_id, "ORDER_STATUS_DELIVERED")
        await mail_arrives(mesh, order_id, "was delivered")
        timeline = (await client.call("GET", f"/v1/orders/{order_id}/timeline"))["events"]
        # Each step is on the timeline once, in order (payment news may add entries of the status it finds).
        steps = [e["status"] for e in timeline if e["cause"].startswith("fulfilment: ")]
        assert steps == ["ORDER_STATUS_PACKED", "ORDER_STATUS_SHIPPED", "ORDER_STATUS_DELIVERED"]
        with pytest.raises(RestError) as final:
            await fulfil(admin, order_id, "ORDER_STATUS_PACKED")
        assert final.value.reason == "ORDER_STATUS_CONFLICT"
        await notifications_drained(mesh)
        assert len(mailbox(mesh, order_id)) == 3
        audit = await admin.call("GET", f"/v1/admin/audit?action=UpdateFulfillment&target=orders/{order_id}")
        assert len(audit["entries"]) >= 4
    finally:
        await client.close()
        await admin.close()


async def test_cash_on_delivery_is_marked_paid_when_delivered(mesh: Any) -> None:
    client, admin = Rest(mesh.gateway_url), Rest(mesh.gateway_url, mesh.admin_token)
    try:
        await client.guest()
        c = await checkout(client, mesh, f"cod-{uuid.uuid4().hex[:8]}@example.com", token="cod")
        order_id = c["result"]["orderId"]
        assert c["result"]["orderStatus"] == "ORDER_STATUS_AWAITING_SHIPMENT"
        mail = await mail_arrives(mesh, order_id, "is confirmed")
        assert "in cash on delivery" in mail.body()
        for step, extra in (
            ("ORDER_STATUS_PACKED", {}),
            ("ORDER_STATUS_SHIPPED", {"trackingNumber": "COD-1", "carrier": "DHL"}),
            ("ORDER_STATUS_DELIVERED", {}),
        ):
            await fulfil(admin, order_id, step, **extra)
        order = await order_reaches(client, order_id, "ORDER_STATUS_DELIVERED", "PAYMENT_STATUS_CAPTURED")
        payment = await payment_of(mesh, order["paymentId"])
        assert payment.captured_amount.amount_minor == int(order["totals"]["grandTotal"]["amountMinor"])
    finally:
        await client.close()
        await admin.close()


async def test_capture_on_shipment_captures_exactly_once_and_a_cancel_before_voids(start_mesh: Any) -> None:
    async with start_mesh({"KASSA_CAPTURE_ON": "shipment"}) as mesh:
        sandbox = Sandbox(mesh.env["KASSA_SANDBOX_URL"])
        client, admin = Rest(mesh.gateway_url), Rest(mesh.gateway_url, mesh.admin_token)
        try:
            await client.guest()
            shipped_c = await checkout(client, mesh, f"cos-{uuid.uuid4().hex[:8]}@example.com")
            cancelled_c = await checkout(client, mesh, f"cos-{uuid.uuid4().hex[:8]}@example.com")
            for c in (shipped_c, cancelled_c):
                assert c["result"]["orderStatus"] == "ORDER_STATUS_CONFIRMED"
            order_id = shipped_c["result"]["orderId"]
            order = await order_reaches(client, order_id, "ORDER_STATUS_CONFIRMED", "PAYMENT_STATUS_AUTHORIZED")
            # An authorization held for an order that has not shipped is no money leak: kassa check agrees.
            await invariants_hold(mesh)
            grand = int(order["totals"]["grandTotal"]["amountMinor"])
            intent_id = (await payment_of(mesh, order["paymentId"])).provider_payment_id
            intent = await sandbox.intent(intent_id)
            assert (intent["status"], intent["amount_received"]) == ("requires_capture", 0)
            await mail_arrives(mesh, order_id, "is confirmed")

            await fulfil(admin, order_id, "ORDER_STATUS_PACKED")
            await fulfil(admin, order_id, "ORDER_STATUS_SHIPPED", trackingNumber="1Z-COS", carrier="UPS")
            # A repeat of the step (a worker retrying) is a no-op: still one OrderShipped, one capture.
            await fulfil(admin, order_id, "ORDER_STATUS_SHIPPED", trackingNumber="1Z-COS", carrier="UPS")
            await order_reaches(client, order_id, "ORDER_STATUS_SHIPPED", "PAYMENT_STATUS_CAPTURED")
            intent = await sandbox.intent(intent_id)
            assert (intent["status"], intent["amount_received"]) == ("succeeded", grand)
            assert await captures_of(mesh, order["paymentId"]) == 1
            await mail_arrives(mesh, order_id, "has shipped")

            # Cancelled before it ships: the hold is voided, nothing is ever captured.
            other = cancelled_c["result"]["orderId"]
            other_order = await order_reaches(client, other, "ORDER_STATUS_CONFIRMED", "PAYMENT_STATUS_AUTHORIZED")
            other_intent = (await payment_of(mesh, other_order["paymentId"])).provider_payment_id
            await client.call("POST", f"/v1/orders/{other}:cancel", {"reason": "changed my mind"})
            await order_reaches(client, other, "ORDER_STATUS_CANCELLED", "PAYMENT_STATUS_VOIDED")
            voided = await sandbox.intent(other_intent)
            assert (voided["status"], voided["amount_received"]) == ("canceled", 0)
            await mail_arrives(mesh, other, "was cancelled")
            assert await captures_of(mesh, other_order["paymentId"]) == 0
            await invariants_hold(mesh)
        finally:
            await client.close()
            await admin.close()
            await sandbox.close()
