"""The notification service against real Postgres, NATS JetStream, the order service and an SMTP sink.

An order event reaches the customer's mailbox exactly once (the sink keeps every message it gets, so a second
send would show); a redelivered event sends nothing more; an undeliverable address ends in the dead letters;
nothing stored or listed holds the address in plain text.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from helpers import bearer, unique
from nats.js.api import ConsumerInfo

from devstack.smtp_sink import MailboxMessage, read_mailbox
from infra.config import Settings
from infra.db import create_engine
from infra.events import connect
from infra.grpc_errors import error_info
from kassa.common.v1.address_pb2 import Address
from kassa.common.v1.delivery_pb2 import DeliveryWindow
from kassa.common.v1.money_pb2 import Money
from kassa.notification.v1 import notification_service_pb2 as npb
from kassa.notification.v1.notification_service_pb2_grpc import NotificationServiceStub
from kassa.order.v1 import order_pb2
from kassa.order.v1 import order_service_pb2 as pb
from kassa.order.v1.order_service_pb2_grpc import OrderServiceStub
from notification.biz.notify import CONSUMER
from notification.data.tables import messages

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("notification_server")]

WAIT = 30.0


def eur(amount: int) -> Money:
    return Money(currency_code="EUR", amount_minor=amount)


async def place(orders: OrderServiceStub, token: str, email: str, **extra: Any) -> order_pb2.Order:
    """A confirmed EUR order: 2 x 1,234.50 + 1 x 5.00, 4.90 shipping, 10.00 tax: 2,488.90."""
    req = pb.CreateOrderRequest(
        checkout_session_id=unique("sess"),
        customer_id=unique("cust"),
        email=email,
        lines=[
            order_pb2.OrderLine(sku="KB-1", name="Keyboard", quantity=2, unit_price=eur(123450),
                                line_total=eur(246900), warehouse_id="w1"),
            order_pb2.OrderLine(sku="MS-1", name="Mouse <Pro>", quantity=1, unit_price=eur(500),
                                line_total=eur(500), warehouse_id="w1"),
        ],
        totals=order_pb2.OrderTotals(subtotal=eur(247400), discount_total=eur(0), shipping_total=eur(490),
                                     tax_total=eur(1000), grand_total=eur(248890)),
        shipping_address=Address(name="Ada Lovelace", line1="1 Main St", city="Berlin", postal_code="10115",
                                 country_code="DE"),
        shipping_method="standard",
        payment_id=unique("pay"),
        payment_method="tok_visa",
        authorized_amount=eur(248890),
        delivery_window=DeliveryWindow(min_business_days=2, max_business_days=4),
        **extra,
    )  # fmt: skip
    order = (await orders.CreateOrder(req, metadata=bearer(token))).order
    paid = pb.RecordPaymentRequest(
        order_id=order.order_id, payment_id=order.payment_id, outcome=pb.PAYMENT_OUTCOME_CAPTURED
    )
    return (await orders.RecordPayment(paid, metadata=bearer(token))).order


async def mail_for(mail_dir: Any, order_id: str, count: int = 1) -> list[MailboxMessage]:
    """The sink's messages about ``order_id``, once there are at least ``count``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        found = [m for m in read_mailbox(mail_dir) if order_id in m.body()]
        if len(found) >= count or loop.time() > deadline:
            return found
        await asyncio.sleep(0.2)


async def drained(settings: Settings) -> ConsumerInfo:
    """Wait until the notification consumer has nothing pending or unacknowledged."""
    nc, js = await connect(str(settings.nats_url), "notification-tests")
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while True:
            info = await js.consumer_info("KASSA_ORDER", CONSUMER)
            if (info.num_pending == 0 and info.num_ack_pending == 0) or loop.time() > deadline:
                return info
            await asyncio.sleep(0.2)
    finally:
        await nc.close()


async def test_a_confirmed_order_sends_one_confirmation_with_its_total_and_window(
    orders: OrderServiceStub, service_token: str, sink: Any, settings: Settings
) -> None:
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    order = await place(orders, service_token, email)
    assert order.status == order_pb2.ORDER_STATUS_CONFIRMED
    [mail] = await mail_for(sink.mail_dir, order.order_id)
    assert mail.to == email
    assert mail.subject == f"Your Kassa order {order.order_id[:8].upper()} is confirmed"
    text, html = mail.body("plain"), mail.body("html")
    assert "€2,488.90" in text and "€2,488.90" in html
    assert "€1,234.50 each" in text and "€2,469.00" in text
    assert "Mouse &lt;Pro&gt;" in html and "<Pro>" not in html  # autoescaped
    earliest = order.delivery_window.earliest_date
    assert earliest and "Estimated delivery:" in text
    assert mail.message_id.endswith("@notification.kassa>")

    # The stored row holds the address only encrypted.
    engine = create_engine(str(settings.database_url), pool_size=1)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(sa.select(messages).where(messages.c.order_id == order.order_id))).one()
    finally:
        await engine.dispose()
    assert (
        row.status == "SENT"
        and row.recipient.startswith("pii1:")
        and email not in json.dumps(row._asdict(), default=str)
    )


