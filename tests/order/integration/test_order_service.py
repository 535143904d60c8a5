"""OrderService over gRPC against real Postgres and NATS JetStream."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import grpc
import nats.errors
import pytest
import sqlalchemy as sa
from helpers import bearer, unique
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.auth import mint_token
from infra.config import Settings
from infra.grpc_errors import error_info
from kassa.common.v1.address_pb2 import Address
from kassa.common.v1.money_pb2 import Money
from kassa.order.v1 import order_pb2
from kassa.order.v1 import order_service_pb2 as pb
from kassa.order.v1.order_service_pb2_grpc import OrderServiceStub
from kassa.payment.v1.payment_pb2 import PaymentStatus
from order.data.tables import history, order_lines, orders, outbox

pytestmark = pytest.mark.integration

S = order_pb2
WAIT_SECONDS = 20.0


def usd(amount: int) -> Money:
    return Money(currency_code="USD", amount_minor=amount)


def create_request(session_id: str, customer_id: str, **overrides: Any) -> pb.CreateOrderRequest:
    """Two lines (2 x 19.99 + 1 x 5.00), a 4.00 coupon, 5.00 shipping, 3.60 tax: 49.58."""
    req = pb.CreateOrderRequest(
        checkout_session_id=session_id,
        customer_id=customer_id,
        email="ada@example.com",
        lines=[
            order_pb2.OrderLine(
                sku="apple", name="Apple", quantity=2, unit_price=usd(1999), line_total=usd(3998), warehouse_id="w1"
            ),
            order_pb2.OrderLine(
                sku="pear", name="Pear", quantity=1, unit_price=usd(500), line_total=usd(500), warehouse_id="w1"
            ),
        ],
        discounts=[order_pb2.OrderDiscount(code="SAVE4", amount=usd(400))],
        totals=order_pb2.OrderTotals(
            subtotal=usd(4498),
            discount_total=usd(400),
            shipping_total=usd(500),
            tax_total=usd(360),
            grand_total=usd(4958),
        ),
        shipping_address=Address(
            name="Ada", line1="1 Main St", city="Springfield", postal_code="12345", country_code="US"
        ),
        shipping_method="standard",
        payment_id=unique("pay"),
        payment_method="tok_visa",
        authorized_amount=usd(4958),
    )
    for name, value in overrides.items():
        if isinstance(value, Money | order_pb2.OrderTotals | Address):
            getattr(req, name).CopyFrom(value)
        else:
            setattr(req, name, value)
    return req


async def create(stub: OrderServiceStub, token: str, customer_id: str, **overrides: Any) -> order_pb2.Order:
    resp = await stub.CreateOrder(create_request(unique("sess"), customer_id, **overrides), metadata=bearer(token))
    assert resp.created
    return resp.order


def field_of(err: grpc.aio.AioRpcError) -> str:
    info = error_info(err)
    assert info is not None and info.domain == "kassa"
    return info.metadata["field"]


async def count(engine: AsyncEngine, stmt: sa.Select[Any]) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(stmt)).scalar_one())


async def outbox_events(engine: AsyncEngine, order_id: str, event_type: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(outbox.c.payload).where(outbox.c.aggregate_id == order_id, outbox.c.event_type == event_type)
        )
        return [r.payload for r in rows]


async def test_create_is_idempotent_on_the_checkout_session(
    stub: OrderServiceStub, service_token: str, customer_id: str, engine: AsyncEngine
) -> None:
    session_id = unique("sess")
    first = await stub.CreateOrder(create_request(session_id, customer_id), metadata=bearer(service_token))
    assert first.created
    order = first.order
    assert order.status == S.ORDER_STATUS_PENDING_PAYMENT
    # Authorized or waiting for 3-D Secure: only a payment event will tell.
    assert order.payment_status == PaymentStatus.PAYMENT_STATUS_UNSPECIFIED
    assert order.totals.grand_total == usd(4958)
    assert [(ln.sku, ln.quantity, ln.line_total.amount_minor) for ln in order.lines] == [
        ("apple", 2, 3998),
        ("pear", 1, 500),
    ]
    assert order.created_at.seconds > 0

    retry = create_request(session_id, customer_id, notes="a retry with different notes")
    second = await stub.CreateOrder(retry, metadata=bearer(service_token))
    assert not second.created
    assert second.order == order

    oid = uuid.UUID(order.order_id)
    assert await count(engine, sa.select(sa.func.count()).where(orders.c.checkout_session_id == session_id)) == 1
    assert await count(engine, sa.select(sa.func.count()).where(order_lines.c.order_id == oid)) == 2
    assert await count(engine, sa.select(sa.func.count()).where(history.c.order_id == oid)) == 1
    created_events = await outbox_events(engine, order.order_id, "OrderCreated")
    assert len(created_events) == 1
    assert created_events[0]["data"]["checkout_session_id"] == session_id


async def test_create_needs_a_privileged_caller(stub: OrderServiceStub, customer_token: str, customer_id: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await stub.CreateOrder(create_request(unique("sess"), customer_id), metadata=bearer(customer_token))
    assert exc_info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_grand_total_that_does_not_add_up_is_refused_and_nothing_written(
    stub: OrderServiceStub, service_token: str, customer_id: str, engine: AsyncEngine
) -> None:
    session_id = unique("sess")
    totals = order_pb2.OrderTotals(
        subtotal=usd(4498), discount_total=usd(400), shipping_total=usd(500), tax_total=usd(360), grand_total=usd(4959)
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await stub.CreateOrder(create_request(session_id, customer_id, totals=totals), metadata=bearer(service_token))
    assert exc_info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_of(exc_info.value) == "totals.grand_total"
    assert await count(engine, sa.select(sa.func.count()).where(orders.c.checkout_session_id == session_id)) == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"checkout_session_id": ""}, "checkout_session_id"),
        ({"customer_id": ""}, "customer_id"),
        ({"shipping_address": Address(name="Ada", line1="1 Main St", city="X", postal_code="1", country_code="usa")},
         "shipping_address.country_code"),
        ({"shipping_method": "teleport"}, "shipping_method"),
    ],
)  # fmt: skip
async def test_invalid_fields_are_named(
    stub: OrderServiceStub, service_token: str, customer_id: str, overrides: dict[str, Any], field: str
) -> None:
    req = create_request(unique("sess"), customer_id)
    for name, value in overrides.items():
        if isinstance(value, Address):
            getattr(req, name).CopyFrom(value)
        else:
            setattr(req, name, value)
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await stub.CreateOrder(req, metadata=bearer(service_token))
    assert exc_info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_of(exc_info.value) == field


async def test_line_fields_are_named(stub: OrderServiceStub, service_token: str, customer_id: str) -> None:
    req = create_request(unique("sess"), customer_id)
    req.lines[1].quantity = 0
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await stub.CreateOrder(req, metadata=bearer(service_token))
    assert field_of(exc_info.value) == "lines[1].quantity"
    req = create_request(unique("sess"), customer_id)
    req.lines[0].unit_price.currency_code = "EUR"
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await stub.CreateOrder(req, metadata=bearer(service_token))
    assert field_of(exc_info.value) == "lines[0].unit_price.currency_code"
    assert error_info(exc_info.value).reason == "CURRENCY_MISMATCH"  # type: ignore[union-attr]
    req = create_request(unique("sess"), customer_id)
    del req.lines[:]
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await stub.CreateOrder(req, metadata=bearer(service_token))
    assert field_of(exc_info.value) == "lines"


async def _await_nats_event(js: JetStreamContext, subject: str, order_id: str) -> dict[str, Any]:
    """The first message on ``subject`` for ``order_id``, within a bounded wait."""
    sub = await js.pull_subscribe(subject, stream="KASSA_ORDER")
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECONDS
        while loop.time() < deadline:
            try:
                msgs = await sub.fetch(50, timeout=1)
            except nats.errors.TimeoutError:
                continue
            for msg in msgs:
                await msg.ack()
                envelope = json.loads(msg.data)
                if envelope["data"]["order_id"] == order_id:
                    envelope["msg_id"] = (msg.headers or {}).get("Nats-Msg-Id")
                    return envelope
    finally:
        await sub.unsubscribe()
    raise AssertionError(f"no {subject} for order {order_id} within {WAIT_SECONDS}s")


async def test_captured_payment_confirms_and_publishes_order_confirmed(
    stub: OrderServiceStub,
    service_token: str,
    customer_id: str,
    engine: AsyncEngine,
    nats_js: tuple[NATS, JetStreamContext],
) -> None:
    order = await create(stub, service_token, customer_id)
    req = pb.RecordPaymentRequest(
        order_id=order.order_id, payment_id=order.payment_id, outcome=pb.PAYMENT_OUTCOME_CAPTURED, cause="captured"
    )
    confirmed = (await stub.RecordPayment(req, metadata=bearer(service_token))).order
    assert confirmed.status == S.ORDER_STATUS_CONFIRMED

    again = (await stub.RecordPayment(req, metadata=bearer(service_token))).order
    assert again.status == S.ORDER_STATUS_CONFIRMED
    assert again.updated_at == confirmed.updated_at

    timeline = await stub.GetOrderTimeline(
        pb.GetOrderTimelineRequest(order_id=order.order_id), metadata=bearer(service_token)
    )
    assert [e.status for e in timeline.events] == [S.ORDER_STATUS_PENDING_PAYMENT, S.ORDER_STATUS_CONFIRMED]
    assert timeline.events[1].cause == "captured"
    assert timeline.events[1].occurred_at.ToDatetime() >= timeline.events[0].occurred_at.ToDatetime()

    _, js = nats_js
    envelope = await _await_nats_event(js, "kassa.order.OrderConfirmed", order.order_id)
    assert envelope["event_type"] == "OrderConfirmed"
    data = envelope["data"]
    assert data["status"] == "CONFIRMED"
    assert data["checkout_session_id"] == order.checkout_session_id
    assert data["customer_id"] == customer_id
    assert data["grand_total"] == {"currency_code": "USD", "amount_minor": 4958}
    assert [(ln["sku"], ln["quantity"]) for ln in data["lines"]] == [("apple", 2), ("pear", 1)]
    assert envelope["msg_id"] == envelope["event_id"]
    assert len(await outbox_events(engine, order.order_id, "OrderConfirmed")) == 1


async def test_conflicting_payment_outcomes_are_refused(
    stub: OrderServiceStub, service_token: str, customer_id: str
) -> None:
    order = await create(stub, service_token, customer_id)
    md = bearer(service_token)
    failed = await stub.RecordPayment(
        pb.RecordPaymentRequest(order_id=order.order_id, outcome=pb.PAYMENT_OUTCOME_FAILED, cause="declined"),
        metadata=md,
    )
    assert failed.order.status == S.ORDER_STATUS_PAYMENT_FAILED
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await stub.RecordPayment(
            pb.RecordPaymentRequest(order_id=order.order_id, outcome=pb.PAYMENT_OUTCOME_CAPTURED), metadata=md
        )
    assert exc_info.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    other = await create(stub, service_token, customer_id)
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await stub.RecordPayment(
            pb.RecordPaymentRequest(
                order_id=other.order_id, payment_id=unique("another-pay"), outcome=pb.PAYMENT_OUTCOME_CAPTURED
            ),
            metadata=md,
        )
    assert exc_info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    unchanged = await stub.GetOrder(pb.GetOrderRequest(order_id=other.order_id), metadata=md)
    assert unchanged.order.status == S.ORDER_STATUS_PENDING_PAYMENT

    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await stub.RecordPayment(pb.RecordPaymentRequest(order_id=other.order_id), metadata=md)
    assert field_of(exc_info.value) == "outcome"


async def test_cash_on_delivery_then_fulfilment_in_order_only(
    stub: OrderServiceStub, service_token: str, customer_id: str, engine: AsyncEngine
) -> None:
    order = await create(stub, service_token, customer_id, payment_method="cod", payment_id="")
    assert order.payment_status == PaymentStatus.PAYMENT_STATUS_CASH_ON_DELIVERY
    md = bearer(service_token)
    cod = await stub.RecordPayment(
        pb.RecordPaymentRequest(order_id=order.order_id, outcome=pb.PAYMENT_OUTCOME_CASH_ON_DELIVERY), metadata=md
    )
    assert cod.order.status == S.ORDER_STATUS_AWAITING_SHIPMENT
    confirmed_events = await outbox_events(engine, order.order_id, "OrderConfirmed")
    assert [e["data"]["status"] for e in confirmed_events] == ["AWAITING_SHIPMENT"]

    async def fulfil(status: int, tracking: str = "", carrier: str = "") -> order_pb2.Order:
        req = pb.UpdateFulfillmentRequest(
            order_id=order.order_id,
            status=status,  # type: ignore[arg-type]
            tracking_number=tracking,
            carrier=carrier or ("ups" if tracking else ""),
        )
        return (await stub.UpdateFulfillment(req, metadata=md)).order

    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await fulfil(S.ORDER_STATUS_SHIPPED, "TRACK-1")
    assert exc_info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await fulfil(S.ORDER_STATUS_SHIPPED)
    assert field_of(exc_info.value) == "tracking_number"
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await fulfil(S.ORDER_STATUS_SHIPPED, "TRACK-1", carrier=" ")
    assert field_of(exc_info.value) == "carrier"
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await fulfil(S.ORDER_STATUS_PACKED, "TRACK-1")
    assert field_of(exc_info.value) == "tracking_number"
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await fulfil(S.ORDER_STATUS_CANCELLED)
    assert field_of(exc_info.value) == "status"

    assert (await fulfil(S.ORDER_STATUS_PACKED)).status == S.ORDER_STATUS_PACKED
    assert (await fulfil(S.ORDER_STATUS_PACKED)).status == S.ORDER_STATUS_PACKED
    assert (await fulfil(S.ORDER_STATUS_PACKED)).tracking_number == ""
    shipped_order = await fulfil(S.ORDER_STATUS_SHIPPED, "TRACK-1")
    assert (shipped_order.status, shipped_order.tracking_number) == (S.ORDER_STATUS_SHIPPED, "TRACK-1")
    assert shipped_order.carrier == "ups"
    delivered = await fulfil(S.ORDER_STATUS_DELIVERED)
    assert (delivered.status, delivered.tracking_number) == (S.ORDER_STATUS_DELIVERED, "TRACK-1")
    got = (await stub.GetOrder(pb.GetOrderRequest(order_id=order.order_id), metadata=md)).order
    assert got.tracking_number == "TRACK-1"
    assert got.payment_status == PaymentStatus.PAYMENT_STATUS_CASH_ON_DELIVERY
    shipped = await outbox_events(engine, order.order_id, "OrderShipped")
    assert [(e["data"]["tracking_number"], e["data"]["carrier"]) for e in shipped] == [("TRACK-1", "ups")]
    timeline = (await stub.GetOrderTimeline(pb.GetOrderTimelineRequest(order_id=order.order_id), metadata=md)).events
    assert [e.status for e in timeline][-3:] == [
        S.ORDER_STATUS_PACKED,
        S.ORDER_STATUS_SHIPPED,
        S.ORDER_STATUS_DELIVERED,
    ]
    assert "ups" in timeline[-2].cause and "TRACK-1" in timeline[-2].cause

    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await stub.CancelOrder(pb.CancelOrderRequest(order_id=order.order_id), metadata=md)
    assert exc_info.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    timeline = await stub.GetOrderTimeline(pb.GetOrderTimelineRequest(order_id=order.order_id), metadata=md)
    assert [e.status for e in timeline.events] == [
        S.ORDER_STATUS_PENDING_PAYMENT,
        S.ORDER_STATUS_AWAITING_SHIPMENT,
        S.ORDER_STATUS_PACKED,
        S.ORDER_STATUS_SHIPPED,
        S.ORDER_STATUS_DELIVERED,
    ]


async def test_other_customers_get_not_found(
    stub: OrderServiceStub, service_token: str, customer_id: str, customer_token: str, settings: Settings
) -> None:
    order = await create(stub, service_token, customer_id)
    intruder = bearer(mint_token(settings.jwt_secret, unique("intruder")))
    calls = [
        stub.GetOrder(pb.GetOrderRequest(order_id=order.order_id), metadata=intruder),
        stub.GetOrderTimeline(pb.GetOrderTimelineRequest(order_id=order.order_id), metadata=intruder),
        stub.CancelOrder(pb.CancelOrderRequest(order_id=order.order_id), metadata=intruder),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as exc_info:
            await call
        assert exc_info.value.code() == grpc.StatusCode.NOT_FOUND
    own = await stub.GetOrder(pb.GetOrderRequest(order_id=order.order_id), metadata=bearer(customer_token))
    assert own.order.status == S.ORDER_STATUS_PENDING_PAYMENT

    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await stub.GetOrder(pb.GetOrderRequest(order_id=str(uuid.uuid4())), metadata=bearer(customer_token))
    assert exc_info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await stub.GetOrder(pb.GetOrderRequest(order_id="not-a-uuid"), metadata=bearer(customer_token))
    assert field_of(exc_info.value) == "order_id"
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await stub.GetOrder(pb.GetOrderRequest(order_id=order.order_id))
    assert exc_info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_owner_cancels_once_and_the_event_carries_compensation_ids(
    stub: OrderServiceStub, service_token: str, customer_id: str, customer_token: str, engine: AsyncEngine
) -> None:
    order = await create(stub, service_token, customer_id)
    req = pb.CancelOrderRequest(order_id=order.order_id, reason="changed my mind")
    cancelled = (await stub.CancelOrder(req, metadata=bearer(customer_token))).order
    assert cancelled.status == S.ORDER_STATUS_CANCELLED
    again = (await stub.CancelOrder(req, metadata=bearer(customer_token))).order
    assert again.status == S.ORDER_STATUS_CANCELLED

    timeline = await stub.GetOrderTimeline(
        pb.GetOrderTimelineRequest(order_id=order.order_id), metadata=bearer(customer_token)
    )
    assert [e.status for e in timeline.events] == [S.ORDER_STATUS_PENDING_PAYMENT, S.ORDER_STATUS_CANCELLED]
    assert "changed my mind" in timeline.events[1].cause
    events = await outbox_events(engine, order.order_id, "OrderCancelled")
    assert len(events) == 1
    assert events[0]["data"]["payment_id"] == order.payment_id
    assert events[0]["data"]["checkout_session_id"] == order.checkout_session_id

    # A payment recorded after the cancellation is refused: the order stays cancelled.
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await stub.RecordPayment(
            pb.RecordPaymentRequest(
                order_id=order.order_id, payment_id=order.payment_id, outcome=pb.PAYMENT_OUTCOME_CAPTURED
            ),
            metadata=bearer(service_token),
        )
    assert exc_info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(exc_info.value)
    assert info is not None and info.reason == "ORDER_STATUS_CONFLICT"
    assert info.metadata["status"] == "CANCELLED"
    still = await stub.GetOrder(pb.GetOrderRequest(order_id=order.order_id), metadata=bearer(customer_token))
    assert still.order.status == S.ORDER_STATUS_CANCELLED


async def test_list_orders_pages_newest_first(
    stub: OrderServiceStub, service_token: str, customer_id: str, customer_token: str, settings: Settings
) -> None:
    created = [(await create(stub, service_token, customer_id)).order_id for _ in range(5)]
    md = bearer(customer_token)
    seen: list[str] = []
    token = ""
    sizes = []
    while True:
        page = await stub.ListOrders(pb.ListOrdersRequest(page_size=2, page_token=token), metadata=md)
        sizes.append(len(page.orders))
        seen.extend(o.order_id for o in page.orders)
        assert all(o.customer_id == customer_id for o in page.orders)
        token = page.next_page_token
        if not token:
            break
    assert sizes == [2, 2, 1]
    assert seen == list(reversed(created))

    default = await stub.ListOrders(pb.ListOrdersRequest(), metadata=md)
    assert [o.order_id for o in default.orders] == list(reversed(created))
    assert {o.payment_status for o in default.orders} == {PaymentStatus.PAYMENT_STATUS_UNSPECIFIED}
    assert default.next_page_token == ""

    stranger = bearer(mint_token(settings.jwt_secret, unique("stranger")))
    assert len((await stub.ListOrders(pb.ListOrdersRequest(), metadata=stranger)).orders) == 0

    for request, field in [
        (pb.ListOrdersRequest(page_size=101), "page_size"),
        (pb.ListOrdersRequest(page_size=-1), "page_size"),
        (pb.ListOrdersRequest(page_token="not-a-token"), "page_token"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as exc_info:
            await stub.ListOrders(request, metadata=md)
        assert exc_info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_of(exc_info.value) == field


async def test_an_admin_lists_any_customers_orders_and_a_customer_only_their_own(
    *,
    stub: OrderServiceStub,
    service_token: str,
    admin_token: str,
    customer_id: str,
    customer_token: str,
    settings: Settings,
) -> None:
    created = [(await create(stub, service_token, customer_id)).order_id for _ in range(3)]
    other = unique("other")
    await create(stub, service_token, other)

    first = await stub.ListOrders(
        pb.ListOrdersRequest(customer_id=customer_id, page_size=2), metadata=bearer(admin_token)
    )
    rest = await stub.ListOrders(
        pb.ListOrdersRequest(customer_id=customer_id, page_token=first.next_page_token), metadata=bearer(admin_token)
    )
    assert [o.order_id for o in [*first.orders, *rest.orders]] == list(reversed(created))
    assert {o.customer_id for o in [*first.orders, *rest.orders]} == {customer_id}
    assert rest.next_page_token == ""
    # Without customer_id an admin's list is the admin's own: none.
    assert len((await stub.ListOrders(pb.ListOrdersRequest(), metadata=bearer(admin_token))).orders) == 0

    # A customer may name themselves, and nobody else.
    own = await stub.ListOrders(pb.ListOrdersRequest(customer_id=customer_id), metadata=bearer(customer_token))
    assert [o.order_id for o in own.orders] == list(reversed(created))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ListOrders(pb.ListOrdersRequest(customer_id=other), metadata=bearer(customer_token))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    stranger = bearer(mint_token(settings.jwt_secret, unique("stranger")))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ListOrders(pb.ListOrdersRequest(customer_id=customer_id), metadata=stranger)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await stub.ListOrders(pb.ListOrdersRequest(customer_id="a\x00b"), metadata=bearer(admin_token))
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_of(invalid.value) == "customer_id"


async def _fulfil(stub: OrderServiceStub, token: str, order_id: str, *statuses: int) -> order_pb2.Order:
    order = None
    for status in statuses:
        shipped = status == S.ORDER_STATUS_SHIPPED
        req = pb.UpdateFulfillmentRequest(
            order_id=order_id,
            status=status,  # type: ignore[arg-type]
            tracking_number="1Z999" if shipped else "",
            carrier="ups" if shipped else "",
        )
        order = (await stub.UpdateFulfillment(req, metadata=bearer(token))).order
    assert order is not None
    return order


async def _confirmed(stub: OrderServiceStub, token: str, customer_id: str) -> order_pb2.Order:
    order = await create(stub, token, customer_id)
    req = pb.RecordPaymentRequest(
        order_id=order.order_id, payment_id=order.payment_id, outcome=pb.PAYMENT_OUTCOME_CAPTURED
    )
    return (await stub.RecordPayment(req, metadata=bearer(token))).order


async def test_a_customer_cannot_cancel_a_packed_order_but_an_admin_can(
    stub: OrderServiceStub,
    admin_token: str,
    customer_id: str,
    customer_token: str,
    engine: AsyncEngine,
) -> None:
    order = await _confirmed(stub, admin_token, customer_id)
    packed = await _fulfil(stub, admin_token, order.order_id, S.ORDER_STATUS_PACKED)
    assert packed.status == S.ORDER_STATUS_PACKED

    req = pb.CancelOrderRequest(order_id=order.order_id, reason="too slow")
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await stub.CancelOrder(req, metadata=bearer(customer_token))
    assert exc_info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(exc_info.value)
    assert info is not None and info.reason == "ORDER_STATUS_CONFLICT"
    assert info.metadata["status"] == "PACKED"
    assert await outbox_events(engine, order.order_id, "OrderCancelled") == []

    cancelled = (await stub.CancelOrder(req, metadata=bearer(admin_token))).order
    assert cancelled.status == S.ORDER_STATUS_CANCELLED
    # Idempotent for both: the cancelled order comes back unchanged, no second event.
    for token in (admin_token, customer_token):
        again = (await stub.CancelOrder(req, metadata=bearer(token))).order
        assert again.status == S.ORDER_STATUS_CANCELLED and again.updated_at == cancelled.updated_at
    events = await outbox_events(engine, order.order_id, "OrderCancelled")
    assert len(events) == 1
    assert events[0]["data"]["cause"] == "cancelled by operator: too slow"


@pytest.mark.parametrize("status", [S.ORDER_STATUS_CONFIRMED, S.ORDER_STATUS_AWAITING_SHIPMENT])
async def test_a_customer_cancels_a_paid_order_and_the_event_carries_what_compensation_needs(
    stub: OrderServiceStub,
    *,
    service_token: str,
    customer_id: str,
    customer_token: str,
    engine: AsyncEngine,
    status: int,
) -> None:
    md = bearer(service_token)
    if status == S.ORDER_STATUS_CONFIRMED:
        order = await _confirmed(stub, service_token, customer_id)
    else:
        order = await create(stub, service_token, customer_id, payment_method="cod")
        req = pb.RecordPaymentRequest(order_id=order.order_id, outcome=pb.PAYMENT_OUTCOME_CASH_ON_DELIVERY)
        order = (await stub.RecordPayment(req, metadata=md)).order
    assert order.status == status

    cancelled = (
        await stub.CancelOrder(pb.CancelOrderRequest(order_id=order.order_id), metadata=bearer(customer_token))
    ).order
    assert cancelled.status == S.ORDER_STATUS_CANCELLED

    [event] = await outbox_events(engine, order.order_id, "OrderCancelled")
    data = event["data"]
    assert data["order_id"] == order.order_id
    assert data["checkout_session_id"] == order.checkout_session_id
    assert data["payment_id"] == order.payment_id != ""
    assert data["payment_method"] == order.payment_method
    assert data["status"] == "CANCELLED"
    assert data["grand_total"] == {"currency_code": "USD", "amount_minor": 4958}
    assert [(ln["sku"], ln["quantity"], ln["warehouse_id"]) for ln in data["lines"]] == [
        ("apple", 2, "w1"),
        ("pear", 1, "w1"),
    ]


async def test_nobody_cancels_a_shipped_order(
    stub: OrderServiceStub, service_token: str, admin_token: str, customer_id: str, customer_token: str
) -> None:
    order = await _confirmed(stub, service_token, customer_id)
    await _fulfil(stub, admin_token, order.order_id, S.ORDER_STATUS_PACKED, S.ORDER_STATUS_SHIPPED)
    for token in (customer_token, admin_token):
        with pytest.raises(grpc.aio.AioRpcError) as exc_info:
            await stub.CancelOrder(pb.CancelOrderRequest(order_id=order.order_id), metadata=bearer(token))
        assert exc_info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        info = error_info(exc_info.value)
        assert info is not None and info.reason == "ORDER_STATUS_CONFLICT"
        assert info.metadata["status"] == "SHIPPED"


async def test_authorized_amount_is_required_and_in_the_order_currency(
    stub: OrderServiceStub, service_token: str, customer_id: str, engine: AsyncEngine
) -> None:
    session_id = unique("sess")
    missing = create_request(session_id, customer_id)
    missing.ClearField("authorized_amount")
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await stub.CreateOrder(missing, metadata=bearer(service_token))
    assert exc_info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_of(exc_info.value) == "authorized_amount"

    euros = create_request(session_id, customer_id, authorized_amount=Money(currency_code="EUR", amount_minor=4958))
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await stub.CreateOrder(euros, metadata=bearer(service_token))
    assert exc_info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_of(exc_info.value) == "authorized_amount.currency_code"
    assert await count(engine, sa.select(sa.func.count()).where(orders.c.checkout_session_id == session_id)) == 0


async def test_an_authorization_that_differs_from_the_recomputed_total_is_refused_and_nothing_written(
    stub: OrderServiceStub, service_token: str, customer_id: str, engine: AsyncEngine
) -> None:
    session_id = unique("sess")
    req = create_request(session_id, customer_id, authorized_amount=usd(4957))
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await stub.CreateOrder(req, metadata=bearer(service_token))
    assert exc_info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(exc_info.value)
    assert info is not None and info.reason == "PAYMENT_AMOUNT_MISMATCH"
    assert (info.metadata["authorized_minor"], info.metadata["grand_total_minor"]) == ("4957", "4958")
    assert await count(engine, sa.select(sa.func.count()).where(orders.c.checkout_session_id == session_id)) == 0
    events_for_session = sa.select(sa.func.count()).where(
        outbox.c.payload["data"]["checkout_session_id"].astext == session_id
    )
    assert await count(engine, events_for_session) == 0

    # The same session with the right amount is then placed normally.
    ok = await stub.CreateOrder(create_request(session_id, customer_id), metadata=bearer(service_token))
    assert ok.created and ok.order.totals.grand_total == usd(4958)


async def test_a_zero_total_order_needs_no_payment_and_confirms(
    stub: OrderServiceStub, service_token: str, customer_id: str, engine: AsyncEngine
) -> None:
    """A 100% coupon and free shipping: nothing authorized, no payment id, confirmed by RecordPayment."""
    free = order_pb2.OrderTotals(
        subtotal=usd(4498), discount_total=usd(4498), shipping_total=usd(0), tax_total=usd(0), grand_total=usd(0)
    )
    req = create_request(
        unique("sess"), customer_id, totals=free, payment_id="", payment_method="", authorized_amount=usd(0)
    )
    req.discounts[0].amount.amount_minor = 4498
    order = (await stub.CreateOrder(req, metadata=bearer(service_token))).order
    assert order.status == S.ORDER_STATUS_PENDING_PAYMENT
    assert order.totals.grand_total == usd(0) and order.payment_id == ""

    record = pb.RecordPaymentRequest(order_id=order.order_id, outcome=pb.PAYMENT_OUTCOME_CAPTURED, cause="nothing due")
    confirmed = (await stub.RecordPayment(record, metadata=bearer(service_token))).order
    assert confirmed.status == S.ORDER_STATUS_CONFIRMED
    [event] = await outbox_events(engine, order.order_id, "OrderConfirmed")
    assert event["data"]["grand_total"] == {"currency_code": "USD", "amount_minor": 0}
    assert event["data"]["payment_id"] == ""


async def test_control_characters_in_free_text_are_refused_by_name_and_nothing_changes(
    stub: OrderServiceStub, service_token: str, customer_id: str, customer_token: str, admin_token: str
) -> None:
    """A NUL reached Postgres (INTERNAL) from a cancel reason, a payment cause or a tracking number."""
    order = await create(stub, service_token, customer_id, payment_method="cod", payment_id="")
    oid, cod = order.order_id, pb.PAYMENT_OUTCOME_CASH_ON_DELIVERY
    refusals = [
        (stub.CancelOrder(pb.CancelOrderRequest(order_id=oid, reason="why\x00"), metadata=bearer(customer_token)),
         "reason"),
        (stub.RecordPayment(pb.RecordPaymentRequest(order_id=oid, outcome=cod, cause="cod\x00"),
                            metadata=bearer(service_token)), "cause"),
        (stub.RecordPayment(pb.RecordPaymentRequest(order_id=oid, outcome=cod, payment_id="pay\x1b"),
                            metadata=bearer(service_token)), "payment_id"),
        (stub.UpdateFulfillment(pb.UpdateFulfillmentRequest(order_id=oid, status=S.ORDER_STATUS_PACKED,
                                                            tracking_number="1Z\x00"), metadata=bearer(admin_token)),
         "tracking_number"),
    ]  # fmt: skip
    for call, field in refusals:
        with pytest.raises(grpc.aio.AioRpcError) as exc_info:
            await call
        assert exc_info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, exc_info.value.details()
        assert field_of(exc_info.value) == field
    got = (await stub.GetOrder(pb.GetOrderRequest(order_id=order.order_id), metadata=bearer(customer_token))).order
    assert (got.status, got.tracking_number) == (order.status, "")


async def test_an_authorized_payment_confirms_the_order_holding_it_for_capture_on_shipment(
    stub: OrderServiceStub, service_token: str, customer_id: str, engine: AsyncEngine
) -> None:
    order = await create(stub, service_token, customer_id)
    req = pb.RecordPaymentRequest(
        order_id=order.order_id, payment_id=order.payment_id, outcome=pb.PAYMENT_OUTCOME_AUTHORIZED
    )
    confirmed = (await stub.RecordPayment(req, metadata=bearer(service_token))).order
    assert confirmed.status == S.ORDER_STATUS_CONFIRMED
    assert confirmed.payment_status == PaymentStatus.PAYMENT_STATUS_AUTHORIZED
    again = (await stub.RecordPayment(req, metadata=bearer(service_token))).order
    assert (again.status, again.payment_status) == (confirmed.status, confirmed.payment_status)
    assert len(await outbox_events(engine, order.order_id, "OrderConfirmed")) == 1
