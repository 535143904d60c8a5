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
        shipping_address=Address(name="Ada", line1="1 Main St", city="Springfield", country_code="US"),
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
