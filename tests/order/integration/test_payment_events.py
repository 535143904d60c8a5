"""The order-payments consumer applies async payment outcomes from JetStream exactly once."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import sqlalchemy as sa
from helpers import bearer, unique
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.server import Server
from kassa.common.v1.address_pb2 import Address
from kassa.common.v1.money_pb2 import Money
from kassa.order.v1 import order_pb2
from kassa.order.v1 import order_service_pb2 as pb
from kassa.order.v1.order_service_pb2_grpc import OrderServiceStub
from kassa.payment.v1.payment_pb2 import PaymentStatus
from order.data.tables import history, inbox, outbox

pytestmark = pytest.mark.integration

WAIT_SECONDS = 20.0


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until true, failing after a bounded wait."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while loop.time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def consumer_drained(js: JetStreamContext) -> bool:
    info = await js.consumer_info("KASSA_PAYMENT", "order-payments")
    return info.num_pending == 0 and info.num_ack_pending == 0


async def publish(js: JetStreamContext, event_type: str, event_id: str, data: dict[str, Any]) -> None:
    envelope = {
        "event_id": event_id,
        "event_type": event_type,
        "aggregate_id": data.get("payment_id", ""),
        "data": data,
    }
    await js.publish(
        f"kassa.payment.{event_type}", json.dumps(envelope).encode(), headers={"Nats-Msg-Id": uuid.uuid4().hex}
    )


async def scalar(engine: AsyncEngine, stmt: sa.Select[Any]) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(stmt)).scalar_one())


def usd(amount: int) -> Money:
    return Money(currency_code="USD", amount_minor=amount)


def order_request(session_id: str, customer_id: str, payment_id: str) -> pb.CreateOrderRequest:
    return pb.CreateOrderRequest(
        checkout_session_id=session_id,
        customer_id=customer_id,
        lines=[order_pb2.OrderLine(sku="kiwi", quantity=3, unit_price=usd(250), line_total=usd(750))],
        totals=order_pb2.OrderTotals(
            subtotal=usd(750), discount_total=usd(0), shipping_total=usd(0), tax_total=usd(0), grand_total=usd(750)
        ),
        shipping_address=Address(
            name="Ada", line1="1 Main St", city="Springfield", postal_code="12345", country_code="US"
        ),
        shipping_method="express",
        payment_id=payment_id,
        payment_method="tok_threeDSecure",
        authorized_amount=usd(750),
    )


async def test_a_captured_event_published_twice_is_applied_once(
    stub: OrderServiceStub,
    service_token: str,
    customer_id: str,
    engine: AsyncEngine,
    nats_js: tuple[NATS, JetStreamContext],
) -> None:
    _, js = nats_js
    session_id, payment_id = unique("sess"), unique("pay")
    order = (
        await stub.CreateOrder(order_request(session_id, customer_id, payment_id), metadata=bearer(service_token))
    ).order
    oid = uuid.UUID(order.order_id)
    event_id = str(uuid.uuid4())
    data = {"payment_id": payment_id, "order_ref": session_id, "amount": {"currency_code": "USD", "amount_minor": 750}}

    await publish(js, "PaymentCaptured", event_id, data)
    await publish(js, "PaymentCaptured", event_id, data)

    async def confirmed() -> bool:
        got = await stub.GetOrder(pb.GetOrderRequest(order_id=order.order_id), metadata=bearer(service_token))
        return got.order.status == order_pb2.ORDER_STATUS_CONFIRMED

    await eventually(confirmed, "the order to be confirmed")
    await eventually(lambda: consumer_drained(js), "both deliveries to be acked")

    confirmed_rows = sa.select(sa.func.count()).where(history.c.order_id == oid, history.c.status == "CONFIRMED")
    assert await scalar(engine, confirmed_rows) == 1
    events = sa.select(sa.func.count()).where(
        outbox.c.aggregate_id == order.order_id, outbox.c.event_type == "OrderConfirmed"
    )
    assert await scalar(engine, events) == 1
    claims = sa.select(sa.func.count()).where(inbox.c.consumer == "order-payments", inbox.c.event_id == event_id)
    assert await scalar(engine, claims) == 1


async def test_a_failed_event_marks_payment_failed(
    stub: OrderServiceStub,
    service_token: str,
    customer_id: str,
    nats_js: tuple[NATS, JetStreamContext],
) -> None:
    _, js = nats_js
    session_id, payment_id = unique("sess"), unique("pay")
    order = (
        await stub.CreateOrder(order_request(session_id, customer_id, payment_id), metadata=bearer(service_token))
    ).order
    await publish(
        js,
        "PaymentFailed",
        str(uuid.uuid4()),
        {"payment_id": payment_id, "order_id": order.order_id, "failure_code": "3ds failed"},
    )

    async def failed() -> bool:
        got = await stub.GetOrder(pb.GetOrderRequest(order_id=order.order_id), metadata=bearer(service_token))
        return got.order.status == order_pb2.ORDER_STATUS_PAYMENT_FAILED

    await eventually(failed, "the order to be marked PAYMENT_FAILED")
    timeline = await stub.GetOrderTimeline(
        pb.GetOrderTimelineRequest(order_id=order.order_id), metadata=bearer(service_token)
    )
    assert "3ds failed" in timeline.events[-1].cause


async def test_events_without_an_order_are_acked_and_ignored(
    order_server: Server, engine: AsyncEngine, nats_js: tuple[NATS, JetStreamContext]
) -> None:
    _, js = nats_js
    event_id = str(uuid.uuid4())
    await publish(
        js, "PaymentCaptured", event_id, {"payment_id": unique("pay"), "order_ref": unique("no-such-session")}
    )
    await js.publish("kassa.payment.PaymentCaptured", b"not json", headers={"Nats-Msg-Id": uuid.uuid4().hex})
    await eventually(lambda: consumer_drained(js), "the unmatched events to be acked")
    assert await scalar(engine, sa.select(sa.func.count()).where(inbox.c.event_id == event_id)) == 0


def payment_data(payment_id: str, session_id: str, status: str, **extra: Any) -> dict[str, Any]:
    """A payload as payment/model/payment.py:event_data writes it, for a 7.50 USD payment."""
    return {
        "payment_id": payment_id,
        "order_ref": session_id,
        "order_id": "",
        "customer_id": "",
        "status": status,
        "amount": {"currency_code": "USD", "amount_minor": 750},
        "captured_minor": 0,
        "refunded_minor": 0,
        "provider": "sandbox",
        "provider_payment_id": "pi_1",
        **extra,
    }


def usd_json(amount: int) -> dict[str, Any]:
    return {"currency_code": "USD", "amount_minor": amount}


async def claimed(engine: AsyncEngine, event_id: str) -> bool:
    stmt = sa.select(sa.func.count()).where(inbox.c.consumer == "order-payments", inbox.c.event_id == event_id)
    return await scalar(engine, stmt) == 1


async def deliver(js: JetStreamContext, engine: AsyncEngine, event_type: str, data: dict[str, Any]) -> str:
    """Publish one event and wait until the consumer has taken it (its inbox claim committed)."""
    event_id = str(uuid.uuid4())
    await publish(js, event_type, event_id, data)
    await eventually(lambda: claimed(engine, event_id), f"{event_type} {event_id} to be consumed")
    return event_id


async def test_a_three_d_secure_payment_walks_forward_and_a_late_event_changes_nothing(
    stub: OrderServiceStub,
    *,
    service_token: str,
    customer_id: str,
    customer_token: str,
    engine: AsyncEngine,
    nats_js: tuple[NATS, JetStreamContext],
) -> None:
    _, js = nats_js
    md = bearer(service_token)
    session_id, payment_id = unique("sess"), unique("pay")
    order = (await stub.CreateOrder(order_request(session_id, customer_id, payment_id), metadata=md)).order
    assert order.payment_status == PaymentStatus.PAYMENT_STATUS_UNSPECIFIED

    async def current() -> order_pb2.Order:
        return (await stub.GetOrder(pb.GetOrderRequest(order_id=order.order_id), metadata=md)).order

    async def timeline() -> list[tuple[int, str]]:
        got = await stub.GetOrderTimeline(pb.GetOrderTimelineRequest(order_id=order.order_id), metadata=md)
        return [(e.status, e.cause) for e in got.events]

    await deliver(js, engine, "PaymentAuthorized", payment_data(payment_id, session_id, "AUTHORIZED"))
    got = await current()
    assert (got.status, got.payment_status) == (
        order_pb2.ORDER_STATUS_PENDING_PAYMENT,
        PaymentStatus.PAYMENT_STATUS_AUTHORIZED,
    )

    captured = payment_data(payment_id, session_id, "CAPTURED", captured_minor=750, captured_amount=usd_json(750))
    await deliver(js, engine, "PaymentCaptured", captured)
    got = await current()
    assert (got.status, got.payment_status) == (order_pb2.ORDER_STATUS_CONFIRMED, PaymentStatus.PAYMENT_STATUS_CAPTURED)

    # A PaymentAuthorized redelivered late (another event id) moves nothing back and writes nothing.
    before = await timeline()
    await deliver(js, engine, "PaymentAuthorized", payment_data(payment_id, session_id, "AUTHORIZED"))
    assert (await current()).payment_status == PaymentStatus.PAYMENT_STATUS_CAPTURED
    assert await timeline() == before

    partial = payment_data(payment_id, session_id, "PARTIALLY_REFUNDED", refund_amount=usd_json(500))
    await deliver(js, engine, "PaymentRefunded", partial)
    assert (await current()).payment_status == PaymentStatus.PAYMENT_STATUS_PARTIALLY_REFUNDED
    rest = payment_data(payment_id, session_id, "REFUNDED", refund_amount=usd_json(250))
    await deliver(js, engine, "PaymentRefunded", rest)

    got = await current()
    assert (got.status, got.payment_status) == (order_pb2.ORDER_STATUS_CONFIRMED, PaymentStatus.PAYMENT_STATUS_REFUNDED)
    listed = await stub.ListOrders(pb.ListOrdersRequest(), metadata=bearer(customer_token))
    assert [(o.order_id, o.payment_status) for o in listed.orders] == [
        (order.order_id, PaymentStatus.PAYMENT_STATUS_REFUNDED)
    ]
    assert await timeline() == [
        (order_pb2.ORDER_STATUS_PENDING_PAYMENT, "order placed at checkout"),
        (order_pb2.ORDER_STATUS_PENDING_PAYMENT, "payment authorized 7.50 USD"),
        (order_pb2.ORDER_STATUS_CONFIRMED, "payment captured 7.50 USD"),
        (order_pb2.ORDER_STATUS_CONFIRMED, "payment refunded 5.00 USD (partial)"),
        (order_pb2.ORDER_STATUS_CONFIRMED, "payment refunded 2.50 USD"),
    ]
    confirmed = sa.select(sa.func.count()).where(
        outbox.c.aggregate_id == order.order_id, outbox.c.event_type == "OrderConfirmed"
    )
    assert await scalar(engine, confirmed) == 1


async def test_a_capture_for_a_cancelled_order_is_recorded_but_never_uncancels_it(
    stub: OrderServiceStub,
    service_token: str,
    customer_id: str,
    engine: AsyncEngine,
    nats_js: tuple[NATS, JetStreamContext],
) -> None:
    _, js = nats_js
    md = bearer(service_token)
    session_id, payment_id = unique("sess"), unique("pay")
    order = (await stub.CreateOrder(order_request(session_id, customer_id, payment_id), metadata=md)).order
    await stub.CancelOrder(pb.CancelOrderRequest(order_id=order.order_id, reason="abandoned"), metadata=md)

    captured = payment_data(payment_id, session_id, "CAPTURED", captured_minor=750, captured_amount=usd_json(750))
    captured["order_id"] = order.order_id
    await deliver(js, engine, "PaymentCaptured", captured)
    got = (await stub.GetOrder(pb.GetOrderRequest(order_id=order.order_id), metadata=md)).order
    assert (got.status, got.payment_status) == (order_pb2.ORDER_STATUS_CANCELLED, PaymentStatus.PAYMENT_STATUS_CAPTURED)

    # Payment refunds it on OrderCancelled; the order learns that too.
    refunded = payment_data(payment_id, session_id, "REFUNDED", refund_amount=usd_json(750))
    await deliver(js, engine, "PaymentRefunded", refunded)
    got = (await stub.GetOrder(pb.GetOrderRequest(order_id=order.order_id), metadata=md)).order
    assert (got.status, got.payment_status) == (order_pb2.ORDER_STATUS_CANCELLED, PaymentStatus.PAYMENT_STATUS_REFUNDED)

    events = await stub.GetOrderTimeline(pb.GetOrderTimelineRequest(order_id=order.order_id), metadata=md)
    assert [(e.status, e.cause) for e in events.events][1:] == [
        (order_pb2.ORDER_STATUS_CANCELLED, "cancelled by operator: abandoned"),
        (order_pb2.ORDER_STATUS_CANCELLED, "payment captured 7.50 USD"),
        (order_pb2.ORDER_STATUS_CANCELLED, "payment refunded 7.50 USD"),
    ]
    for event_type in ("OrderConfirmed", "OrderPaymentFailed"):
        stmt = sa.select(sa.func.count()).where(
            outbox.c.aggregate_id == order.order_id, outbox.c.event_type == event_type
        )
        assert await scalar(engine, stmt) == 0


async def test_a_voided_authorization_shows_on_the_cancelled_order(
    stub: OrderServiceStub,
    service_token: str,
    customer_id: str,
    engine: AsyncEngine,
    nats_js: tuple[NATS, JetStreamContext],
) -> None:
    _, js = nats_js
    md = bearer(service_token)
    session_id, payment_id = unique("sess"), unique("pay")
    order = (await stub.CreateOrder(order_request(session_id, customer_id, payment_id), metadata=md)).order
    await deliver(js, engine, "PaymentAuthorized", payment_data(payment_id, session_id, "AUTHORIZED"))
    await stub.CancelOrder(pb.CancelOrderRequest(order_id=order.order_id), metadata=md)
    await deliver(js, engine, "PaymentVoided", payment_data(payment_id, session_id, "VOIDED"))
    # A capture cannot follow a void: a stray one changes nothing.
    await deliver(js, engine, "PaymentCaptured", payment_data(payment_id, session_id, "CAPTURED", captured_minor=750))

    got = (await stub.GetOrder(pb.GetOrderRequest(order_id=order.order_id), metadata=md)).order
    assert (got.status, got.payment_status) == (order_pb2.ORDER_STATUS_CANCELLED, PaymentStatus.PAYMENT_STATUS_VOIDED)
    events = await stub.GetOrderTimeline(pb.GetOrderTimelineRequest(order_id=order.order_id), metadata=md)
    assert [e.cause for e in events.events][-2:] == ["cancelled by operator", "payment voided"]


async def test_an_event_for_another_payment_changes_nothing(
    stub: OrderServiceStub,
    service_token: str,
    customer_id: str,
    engine: AsyncEngine,
    nats_js: tuple[NATS, JetStreamContext],
) -> None:
    _, js = nats_js
    md = bearer(service_token)
    session_id = unique("sess")
    order = (await stub.CreateOrder(order_request(session_id, customer_id, unique("pay")), metadata=md)).order
    stranger = payment_data(unique("other-pay"), session_id, "CAPTURED", captured_minor=750)
    await deliver(js, engine, "PaymentCaptured", stranger)
    got = (await stub.GetOrder(pb.GetOrderRequest(order_id=order.order_id), metadata=md)).order
    assert (got.status, got.payment_status, got.payment_id) == (
        order_pb2.ORDER_STATUS_PENDING_PAYMENT,
        PaymentStatus.PAYMENT_STATUS_UNSPECIFIED,
        order.payment_id,
    )
    entries = sa.select(sa.func.count()).where(history.c.order_id == uuid.UUID(order.order_id))
    assert await scalar(engine, entries) == 1
