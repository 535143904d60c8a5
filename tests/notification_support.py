"""Notification "replicas" for tests: Notify use cases with the production parts (Postgres repo, the order
service over gRPC, the Jinja renderer, SMTP to a sink), each with its own engine, side by side in one process."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from helpers import bearer, unique
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.channels import ServiceCredentials
from infra.config import Settings
from infra.db import create_engine
from kassa.common.v1.address_pb2 import Address
from kassa.common.v1.money_pb2 import Money
from kassa.order.v1 import order_pb2
from kassa.order.v1 import order_service_pb2 as pb
from kassa.order.v1.order_service_pb2_grpc import OrderServiceStub
from notification.adapter.jinja_renderer import JinjaRenderer
from notification.adapter.order_adapter import GrpcOrderAdapter
from notification.adapter.smtp_sender import SmtpEmailSender, SmtpSettings
from notification.biz.notify import Notify, NotifyPolicy
from notification.biz.ports import Sender
from notification.data.repositories import SqlUnitOfWork
from notification.model.message import Kind, Notice


@dataclass
class Replica:
    notify: Notify
    uow: SqlUnitOfWork
    engine: AsyncEngine


@contextlib.asynccontextmanager
async def replica(
    settings: Settings,
    order_port: int,
    smtp_url: str,
    policy: NotifyPolicy | None = None,
    sender: Sender | None = None,
) -> AsyncIterator[Replica]:
    engine = create_engine(str(settings.database_url), pool_size=2, application_name="kassa-notification-replica")
    own = SmtpEmailSender(SmtpSettings.from_url(smtp_url), settings.mail_from)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{order_port}") as channel:
        try:
            uow = SqlUnitOfWork(engine, settings.pii_cipher())
            orders = GrpcOrderAdapter(channel, ServiceCredentials(settings.service_secret, "notification"), 5.0)
            notify = Notify(uow, orders, JinjaRenderer(), sender or own, policy or NotifyPolicy())
            yield Replica(notify, uow, engine)
        finally:
            await own.aclose()  # its open SMTP connection, as the service's bootstrap does
            await engine.dispose()


def usd(amount: int) -> Money:
    return Money(currency_code="USD", amount_minor=amount)


async def placed_order(
    orders: OrderServiceStub,
    token: str,
    email: str,
    outcome: int = pb.PAYMENT_OUTCOME_CAPTURED,
    payment_method: str = "tok_visa",
) -> order_pb2.Order:
    """A confirmed 12.00 USD order of one line."""
    req = pb.CreateOrderRequest(
        checkout_session_id=unique("sess"),
        customer_id=unique("cust"),
        email=email,
        lines=[order_pb2.OrderLine(sku="FIG-1", name="Fig", quantity=1, unit_price=usd(1200),
                                   line_total=usd(1200), warehouse_id="w1")],
        totals=order_pb2.OrderTotals(subtotal=usd(1200), discount_total=usd(0), shipping_total=usd(0),
                                     tax_total=usd(0), grand_total=usd(1200)),
        shipping_address=Address(name="Ada Lovelace", line1="1 Main St", city="Springfield", postal_code="12345",
                                 country_code="US"),
        shipping_method="standard",
        payment_id=unique("pay"),
        payment_method=payment_method,
        authorized_amount=usd(1200),
    )  # fmt: skip
    order = (await orders.CreateOrder(req, metadata=bearer(token))).order
    paid = pb.RecordPaymentRequest(order_id=order.order_id, payment_id=order.payment_id, outcome=outcome)  # type: ignore[arg-type]
    return (await orders.RecordPayment(paid, metadata=bearer(token))).order


def confirmation(order_id: str) -> Notice:
    """A confirmation notice for a fresh event (as a redelivery outside JetStream's duplicate window looks)."""
    return Notice(str(uuid.uuid4()), "OrderConfirmed", Kind.CONFIRMATION, order_id)
