"""RecordPayment: apply the payment outcome to an order waiting for it."""

from __future__ import annotations

from kernel.errors import FailedPrecondition, NotFound
from order.biz.ports import Transition, UnitOfWork
from order.biz.transitions import apply_transition
from order.model.events import EVENT_FOR_STATUS
from order.model.order import Order, OrderStatus, PaymentOutcome, PaymentStatus
from order.model.status import HOLD_GONE, ORDER_STATUS_CONFLICT, payment_target

__all__ = ["RecordPayment"]


class RecordPayment:
    """Protects invariant 2 (no double charge): only a PENDING_PAYMENT order moves, by a conditional
    UPDATE, so the outcome is applied once; a repeat of the same outcome is a no-op, and a different
    outcome or a second payment id is refused (a cancelled order stays cancelled: ORDER_STATUS_CONFLICT).
    Invariant 5: the history entry and the OrderConfirmed / OrderPaymentFailed event commit with the
    status change. Payment events settle an order by the same rule in :class:`ApplyPaymentEvent`.

    Invariant 3: an order whose payment the order service already knows to be voided, failed or refunded
    (``HOLD_GONE``, from payment's events) is not confirmed by a report that it was authorized or captured
    (that would let it be packed and shipped with no money behind it): the confirming UPDATE requires it
    in the same statement, and the order fails instead (PAYMENT_FAILED, OrderPaymentFailed releases its
    stock and coupon), which is what the caller is answered."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(
        self,
        order_id: str,
        outcome: PaymentOutcome,
        *,
        payment_id: str = "",
        cause: str = "",
    ) -> Order:
        target = payment_target(outcome)
        confirms = target is not OrderStatus.PAYMENT_FAILED
        async with self._uow.statement() as tx:
            result = await apply_transition(
                tx,
                Transition(
                    order_id=order_id,
                    sources=frozenset({OrderStatus.PENDING_PAYMENT}),
                    target=target,
                    cause=cause or f"payment {outcome.value.lower().replace('_', ' ')}",
                    event_type=EVENT_FOR_STATUS[target],
                    payment_id=payment_id,
                    payment_outcome=outcome,
                    # Capture on shipment: the PaymentAuthorized event came before the order existed (authorize is
                    # checkout's step 6, the order step 7), so the order learns its payment is held from checkout.
                    payment_status=PaymentStatus.AUTHORIZED if outcome is PaymentOutcome.AUTHORIZED else None,
                    unless_payment=HOLD_GONE if confirms else frozenset(),
                ),
            )
        order = result.order
        if order is None:
            raise NotFound(f"order {order_id} not found")
        if result.applied:
            return order
        if confirms and order.payment_status in HOLD_GONE:
            if order.status is OrderStatus.PENDING_PAYMENT:
                return await self._fail_without_hold(order, payment_id)
            if order.status is OrderStatus.PAYMENT_FAILED:
                return order  # a repeat of the report answered so before
        same_payment = not payment_id or order.payment_id == payment_id
        if order.payment_outcome == outcome and same_payment:
            return order
        raise FailedPrecondition(
            f"order {order_id} is {order.status.value} (payment {order.payment_id or 'none'}); "
            f"cannot record {outcome.value} for payment {payment_id or 'none'}",
            reason=ORDER_STATUS_CONFLICT,
            metadata={"status": order.status.value, "payment_id": order.payment_id},
        )

    async def _fail_without_hold(self, order: Order, payment_id: str) -> Order:
        gone = order.payment_status.value.lower()
        async with self._uow.statement() as tx:
            result = await apply_transition(
                tx,
                Transition(
                    order_id=order.order_id,
                    sources=frozenset({OrderStatus.PENDING_PAYMENT}),
                    target=OrderStatus.PAYMENT_FAILED,
                    cause=f"payment {gone} before the order was confirmed",
                    event_type=EVENT_FOR_STATUS[OrderStatus.PAYMENT_FAILED],
                    payment_id=payment_id,
                    payment_outcome=PaymentOutcome.FAILED,
                ),
            )
        if result.order is None:
            raise NotFound(f"order {order.order_id} not found")
        return result.order
