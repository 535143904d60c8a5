"""Fulfilment events payment reacts to: capture on shipment, and cash collected on delivery."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kernel.errors import FailedPrecondition
from payment.biz.capture import CapturePayment
from payment.biz.common import apply
from payment.biz.order_events import RetryLater, settle_once
from payment.biz.ports import UnitOfWork
from payment.biz.providers import Providers
from payment.model.payment import Consumed, Payment, PaymentStatus, Transition

__all__ = ["FULFILMENT_CONSUMER", "FULFILMENT_EVENT_TYPES", "ORDER_DELIVERED", "ORDER_SHIPPED", "CollectOnFulfilment"]

FULFILMENT_CONSUMER = "payment-fulfilment"
ORDER_SHIPPED = "OrderShipped"
ORDER_DELIVERED = "OrderDelivered"
FULFILMENT_EVENT_TYPES = (ORDER_SHIPPED, ORDER_DELIVERED)

log = logging.getLogger("kassa.payment.fulfilment")

S = PaymentStatus


class CollectOnFulfilment:
    """Take the money a shipped or delivered order still owes. Protects invariant 2 (one capture) and 3.

    OrderShipped captures an authorization still open (the order was placed with KASSA_CAPTURE_ON=shipment;
    with capture on confirm it is CAPTURED already and nothing happens): :class:`CapturePayment` claims
    AUTHORIZED → CAPTURING by a conditional update and calls the provider with the key
    ``capture-<payment_id>``, so a redelivery, a second replica or a crash mid-capture charges once.
    OrderDelivered marks a cash-on-delivery payment CAPTURED (the courier collected it): a conditional
    update from CASH_ON_DELIVERY that commits with this event's inbox row. An order cancelled before it
    shipped never gets here: OrderCancelled voids its authorization (``order_events``).
    """

    def __init__(self, uow: UnitOfWork, providers: Providers) -> None:
        self._uow = uow
        self._capture = CapturePayment(uow, providers)

    async def __call__(self, event_id: str, event_type: str, data: Mapping[str, Any]) -> str:
        order_id = str(data.get("order_id") or "")

        async def settle(payment: Payment, consumed: Consumed, last: bool) -> str:
            return await self._settle(payment, event_type, order_id=order_id, consumed=consumed)

        return await settle_once(self._uow, Consumed(FULFILMENT_CONSUMER, event_id), data, settle)

    async def _settle(self, payment: Payment, event_type: str, *, order_id: str, consumed: Consumed) -> str:
        if payment.status == S.CAPTURING:
            raise RetryLater(f"payment {payment.payment_id} is being captured")
        if event_type == ORDER_SHIPPED and payment.status == S.AUTHORIZED:
            try:
                done = await self._capture(payment.payment_id, order_id or payment.order_id or "", None)
            except FailedPrecondition as refused:
                # The provider refused (an authorization that expired, say): an operator's case; the payment and
                # its attempt log say why, and a redelivery would be refused the same way.
                log.error("capture on shipment of order %s refused: %s", order_id, refused.message)
                return f"{payment.payment_id} capture refused"
            return f"{payment.payment_id} {done.status.value} on shipment"
        if event_type == ORDER_DELIVERED and payment.status == S.CASH_ON_DELIVERY:
            amount = payment.amount
            collected = await apply(
                self._uow,
                payment.payment_id,
                Transition(
                    S.CAPTURED,
                    frozenset({S.CASH_ON_DELIVERY}),
                    {"captured_minor": amount.amount_minor, "order_id": order_id or payment.order_id},
                    "PaymentCaptured",
                    {
                        "captured_amount": {"currency_code": amount.currency_code, "amount_minor": amount.amount_minor},
                        "collected_on_delivery": True,
                    },
                    consumed=consumed,
                ),
            )
            outcome = "CAPTURED" if collected is not None else "unchanged"
            return f"{payment.payment_id} {outcome} (cash collected on delivery)"
        return f"{payment.payment_id} unchanged ({payment.status.value})"
