"""The example fulfilment worker (examples/fulfillment_worker.py) against the real order service."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import bearer, unique

from examples.fulfillment_worker import CARRIER, FulfillmentWorker, tracking_number_for
from infra.channels import ServiceCredentials
from infra.config import Settings
from infra.consumer import Event
from kassa.common.v1.address_pb2 import Address
from kassa.common.v1.money_pb2 import Money
from kassa.order.v1 import order_pb2
from kassa.order.v1 import order_service_pb2 as pb
from kassa.order.v1.order_service_pb2_grpc import OrderServiceStub

pytestmark = pytest.mark.integration


def usd(amount: int) -> Money:
    return Money(currency_code="USD", amount_minor=amount)


async def confirmed(orders: OrderServiceStub, token: str) -> order_pb2.Order:
    req = pb.CreateOrderRequest(
        checkout_session_id=unique("sess"),
        customer_id=unique("cust"),
        email="ada@example.com",
        lines=[order_pb2.OrderLine(sku="A", name="A", quantity=1, unit_price=usd(500), line_total=usd(500))],
        totals=order_pb2.OrderTotals(subtotal=usd(500), discount_total=usd(0), shipping_total=usd(0),
                                     tax_total=usd(0), grand_total=usd(500)),
        shipping_address=Address(name="Ada", line1="1 Main St", city="Newark", postal_code="07102", country_code="US"),
        shipping_method="standard",
        payment_id=unique("pay"),
        payment_method="tok_visa",
        authorized_amount=usd(500),
    )  # fmt: skip
    order = (await orders.CreateOrder(req, metadata=bearer(token))).order
    paid = pb.RecordPaymentRequest(
        order_id=order.order_id, payment_id=order.payment_id, outcome=pb.PAYMENT_OUTCOME_CAPTURED
    )
    return (await orders.RecordPayment(paid, metadata=bearer(token))).order


def event(order_id: str) -> Event:
    data: dict[str, Any] = {"order_id": order_id, "status": "CONFIRMED"}
    return Event(unique("evt"), "OrderConfirmed", order_id, data)


async def test_the_worker_packs_and_ships_once_however_often_the_event_comes(
    orders: OrderServiceStub, service_token: str, settings: Settings
) -> None:
    worker = FulfillmentWorker(orders, ServiceCredentials(settings.service_secret, "fulfillment"))
    order = await confirmed(orders, service_token)
    assert await worker.handle(event(order.order_id)) == f"order {order.order_id} shipped"
    # Redelivered: every step is a no-op the second time (same tracking number), still shipped once.
    assert "needs nothing (ORDER_STATUS_SHIPPED)" in await worker.handle(event(order.order_id))
    got = (await orders.GetOrder(pb.GetOrderRequest(order_id=order.order_id), metadata=bearer(service_token))).order
    assert (got.status, got.carrier, got.tracking_number) == (
        order_pb2.ORDER_STATUS_SHIPPED,
        CARRIER,
        tracking_number_for(order.order_id),
    )
    timeline = (
        await orders.GetOrderTimeline(
            pb.GetOrderTimelineRequest(order_id=order.order_id), metadata=bearer(service_token)
        )
    ).events
    assert [e.status for e in timeline].count(order_pb2.ORDER_STATUS_SHIPPED) == 1


async def test_the_worker_skips_an_order_cancelled_before_it_got_to_it(
    orders: OrderServiceStub, service_token: str, settings: Settings
) -> None:
    worker = FulfillmentWorker(orders, ServiceCredentials(settings.service_secret, "fulfillment"))
    order = await confirmed(orders, service_token)
    await orders.CancelOrder(pb.CancelOrderRequest(order_id=order.order_id), metadata=bearer(service_token))
    assert "needs nothing (ORDER_STATUS_CANCELLED)" in await worker.handle(event(order.order_id))
