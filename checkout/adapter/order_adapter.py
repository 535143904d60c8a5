"""OrderService client: CreateOrder (idempotent on checkout_session_id) and RecordPayment."""

from __future__ import annotations

from typing import cast

import grpc

from checkout.adapter.base import GrpcClient
from checkout.model.catalog import OrderDraft, OrderRef, OrderStatus, PaymentOutcome
from infra.channels import ServiceCredentials
from infra.pb import address_to_pb, money_to_pb, window_to_pb
from kassa.common.v1 import money_pb2
from kassa.order.v1 import order_pb2
from kassa.order.v1 import order_service_pb2 as pb
from kassa.order.v1 import order_service_pb2_grpc as pb_grpc
from kernel.money import Money

__all__ = ["GrpcOrderAdapter", "order_status"]


def order_status(value: int) -> OrderStatus:
    return OrderStatus(order_pb2.OrderStatus.Name(value).removeprefix("ORDER_STATUS_"))


def _ref(order: order_pb2.Order) -> OrderRef:
    return OrderRef(order.order_id, order_status(order.status))


class GrpcOrderAdapter(GrpcClient):
    def __init__(self, channel: grpc.aio.Channel, creds: ServiceCredentials, timeout_seconds: float) -> None:
        super().__init__(creds, timeout_seconds)
        self._stub = pb_grpc.OrderServiceStub(channel)

    async def create_order(self, draft: OrderDraft) -> OrderRef:
        cur = draft.currency_code

        def money(amount: int) -> money_pb2.Money:
            return money_to_pb(Money(cur, amount))

        request = pb.CreateOrderRequest(
            checkout_session_id=draft.checkout_session_id,
            customer_id=draft.customer_id,
            email=draft.email,
            lines=[
                order_pb2.OrderLine(
                    sku=ln.sku,
                    name=ln.name,
                    quantity=ln.quantity,
                    unit_price=money(ln.unit_price_minor),
                    line_total=money(ln.unit_price_minor * ln.quantity),
                    warehouse_id=ln.warehouse_id,
                    tax_class=ln.tax_class,
                )
                for ln in draft.lines
            ],
            discounts=[order_pb2.OrderDiscount(code=code, amount=money(amount)) for code, amount in draft.discounts],
            totals=order_pb2.OrderTotals(
                subtotal=money(draft.subtotal_minor),
                discount_total=money(draft.discount_minor),
                shipping_total=money(draft.shipping_minor),
                tax_total=money(draft.tax_minor),
                grand_total=money(draft.grand_total_minor),
            ),
            shipping_address=address_to_pb(draft.shipping_address),
            shipping_method=draft.shipping_method,
            payment_id=draft.payment_id,
            payment_method=draft.payment_method,
            notes=draft.notes,
            authorized_amount=money(draft.authorized_minor),
            delivery_window=window_to_pb(draft.delivery),
        )
        if draft.billing_address is not None:
            request.billing_address.CopyFrom(address_to_pb(draft.billing_address))
        resp = await self._call(self._stub.CreateOrder, request)
        return _ref(resp.order)

    async def get_order(self, order_id: str) -> OrderRef:
        resp = await self._call(self._stub.GetOrder, pb.GetOrderRequest(order_id=order_id))
        return _ref(resp.order)

    async def record_payment(self, order_id: str, payment_id: str, outcome: PaymentOutcome, cause: str) -> OrderRef:
        resp = await self._call(
            self._stub.RecordPayment,
            pb.RecordPaymentRequest(
                order_id=order_id,
                payment_id=payment_id,
                outcome=cast(pb.PaymentOutcome, pb.PaymentOutcome.Value(f"PAYMENT_OUTCOME_{outcome.value}")),
                cause=cause,
            ),
        )
        return _ref(resp.order)
