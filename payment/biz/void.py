"""VoidAuthorization: release a hold, including one whose authorization outcome is unknown."""

from __future__ import annotations

import uuid

from kernel.errors import Unavailable
from payment.biz.common import after_provider, apply, before_provider, invalid_state, load, record_attempt, unavailable
from payment.biz.ports import UnitOfWork
from payment.biz.providers import Providers
from payment.model.payment import (
    CAPTURE_HOLDING,
    COD_PROVIDER,
    Attempt,
    Consumed,
    Payment,
    PaymentStatus,
    Transition,
)
from payment.model.provider import IntentStatus, ProviderError, ProviderRejected, ProviderUnavailable

__all__ = ["VOID_LEASE_SECONDS", "VoidAuthorization", "VoidByKey"]

S = PaymentStatus
VOID_LEASE_SECONDS = 30
_NOTHING_HELD = frozenset({S.VOIDED, S.DECLINED, S.FAILED})
# VOIDING is claimable again at once: cancelling at the provider is idempotent.
_VOIDABLE = frozenset({S.PENDING, S.REQUIRES_ACTION, S.AUTHORIZED, S.VOIDING})
_COD_VOIDABLE = frozenset({S.PENDING, S.CASH_ON_DELIVERY, S.VOIDING})


class VoidAuthorization:
    """Cancel the hold. Protects invariant 3 (no authorization outlives a failed checkout).

    Idempotent: a payment with nothing held is returned as is. A PENDING payment (the
    authorization timed out, so the provider may or may not have created an intent) is
    claimed first (VOIDING, which a late authorization answer then respects), and the
    intent is looked up at the provider by the authorization's idempotency key and
    cancelled if it exists; when the provider has none, the payment ends FAILED (nothing
    was ever held). The provider is the one the payment row records. A captured payment
    is refused: it needs a refund. ``consumed`` (the event that asked for the void) is recorded
    in the same commit as the end state.
    """

    def __init__(self, uow: UnitOfWork, providers: Providers) -> None:
        self._uow = uow
        self._providers = providers

    async def __call__(self, payment_id: uuid.UUID, reason: str, *, consumed: Consumed | None = None) -> Payment:
        uow, providers = self._uow, self._providers
        payment = await load(uow, payment_id)
        if payment.status in _NOTHING_HELD:
            return payment
        if payment.status in CAPTURE_HOLDING:
            raise invalid_state(payment, "void", "it is captured; refund it instead")
        if payment.provider == COD_PROVIDER:
            # Nothing is held anywhere, even for a cash-on-delivery payment its authorization left PENDING.
            done = await apply(
                uow,
                payment_id,
                Transition(S.VOIDED, _COD_VOIDABLE, {}, "PaymentVoided", {"reason": reason}, consumed=consumed),
            )
            return done or await load(uow, payment_id)

        claimed = await apply(uow, payment_id, Transition(S.VOIDING, _VOIDABLE, lease_seconds=VOID_LEASE_SECONDS))
        if claimed is None:
            current = await load(uow, payment_id)
            if current.status in _NOTHING_HELD:
                return current
            raise invalid_state(current, "void")

        summary: dict[str, object] = {"intent_id": claimed.provider_payment_id, "reason": reason}
        intent_id = claimed.provider_payment_id
        provider = providers.holding(claimed.provider)
        await before_provider("void", payment_id)
        refused: ProviderError | None = None
        try:
            if intent_id is None:
                found = await provider.find_intent(claimed.idempotency_key)
                intent_id = found.intent_id if found else None
                summary["looked_up"] = intent_id or ""
            if intent_id is not None:
                await provider.cancel(intent_id, f"void-{payment_id}")
        except ProviderUnavailable as exc:
            await record_attempt(uow, payment_id, Attempt("void", summary, {"code": exc.code}, "unavailable"))
            raise unavailable(payment_id, exc) from exc
        except ProviderError as exc:
            refused = exc
        await after_provider("void", payment_id)
        refused_intent = refused.intent if isinstance(refused, ProviderRejected) else None
        if refused is not None and refused_intent is not None and refused_intent.status == IntentStatus.SUCCEEDED:
            # Captured at the provider behind our back: record the truth, a refund is the way back.
            await apply(
                uow,
                payment_id,
                Transition(
                    S.CAPTURED,
                    frozenset({S.VOIDING}),
                    {"captured_minor": refused_intent.amount_received},
                    "PaymentCaptured",
                    {},
                    Attempt("void", summary, {"code": refused.code}, "already_captured"),
                ),
            )
            raise invalid_state(claimed, "void", "the provider has captured it; refund it instead") from refused
        # Otherwise a refusal means declined, failed or already cancelled there: nothing is held.

        if intent_id is None:
            # The provider never created an intent for the key: the authorization failed, nothing is held.
            code = "authorization_not_found"
            done = await apply(
                uow,
                payment_id,
                Transition(
                    S.FAILED,
                    frozenset({S.VOIDING}),
                    {"failure_code": code, "failure_message": "the provider has no intent for this payment"},
                    "PaymentFailed",
                    {"failure_code": code},
                    Attempt("void", summary, {"intent_id": ""}, "no_intent"),
                    consumed=consumed,
                ),
            )
            return done or await load(uow, payment_id)

        done = await apply(
            uow,
            payment_id,
            Transition(
                S.VOIDED,
                frozenset({S.VOIDING}),
                {"provider_payment_id": intent_id, "next_action_url": None},
                "PaymentVoided",
                {"reason": reason},
                Attempt("void", summary, {"intent_id": intent_id or ""}, "voided"),
                consumed=consumed,
            ),
        )
        if done is None:
            current = await load(uow, payment_id)
            if current.status in _NOTHING_HELD:
                return current
            raise Unavailable("the payment changed while voiding; retry", metadata={"payment_id": str(payment_id)})
        return done


class VoidByKey:
    """Void what AuthorizePayment created with an idempotency key (its answer was lost). Protects invariant 3.

    No payment for the key means the authorization never reached us, so nothing is held:
    None, not an error. Otherwise the same as :class:`VoidAuthorization`.
    """

    def __init__(self, uow: UnitOfWork, void: VoidAuthorization) -> None:
        self._uow = uow
        self._void = void

    async def __call__(self, idempotency_key: str, reason: str) -> Payment | None:
        async with self._uow.read() as tx:
            payment = await tx.payments.get_by_key(idempotency_key)
        if payment is None:
            return None
        return await self._void(payment.payment_id, reason)
