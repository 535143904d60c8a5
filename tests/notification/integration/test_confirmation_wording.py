"""The confirmation email tells the truth about the money: with capture on shipment the card is only
authorized (reserved, charged when the order ships), never "paid". Through the running notification service
(its NATS consumer), the real order service and the SMTP sink."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from notification_support import placed_order

from devstack.smtp_sink import MailboxMessage, read_mailbox
from kassa.order.v1 import order_pb2
from kassa.order.v1 import order_service_pb2 as pb
from kassa.order.v1.order_service_pb2_grpc import OrderServiceStub

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("notification_server")]

WAIT = 30.0


async def confirmation_for(mail_dir: Any, order_id: str) -> MailboxMessage:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        found = [m for m in read_mailbox(mail_dir) if order_id in m.body() and "confirmed" in m.subject]
        if found:
            return found[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"no confirmation for {order_id}")


async def test_an_order_confirmed_on_an_authorization_is_not_called_paid(
    orders: OrderServiceStub, service_token: str, sink: Any
) -> None:
    order = await placed_order(
        orders, service_token, f"ada-{uuid.uuid4().hex[:8]}@example.com", outcome=pb.PAYMENT_OUTCOME_AUTHORIZED
    )
    assert order.status == order_pb2.ORDER_STATUS_CONFIRMED
    mail = await confirmation_for(sink.mail_dir, order.order_id)
    text = mail.body("plain")
    assert "reserved $12.00 on your card; it will be charged when your order ships" in text
    assert "is in" not in text


async def test_a_captured_order_says_the_payment_is_in(orders: OrderServiceStub, service_token: str, sink: Any) -> None:
    order = await placed_order(orders, service_token, f"ada-{uuid.uuid4().hex[:8]}@example.com")
    mail = await confirmation_for(sink.mail_dir, order.order_id)
    assert "your payment of $12.00 is in" in mail.body("plain")
