"""Helpers the payment use cases share: loading, applying a transition, and the refusals they raise."""

from __future__ import annotations

import uuid

from infra import faults
from kernel.errors import FailedPrecondition, NotFound, Reason, Unavailable
from payment.biz.ports import UnitOfWork
from payment.model.payment import INVALID_STATE, Attempt, Payment, Transition
from payment.model.provider import ProviderError

__all__ = [
    "after_provider",
    "apply",
    "before_provider",
    "declined",
    "invalid_state",
    "load",
    "record_attempt",
    "unavailable",
]


async def load(uow: UnitOfWork, payment_id: uuid.UUID) -> Payment:
    async with uow.read() as tx:
        payment = await tx.payments.get(payment_id)
    if payment is None:
        raise NotFound(f"payment {payment_id} not found", metadata={"payment_id": str(payment_id)})
    return payment


async def apply(uow: UnitOfWork, payment_id: uuid.UUID, transition: Transition) -> Payment | None:
    """Apply ``transition``; None if it did not apply. One statement in autocommit, no BEGIN/COMMIT: the status
    change writes its attempt row, its outbox event and the inbox claim of the event that caused it itself.

    The attempt row logs a provider call that was made, so when the change does not apply (the provider's webhook
    of that very outcome, a retry or a void got there first) it is still written, by a statement of its own."""
    async with uow.statement() as tx:
        done = await tx.payments.apply(payment_id, transition)
    if done is None and transition.attempt is not None:
        await record_attempt(uow, payment_id, transition.attempt)
    return done


async def record_attempt(uow: UnitOfWork, payment_id: uuid.UUID, attempt: Attempt) -> None:
    async with uow.single() as tx:
        await tx.payments.record_attempt(payment_id, attempt)


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


async def before_provider(operation: str, payment_id: uuid.UUID) -> None:
    """The fault point ``payment.<operation>.before_provider``: the claim is written, nothing was sent."""
    await _fault_point(f"payment.{operation}.before_provider", payment_id)


async def after_provider(operation: str, payment_id: uuid.UUID) -> None:
    """The fault point ``payment.<operation>.after_provider``: the provider answered, nothing of it is committed."""
    await _fault_point(f"payment.{operation}.after_provider", payment_id)


async def _fault_point(point: str, payment_id: uuid.UUID) -> None:
    """Pass a named fault point of :mod:`infra.faults` (one comparison unless KASSA_FAULTS is set).

    An injected error stands for the process failing right there (a crash modelled in process, a
    database gone between the provider call and the commit): nothing after it runs, and the caller
    sees what it would see then, an unknown outcome (UNAVAILABLE, with the payment's id), never
    INTERNAL. A retry with the same key converges, as after a real failure.
    """
    try:
        await faults.ahit(point)
    except faults.InjectedFault as exc:
        raise Unavailable(
            f"the payment service failed before it could record the outcome ({exc}); retrying is safe",
            metadata={"payment_id": str(payment_id), "fault_point": point},
        ) from exc
