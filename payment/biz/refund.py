"""RefundPayment: give captured money back, never more than was captured."""

from __future__ import annotations

import uuid

from infra.errors import FailedPrecondition, InvalidArgument, NotFound
from infra.money import Money
from payment.biz.common import after_provider, before_provider, invalid_state, load, unavailable
from payment.biz.ports import PaymentRepo
from payment.biz.providers import Providers
from payment.model.payment import INVALID_STATE, Attempt, Consumed, Payment, PaymentStatus, Refund
from payment.model.provider import ProviderError, ProviderUnavailable

__all__ = ["find_for_refund", "refund_payment"]

S = PaymentStatus
_REFUNDABLE = frozenset({S.CAPTURED, S.PARTIALLY_REFUNDED, S.REFUNDED})


async def find_for_refund(repo: PaymentRepo, payment_id: uuid.UUID | None, order_id: str) -> Payment:
    """The payment named by id, else the order's captured payment (at most one, invariant 2)."""
    if payment_id is not None:
        return await load(repo, payment_id)
    payment = await repo.captured_for_order(order_id)
    if payment is None:
        raise NotFound(f"order {order_id} has no captured payment", metadata={"order_id": order_id})
    return payment


async def refund_payment(
    repo: PaymentRepo,
    providers: Providers,
    payment: Payment,
    idempotency_key: str,
    amount: Money | None,
    *,
    consumed: Consumed | None = None,
) -> tuple[Payment, Refund]:
    """Refund once per key. Protects invariant 2 (money moves once) and the refunded ≤ captured constraint.

    The refund row and the increase of refunded_minor are written together under a row
    lock before the provider is called, so concurrent refunds can never sum past the
    captured amount (FAILED_PRECONDITION REFUND_EXCEEDS_CAPTURE, nothing written); the
    provider holding the intent gets the key ``refund-<refund_id>``. A retry with the same
    key returns the first refund; a timeout leaves it pending for a retry. ``consumed`` (the event
    that asked for the refund) is recorded in the same commit as the refund's outcome.
    """
    payment_id = payment.payment_id
    if amount is not None and amount.currency_code != payment.amount.currency_code:
        raise InvalidArgument("amount.currency_code", f"must be the payment's currency {payment.amount.currency_code}")
    if payment.status not in _REFUNDABLE:
        raise invalid_state(payment, "refund", "only captured payments can be refunded")
    refund, payment = await repo.reserve_refund(
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
        provider = providers.holding(payment.provider)
        done = await provider.refund(
            payment.provider_payment_id or "", refund.amount_minor, f"refund-{refund.refund_id}"
        )
    except ProviderUnavailable as exc:
        await repo.record_attempt(payment_id, Attempt("refund", summary, {"code": exc.code}, "unavailable"))
        raise unavailable(payment_id, exc) from exc
    except ProviderError as exc:
        await after_provider("refund", payment_id)
        await repo.finish_refund(
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
    attempt = Attempt("refund", summary, {"refund_id": done.refund_id, "amount_minor": done.amount_minor}, "refunded")
    payment = await repo.finish_refund(
        refund, provider_refund_id=done.refund_id, succeeded=True, attempt=attempt, consumed=consumed
    )
    return payment, refund
