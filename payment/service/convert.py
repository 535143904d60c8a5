"""PaymentService's protobuf <-> model conversions."""

from __future__ import annotations

from infra.pb import money_to_pb, timestamp_to_pb
from kassa.payment.v1 import payment_pb2
from payment.model.payment import Payment, PaymentStatus

__all__ = ["to_pb"]

PS = payment_pb2.PaymentStatus
_STATUS_PB = {
    # Unknown outcome (provider timed out): neither held nor failed as far as we know.
    PaymentStatus.PENDING: PS.PAYMENT_STATUS_PENDING,
    PaymentStatus.REQUIRES_ACTION: PS.PAYMENT_STATUS_REQUIRES_ACTION,
    PaymentStatus.AUTHORIZED: PS.PAYMENT_STATUS_AUTHORIZED,
    # A capture or void in flight: the money is still only held.
    PaymentStatus.CAPTURING: PS.PAYMENT_STATUS_AUTHORIZED,
    PaymentStatus.VOIDING: PS.PAYMENT_STATUS_AUTHORIZED,
    PaymentStatus.CAPTURED: PS.PAYMENT_STATUS_CAPTURED,
    PaymentStatus.PARTIALLY_REFUNDED: PS.PAYMENT_STATUS_PARTIALLY_REFUNDED,
    PaymentStatus.REFUNDED: PS.PAYMENT_STATUS_REFUNDED,
    PaymentStatus.VOIDED: PS.PAYMENT_STATUS_VOIDED,
    PaymentStatus.DECLINED: PS.PAYMENT_STATUS_DECLINED,
    PaymentStatus.FAILED: PS.PAYMENT_STATUS_FAILED,
    PaymentStatus.CASH_ON_DELIVERY: PS.PAYMENT_STATUS_CASH_ON_DELIVERY,
}


def to_pb(p: Payment) -> payment_pb2.Payment:
    return payment_pb2.Payment(
        payment_id=str(p.payment_id),
        order_ref=p.order_ref,
        order_id=p.order_id or "",
        status=_STATUS_PB[p.status],
        amount=money_to_pb(p.amount),
        captured_amount=money_to_pb(p.captured),
        refunded_amount=money_to_pb(p.refunded),
        provider=p.provider,
        provider_payment_id=p.provider_payment_id or "",
        payment_method=p.payment_method,
        next_action_url=p.next_action_url or "",
        failure_code=p.failure_code or "",
        failure_message=p.failure_message or "",
        created_at=timestamp_to_pb(p.created_at),
        updated_at=timestamp_to_pb(p.updated_at),
    )
