"""Helpers the payment use cases share: loading, and the refusals they raise."""

from __future__ import annotations

import uuid

from infra.errors import FailedPrecondition, NotFound, Reason, Unavailable
from payment.biz.ports import PaymentRepo
from payment.model.payment import INVALID_STATE, Payment
from payment.model.provider import ProviderError

__all__ = ["declined", "invalid_state", "load", "unavailable"]


async def load(repo: PaymentRepo, payment_id: uuid.UUID) -> Payment:
    payment = await repo.get(payment_id)
    if payment is None:
        raise NotFound(f"payment {payment_id} not found", metadata={"payment_id": str(payment_id)})
    return payment


def declined(payment: Payment) -> FailedPrecondition:
    """The same refusal for the first decline and every retry of it."""
    return FailedPrecondition(
        f"payment declined: {payment.failure_message or payment.failure_code or 'declined'}",
        reason=Reason.PAYMENT_DECLINED,
        metadata={"payment_id": str(payment.payment_id), "decline_code": payment.failure_code or "declined"},
    )


def invalid_state(payment: Payment, action: str, hint: str = "") -> FailedPrecondition:
    status = payment.status.value
    message = f"cannot {action} a payment in status {status}" + (f"; {hint}" if hint else "")
    return FailedPrecondition(
        message, reason=INVALID_STATE, metadata={"payment_id": str(payment.payment_id), "status": status}
    )


def unavailable(payment_id: uuid.UUID, exc: ProviderError) -> Unavailable:
    return Unavailable(
        f"payment provider unavailable ({exc.code}); retrying is safe",
        reason=Reason.PAYMENT_PROVIDER_UNAVAILABLE,
        metadata={"payment_id": str(payment_id), "provider_code": exc.code},
    )
