"""UpdateFulfillment: CONFIRMED or AWAITING_SHIPMENT → PACKED → SHIPPED → DELIVERED, one step at a time."""

from __future__ import annotations

from kernel.errors import FailedPrecondition, NotFound, Reason
from order.biz.ports import Transition, UnitOfWork
from order.biz.transitions import apply_transition
from order.model.events import EVENT_FOR_STATUS
from order.model.order import Order, OrderStatus
from order.model.status import HOLD_GONE, NEEDS_PAYMENT_HELD, ORDER_STATUS_CONFLICT, sources_of

__all__ = ["UpdateFulfillment"]


class UpdateFulfillment:
    """Invariant 6: the step is validated before anything is written, by the servicer
    (order/service/validation.py: SHIPPED needs its carrier and tracking number; the other steps take
    neither). Only a paid (or cash-on-delivery) order is packed, and steps are taken in order by a
    conditional UPDATE whose ``WHERE`` is the status machine's ``sources_of``; an illegal step is
    FAILED_PRECONDITION, and a repeat of the step already taken is a no-op. Each step is on the timeline and
    publishes its event (OrderPacked, OrderShipped with the carrier and tracking number, OrderDelivered) in
    the same transaction (invariant 5): payment captures an authorization still open when the order ships
    (capture on shipment) and marks cash on delivery paid when it is delivered; the notification service
    tells the customer.

    Invariant 3, the other way round (no goods without money): PACKED and SHIPPED also need the order's
    payment still held or taken. The same conditional UPDATE requires its payment status not to be one of
    ``HOLD_GONE`` (voided, failed, declined, refunded in full), so an order whose authorization was voided
    is refused with FAILED_PRECONDITION / PAYMENT_INVALID_STATE. A void and a shipment racing are
    serialized on the order row: the PaymentVoided event is recorded either before (the step is refused) or
    after the step (then payment's capture on shipment finds its intent already voided and an operator is
    told). A void the order service cannot see yet, made at the provider behind Kassa's back, is the one
    case left to that capture's refusal."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, order_id: str, target: OrderStatus, tracking_number: str, carrier: str = "") -> Order:
        if target is OrderStatus.SHIPPED:
            cause = f"fulfilment: shipped with {carrier}, tracking number {tracking_number}"
        else:
            cause = f"fulfilment: {target.value.lower()}"
        async with self._uow.statement() as tx:
            result = await apply_transition(
                tx,
                Transition(
                    order_id=order_id,
                    sources=sources_of(target),
                    target=target,
                    cause=cause,
                    event_type=EVENT_FOR_STATUS[target],
                    tracking_number=tracking_number,
                    carrier=carrier,
                    unless_payment=HOLD_GONE if target in NEEDS_PAYMENT_HELD else frozenset(),
                ),
            )
        order = result.order
        if order is None:
            raise NotFound(f"order {order_id} not found")
        if result.applied or order.status == target:
            return order
        if target in NEEDS_PAYMENT_HELD and order.payment_status in HOLD_GONE and order.status in sources_of(target):
            raise FailedPrecondition(
                f"order {order_id}'s payment is {order.payment_status.value}; it cannot become {target.value}",
                reason=Reason.PAYMENT_INVALID_STATE,
                metadata={"status": order.status.value, "payment_status": order.payment_status.value},
            )
        raise FailedPrecondition(
            f"order {order_id} is {order.status.value}; it cannot become {target.value}",
            reason=ORDER_STATUS_CONFLICT,
            metadata={"status": order.status.value},
        )
