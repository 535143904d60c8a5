"""RefundPayment: give captured money back, never more than was captured."""

from __future__ import annotations

import uuid

from kernel.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Reason
from kernel.money import Money
from payment.biz.common import after_provider, before_provider, invalid_state, load, record_attempt, unavailable
from payment.biz.ports import UnitOfWork
from payment.biz.providers import Providers
from payment.model.payment import INVALID_STATE, Attempt, Consumed, Payment, PaymentStatus, Refund, event_data
from payment.model.provider import ProviderError, ProviderUnavailable

__all__ = ["RefundPayment", "find_for_refund"]

S = PaymentStatus
_REFUNDABLE = frozenset({S.CAPTURED, S.PARTIALLY_REFUNDED, S.REFUNDED})


async def find_for_refund(uow: UnitOfWork, payment_id: uuid.UUID | None, order_id: str) -> Payment:
    """The payment named by id, else the order's captured payment (at most one, invariant 2)."""
    if payment_id is not None:
        return await load(uow, payment_id)
    async with uow.read() as tx:
        payment = await tx.payments.captured_for_order(order_id)
    if payment is None:
        raise NotFound(f"order {order_id} has no captured payment", metadata={"order_id": order_id})
    return payment


class RefundPayment:
    """Refund once per key. Protects invariant 2 (money moves once) and the refunded ≤ captured constraint.

    The refund row and the increase of refunded_minor are written together under a row
    lock before the provider is called, so concurrent refunds can never sum past the
    captured amount (FAILED_PRECONDITION REFUND_EXCEEDS_CAPTURE, nothing written); the
    provider holding the intent gets the key ``refund-<refund_id>``. A retry with the same
    key returns the first refund; a timeout leaves it pending for a retry. ``consumed`` (the event
    that asked for the refund) is recorded in the same commit as the refund's outcome.
    """

    def __init__(self, uow: UnitOfWork, providers: Providers) -> None:
        self._uow = uow
        self._providers = providers

    async def find(self, payment_id: uuid.UUID | None, order_id: str) -> Payment:
        """The payment a RefundPayment request names: :func:`find_for_refund`."""
        return await find_for_refund(self._uow, payment_id, order_id)

    async def __call__(
        self, payment: Payment, idempotency_key: str, amount: Money | None, *, consumed: Consumed | None = None
    ) -> tuple[Payment, Refund]:
        payment_id = payment.payment_id
        if amount is not None and amount.currency_code != payment.amount.currency_code:
            raise InvalidArgument(
                "amount.currency_code", f"must be the payment's currency {payment.amount.currency_code}"
            )
        if payment.status not in _REFUNDABLE:
            raise invalid_state(payment, "refund", "only captured payments can be refunded")
        refund, payment = await self._reserve(
            payment_id, idempotency_key, None if amount is None else amount.amount_minor
        )
        if refund.status == "SUCCEEDED":
            return payment, refund
        if refund.status == "FAILED":
            raise FailedPrecondition(
                "this refund was refused by the provider",
                reason=INVALID_STATE,
                metadata={"refund_id": str(refund.refund_id)},
            )

        summary = {"intent_id": payment.provider_payment_id, "amount_minor": refund.amount_minor}
        await before_provider("refund", payment_id)
        try:
            provider = self._providers.holding(payment.provider)
            done = await provider.refund(
                payment.provider_payment_id or "", refund.amount_minor, f"refund-{refund.refund_id}"
            )
        except ProviderUnavailable as exc:
            await record_attempt(self._uow, payment_id, Attempt("refund", summary, {"code": exc.code}, "unavailable"))
            raise unavailable(payment_id, exc) from exc
        except ProviderError as exc:
            await after_provider("refund", payment_id)
            await self._finish(
                refund,
                provider_refund_id=None,
                succeeded=False,
                attempt=Attempt("refund", summary, {"code": exc.code, "message": exc.message}, "rejected"),
                consumed=consumed,
            )
            raise FailedPrecondition(
                f"the provider refused the refund: {exc.message}",
                reason=INVALID_STATE,
                metadata={"refund_id": str(refund.refund_id)},
            ) from exc
        await after_provider("refund", payment_id)
        attempt = Attempt(
            "refund", summary, {"refund_id": done.refund_id, "amount_minor": done.amount_minor}, "refunded"
        )
        payment = await self._finish(
            refund, provider_refund_id=done.refund_id, succeeded=True, attempt=attempt, consumed=consumed
        )
        return payment, refund

    async def _reserve(
        self, payment_id: uuid.UUID, idempotency_key: str, amount_minor: int | None
    ) -> tuple[Refund, Payment]:
        """Insert the refund and add it to refunded_minor if the captured money covers it; idempotent by key.
        One transaction, under the payment's row lock."""
        async with self._uow.transaction() as tx:
            payment = await tx.payments.lock(payment_id)
            if payment is None:
                raise NotFound(f"payment {payment_id} not found", metadata={"payment_id": str(payment_id)})
            existing = await tx.refunds.by_key(idempotency_key)
            if existing is not None:
                return _same_refund(existing, payment_id, amount_minor), payment
            if payment.status not in _REFUNDABLE:
                raise FailedPrecondition(
                    f"cannot refund a payment in status {payment.status.value}",
                    reason=INVALID_STATE,
                    metadata={"payment_id": str(payment_id), "status": payment.status.value},
                )
            remaining = payment.captured_minor - payment.refunded_minor
            amount = remaining if amount_minor is None else amount_minor
            if amount_minor is not None and amount_minor <= 0:
                raise InvalidArgument("amount.amount_minor", "must be a positive amount in the currency's minor unit")
            if amount <= 0 or amount > remaining:
                raise FailedPrecondition(
                    f"refunds would exceed the capture: {Money(payment.amount.currency_code, remaining)} "
                    "is left to refund",
                    reason=Reason.REFUND_EXCEEDS_CAPTURE,
                    metadata={
                        "payment_id": str(payment_id),
                        "refundable_minor": str(remaining),
                        "captured_minor": str(payment.captured_minor),
                    },
                )
            refund = await tx.refunds.insert(payment_id, idempotency_key, amount)
            if refund is None:
                # The same key is being used for another payment's refund at this very moment.
                raced = await tx.refunds.by_key(idempotency_key)
                if raced is None:
                    raise AlreadyExists(
                        "idempotency_key is in use by another refund", reason=Reason.IDEMPOTENCY_KEY_REUSED
                    )
                return _same_refund(raced, payment_id, amount_minor), payment
            updated = await tx.payments.add_refunded(payment_id, amount)
            # An admin's refund is audited when the money is set aside for it, the decision that commits here.
            await tx.audit(f"payments/{payment_id}", f"refunds/{refund.refund_id}")
        return refund, updated

    async def _finish(
        self,
        refund: Refund,
        *,
        provider_refund_id: str | None,
        succeeded: bool,
        attempt: Attempt,
        consumed: Consumed | None,
    ) -> Payment:
        """Mark the refund done (with its event) or failed (giving the amount back), and ``consumed`` with it,
        in one transaction. A refund finished already (by a racing caller) leaves everything as it is."""
        async with self._uow.transaction() as tx:
            if not await tx.refunds.finish(refund, succeeded=succeeded, provider_refund_id=provider_refund_id):
                payment = await tx.payments.get(refund.payment_id)
                assert payment is not None, "a refund's payment is never deleted"
                return payment
            payment = await tx.payments.settle_refund(refund, succeeded=succeeded)
            await tx.payments.record_attempt(refund.payment_id, attempt)
            if consumed is not None:
                await tx.inbox.claim(consumed.consumer, consumed.event_id)
            if succeeded:
                await tx.add_event(
                    "PaymentRefunded",
                    str(payment.payment_id),
                    event_data(
                        payment,
                        refund_id=str(refund.refund_id),
                        refund_amount={
                            "currency_code": payment.amount.currency_code,
                            "amount_minor": refund.amount_minor,
                        },
                    ),
                )
        return payment


def _same_refund(existing: Refund, payment_id: uuid.UUID, amount_minor: int | None) -> Refund:
    if existing.payment_id != payment_id or (amount_minor is not None and amount_minor != existing.amount_minor):
        raise AlreadyExists(
            "idempotency_key was already used for a different refund",
            reason=Reason.IDEMPOTENCY_KEY_REUSED,
            metadata={"field": "idempotency_key", "refund_id": str(existing.refund_id)},
        )
    return existing
