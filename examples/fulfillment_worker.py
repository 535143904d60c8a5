"""A fulfilment worker, as a warehouse system would write one against Kassa: it consumes OrderConfirmed from
JetStream and moves each order through PACKED and SHIPPED with the order service's UpdateFulfillment.

Run it beside a mesh (``make run``)::

    python -m examples.fulfillment_worker            # KASSA_NATS_URL, KASSA_ORDER_ADDR, KASSA_SERVICE_SECRET

Why it needs no database of its own: it reads the order first and takes only the steps still to take, and
every step is idempotent at the order service anyway (a repeat of the step just taken is a no-op, and the
tracking number is derived from the order id, so a redelivered event asks for exactly the same thing).
JetStream redelivers until the ack, so a crash between two steps resumes where it stopped. A real warehouse
would pack and hand the parcel to its carrier between the two calls; the carrier then reports DELIVERED the
same way (an admin can also use ``POST /v1/admin/orders/{id}/fulfillment``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

import grpc

from infra.channels import ServiceCredentials, call_metadata, open_channel
from infra.config import Settings
from infra.consumer import Event, EventConsumer
from infra.events import connect, ensure_streams
from infra.grpc_errors import to_domain_error
from kassa.order.v1 import order_pb2
from kassa.order.v1 import order_service_pb2 as pb
from kassa.order.v1.order_service_pb2_grpc import OrderServiceStub

__all__ = ["CONSUMER", "FulfillmentWorker", "tracking_number_for"]

CONSUMER = "example-fulfillment"
CARRIER = "Kassa Express"
S = order_pb2.OrderStatus
# The statuses from which each step is still to take (a redelivered event after SHIPPED takes none).
_BEFORE: dict[int, frozenset[int]] = {
    S.Value("ORDER_STATUS_PACKED"): frozenset(
        {S.Value("ORDER_STATUS_CONFIRMED"), S.Value("ORDER_STATUS_AWAITING_SHIPMENT")}
    ),
    S.Value("ORDER_STATUS_SHIPPED"): frozenset(
        {S.Value("ORDER_STATUS_CONFIRMED"), S.Value("ORDER_STATUS_AWAITING_SHIPMENT"), S.Value("ORDER_STATUS_PACKED")}
    ),
}

log = logging.getLogger("kassa.example.fulfillment")


def tracking_number_for(order_id: str) -> str:
    """The same number for every attempt at one order, so a retried SHIPPED asks for the same thing."""
    return "KX" + hashlib.sha256(order_id.encode()).hexdigest()[:12].upper()


class FulfillmentWorker:
    def __init__(self, orders: OrderServiceStub, creds: ServiceCredentials, timeout_seconds: float = 5.0) -> None:
        self._orders = orders
        self._creds = creds
        self._timeout = timeout_seconds

    async def handle(self, event: Event) -> str:
        order_id = str(event.data.get("order_id") or event.aggregate_id)
        md = call_metadata(self._creds)
        try:
            current = (
                await self._orders.GetOrder(pb.GetOrderRequest(order_id=order_id), timeout=self._timeout, metadata=md)
            ).order.status
            steps = [
                (status, tracking, carrier)
                for status, tracking, carrier in (
                    (order_pb2.ORDER_STATUS_PACKED, "", ""),
                    (order_pb2.ORDER_STATUS_SHIPPED, tracking_number_for(order_id), CARRIER),
                )
                if current in _BEFORE[status]
            ]
            if not steps:
                return f"order {order_id} needs nothing ({order_pb2.OrderStatus.Name(current)})"
            for status, tracking, carrier in steps:
                request = pb.UpdateFulfillmentRequest(
                    order_id=order_id, status=status, tracking_number=tracking, carrier=carrier
                )
                await self._orders.UpdateFulfillment(request, timeout=self._timeout, metadata=md)
        except grpc.aio.AioRpcError as exc:
            error = to_domain_error(exc)
            if error.reason == "ORDER_STATUS_CONFLICT":
                # Cancelled meanwhile, or another worker got further: nothing for us to do.
                return f"order {order_id} skipped: {error.message}"
            raise error from None
        return f"order {order_id} shipped"

    def consumer(self, js: object) -> EventConsumer:
        return EventConsumer(
            js,  # type: ignore[arg-type]
            name=CONSUMER,
            service="order",
            event_types=("OrderConfirmed",),
            handler=self.handle,
        )


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings.from_env()
    settings.require("nats_url")
    nc, js = await connect(str(settings.nats_url), "kassa-example-fulfillment")
    channel = open_channel(settings.addr("order"), settings.grpc_tls)
    try:
        await ensure_streams(js, ["order"])
        worker = FulfillmentWorker(
            OrderServiceStub(channel), ServiceCredentials(settings.service_secret, "fulfillment")
        )
        await worker.consumer(js).run()
    finally:
        await channel.close()
        await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