async def test_a_redelivered_event_sends_nothing_more(
    orders: OrderServiceStub, service_token: str, sink: Any, settings: Settings
) -> None:
    order = await place(orders, service_token, f"redeliver-{uuid.uuid4().hex[:8]}@example.com")
    [first] = await mail_for(sink.mail_dir, order.order_id)
    await drained(settings)

    # The same OrderConfirmed again, as JetStream would redeliver it (a new Nats-Msg-Id gets it past the
    # broker's duplicate window, so only the consumer's inbox can stop it).
    nc, js = await connect(str(settings.nats_url), "notification-tests")
    try:
        sub = await js.subscribe("kassa.order.OrderConfirmed", ordered_consumer=True)
        envelope = None
        while envelope is None:
            msg = await sub.next_msg(timeout=WAIT)
            candidate = json.loads(msg.data)
            if candidate["aggregate_id"] == order.order_id:
                envelope = candidate
        await sub.unsubscribe()
        await js.publish("kassa.order.OrderConfirmed", json.dumps(envelope).encode(),
                         headers={"Nats-Msg-Id": str(uuid.uuid4())})  # fmt: skip
    finally:
        await nc.close()
    info = await drained(settings)
    assert info.num_pending == 0
    # The consumer has handled the copy (nothing pending or unacknowledged): a second send would be in the sink.
    again = [m for m in read_mailbox(sink.mail_dir) if order.order_id in m.body()]
    assert [m.key for m in again] == [first.key]


async def test_shipping_with_a_tracking_number_sends_the_shipment_email(
    orders: OrderServiceStub, service_token: str, admin_token: str, sink: Any
) -> None:
    order = await place(orders, service_token, f"ship-{uuid.uuid4().hex[:8]}@example.com")
    await mail_for(sink.mail_dir, order.order_id)
    for status, tracking, carrier in (
        (order_pb2.ORDER_STATUS_PACKED, "", ""),
        (order_pb2.ORDER_STATUS_SHIPPED, "1Z999AA10123456784", "UPS"),
        (order_pb2.ORDER_STATUS_DELIVERED, "", ""),
    ):
        req = pb.UpdateFulfillmentRequest(
            order_id=order.order_id, status=status, tracking_number=tracking, carrier=carrier
        )
        await orders.UpdateFulfillment(req, metadata=bearer(admin_token))
    sent = await mail_for(sink.mail_dir, order.order_id, count=3)
    subjects = [m.subject for m in sent]
    ref = order.order_id[:8].upper()
    assert subjects == [
        f"Your Kassa order {ref} is confirmed",
        f"Your Kassa order {ref} has shipped",
        f"Your Kassa order {ref} was delivered",
    ]
    shipped = sent[1].body()
    assert "Tracking number: 1Z999AA10123456784" in shipped and "with UPS" in shipped


async def test_an_undeliverable_address_is_a_dead_letter_listed_masked(
    orders: OrderServiceStub,
    service_token: str,
    admin_token: str,
    notifications: NotificationServiceStub,
    sink: Any,
) -> None:
    email = f"bounce-{uuid.uuid4().hex[:8]}@example.com"
    order = await place(orders, service_token, email)

    async def dead() -> list[npb.Message]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while True:
            reply = await notifications.ListDeadLetters(
                npb.ListDeadLettersRequest(page_size=500), metadata=bearer(admin_token)
            )
            found = [m for m in reply.messages if m.order_id == order.order_id]
            if found or loop.time() > deadline:
                return found

    [letter] = await dead()
    assert letter.status == npb.MESSAGE_STATUS_DEAD and letter.kind == "confirmation"
    assert letter.recipient == "b***@example.com" and "550" in letter.last_error
    assert email not in str(letter)
    assert [m for m in read_mailbox(sink.mail_dir) if order.order_id in m.body()] == []
    listed = await notifications.ListMessages(
        npb.ListMessagesRequest(order_id=order.order_id), metadata=bearer(admin_token)
    )
    assert [m.status for m in listed.messages] == [npb.MESSAGE_STATUS_DEAD]


async def test_the_listings_are_for_admins_and_check_their_input(
    notifications: NotificationServiceStub, admin_token: str, customer_token: str, service_token: str
) -> None:
    for token in (customer_token, service_token):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await notifications.ListDeadLetters(npb.ListDeadLettersRequest(), metadata=bearer(token))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await notifications.ListMessages(npb.ListMessagesRequest(page_size=-1), metadata=bearer(admin_token))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(bad.value)
    assert info is not None and info.metadata["field"] == "page_size"


async def test_a_refund_sends_the_refund_email_with_its_amount_once(
    orders: OrderServiceStub, service_token: str, sink: Any, settings: Settings
) -> None:
    order = await place(orders, service_token, f"refund-{uuid.uuid4().hex[:8]}@example.com")
    await mail_for(sink.mail_dir, order.order_id)
    envelope = {
        "event_id": str(uuid.uuid4()),
        "event_type": "PaymentRefunded",
        "aggregate_id": order.payment_id,
        "data": {
            "payment_id": order.payment_id,
            "order_id": order.order_id,
            "status": "PARTIALLY_REFUNDED",
            "refund_amount": {"currency_code": "EUR", "amount_minor": 123450},
        },
    }
    nc, js = await connect(str(settings.nats_url), "notification-tests")
    try:
        for _ in range(2):  # the second is a redelivery: same event id, a new Nats-Msg-Id
            await js.publish(
                "kassa.payment.PaymentRefunded",
                json.dumps(envelope).encode(),
                headers={"Nats-Msg-Id": str(uuid.uuid4())},
            )
    finally:
        await nc.close()
    sent = await mail_for(sink.mail_dir, order.order_id, count=2)
    assert [m.subject for m in sent][-1] == f"A refund for your Kassa order {order.order_id[:8].upper()}"
    assert "We refunded €1,234.50 for your order" in sent[-1].body()
    nc, js = await connect(str(settings.nats_url), "notification-tests")
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while True:
            info = await js.consumer_info("KASSA_PAYMENT", "notification-payments")
            if (info.num_pending == 0 and info.num_ack_pending == 0) or loop.time() > deadline:
                break
            await asyncio.sleep(0.2)
    finally:
        await nc.close()
    assert len([m for m in read_mailbox(sink.mail_dir) if order.order_id in m.body()]) == 2
