"""OrderService client: the order as the customer is shown it (GetOrder, with this service's own token).

Why a call and not the event's payload: order events carry no personal data (README, "Personal data"),
and the recipient's address must come from the one service that keeps it encrypted. GetOrder also gives
the names, totals and delivery window exactly as the order recorded them, so a message never disagrees
with what the customer sees on the order page.
"""

from __future__ import annotations

from datetime import date

import grpc

from infra.channels import ServiceCredentials, call_metadata
from infra.grpc_errors import to_domain_error
from infra.pb import money_from_pb
from kassa.order.v1 import order_pb2
from kassa.order.v1 import order_service_pb2 as pb
from kassa.order.v1 import order_service_pb2_grpc as pb_grpc
from notification.model.message import DeliveryWindow, OrderLineView, OrderView

__all__ = ["GrpcOrderAdapter"]


def _window(order: order_pb2.Order) -> DeliveryWindow | None:
    if not order.HasField("delivery_window"):
        return None
    w = order.delivery_window
    try:
        return DeliveryWindow(date.fromisoformat(w.earliest_date), date.fromisoformat(w.latest_date))
    except ValueError:
        return None


def order_view(order: order_pb2.Order) -> OrderView:
    cur = order.totals.grand_total.currency_code
    totals = order.totals
    return OrderView(
        order_id=order.order_id,
        email=order.email,
        customer_name=order.shipping_address.name if order.HasField("shipping_address") else "",
        status=order_pb2.OrderStatus.Name(order.status).removeprefix("ORDER_STATUS_"),
        currency_code=cur,
        lines=tuple(
            OrderLineView(
                sku=line.sku,
                name=line.name,
                quantity=line.quantity,
                unit_price=money_from_pb(line.unit_price, cur),
                line_total=money_from_pb(line.line_total, cur),
            )
            for line in order.lines
        ),
        subtotal=money_from_pb(totals.subtotal, cur),
        discount_total=money_from_pb(totals.discount_total, cur),
        shipping_total=money_from_pb(totals.shipping_total, cur),
        tax_total=money_from_pb(totals.tax_total, cur),
        grand_total=money_from_pb(totals.grand_total, cur),
        shipping_method=order.shipping_method,
        payment_method=order.payment_method,
        carrier=order.carrier,
        tracking_number=order.tracking_number,
        delivery_window=_window(order),
    )


class GrpcOrderAdapter:
    def __init__(self, channel: grpc.aio.Channel, creds: ServiceCredentials, timeout_seconds: float) -> None:
        self._stub = pb_grpc.OrderServiceStub(channel)
        self._creds = creds
        self._timeout = timeout_seconds

    async def get(self, order_id: str) -> OrderView | None:
        try:
            resp = await self._stub.GetOrder(
                pb.GetOrderRequest(order_id=order_id), timeout=self._timeout, metadata=call_metadata(self._creds)
            )
        except grpc.aio.AioRpcError as exc:
            # NotFound and every other refusal go to the use case, which tells a lasting one from a passing one.
            raise to_domain_error(exc) from None
        return order_view(resp.order)
