"""AuthorizePayment: hold the amount at the provider, exactly once per idempotency key."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from kernel.errors import AlreadyExists, Reason
from kernel.money import Money
from payment.biz.common import after_provider, apply, before_provider, declined, record_attempt, unavailable
from payment.biz.ports import PaymentProvider, UnitOfWork
from payment.biz.providers import Providers, provider_unavailable
from payment.model.payment import (
    COD_PROVIDER,
    FINISHED_AUTHORIZATION,
    Attempt,
    NewPayment,
    Payment,
    PaymentStatus,
    Transition,
)
from payment.model.provider import (
    IntentRequest,
    IntentStatus,
    ProviderDeclined,
    ProviderError,
    ProviderIntent,
    ProviderRejected,
    ProviderUnavailable,
)

__all__ = ["AuthorizeCommand", "AuthorizePayment"]

log = logging.getLogger("kassa.payment.authorize")

S = PaymentStatus
_FROM_PENDING = frozenset({S.PENDING})


@dataclass(frozen=True)
class AuthorizeCommand:
    idempotency_key: str
    order_ref: str
    customer_id: str
    amount: Money
    payment_method: str
    return_url: str


class AuthorizePayment:
    """Authorize once per key. Protects invariant 2 (no double charge) and 3 (no money leak).

    The payment row is written (PENDING) before the provider is called, keyed by the
    caller's idempotency key, and the provider gets the same key: a retry, a double
    click or a crash between the two can never create a second intent. A timeout leaves
    the row PENDING (outcome unknown); a retry resolves it, and VoidAuthorization can
    find and cancel the intent by the same key. A finished payment is returned as is,
    and a decline is raised again, with no new provider call.

    A new authorization goes to the first provider whose circuit breaker is closed (a
    fallback while the primary fails fast); a retry stays with the provider the row
    records. With every breaker open nothing is written: UNAVAILABLE at once.
    """

    def __init__(self, uow: UnitOfWork, providers: Providers) -> None:
        self._uow = uow
        self._providers = providers

    async def __call__(self, cmd: AuthorizeCommand) -> Payment:
        uow, providers = self._uow, self._providers
        is_cod = cmd.payment_method == "cod"
        chosen = None if is_cod else providers.for_authorization()
        if chosen is None and not is_cod:
            async with uow.read() as tx:
                existing = await tx.payments.get_by_key(cmd.idempotency_key)
            if existing is None or existing.status not in FINISHED_AUTHORIZATION:
                raise provider_unavailable(providers.primary.name, "circuit open")
        new = NewPayment(
            payment_id=uuid.uuid4(),
            idempotency_key=cmd.idempotency_key,
            order_ref=cmd.order_ref,
            customer_id=cmd.customer_id,
            amount=cmd.amount,
            payment_method=cmd.payment_method,
            provider=COD_PROVIDER if chosen is None else chosen.name,
            return_url=cmd.return_url,
        )
        async with uow.single() as tx:
            payment, created = await tx.payments.create_or_get(new)
        if not created and not payment.same_request(new):
            raise AlreadyExists(
                "idempotency_key was already used for a different payment",
                reason=Reason.IDEMPOTENCY_KEY_REUSED,
                metadata={"field": "idempotency_key", "payment_id": str(payment.payment_id)},
            )
        if payment.status in FINISHED_AUTHORIZATION:
            return _answer(payment)
        if is_cod:
            done = await apply(uow, payment.payment_id, Transition(S.CASH_ON_DELIVERY, _FROM_PENDING))
            return _answer(done or await _reload(uow, payment))

        provider = providers.holding(payment.provider)
        request = IntentRequest(
            amount_minor=payment.amount.amount_minor,
            currency_code=payment.amount.currency_code,
            payment_method=payment.payment_method,
            return_url=payment.return_url,
            # kassa_session_id lets the provider's ledger be reconciled against checkout sessions
            # (capture adds kassa_order_id); payment_id routes webhooks.
            metadata={
                "payment_id": str(payment.payment_id),
                "order_ref": payment.order_ref,
                "kassa_session_id": payment.order_ref,
            },
        )
        summary = {
            "amount_minor": request.amount_minor,
            "currency_code": request.currency_code,
            "payment_method": request.payment_method,
        }
        await before_provider("authorize", payment.payment_id)
        try:
            intent = await provider.create_intent(request, payment.idempotency_key)
        except ProviderUnavailable as exc:
            await record_attempt(
                uow,
                payment.payment_id,
                Attempt("authorize", summary, {"code": exc.code, "message": exc.message}, "unavailable"),
            )
            raise unavailable(payment.payment_id, exc) from exc
        except (ProviderDeclined, ProviderRejected) as exc:
            await after_provider("authorize", payment.payment_id)
            intent_id = exc.intent_id if isinstance(exc, ProviderDeclined) else None
            transition = Transition(
                S.DECLINED,
                _FROM_PENDING,
                changes={"failure_code": exc.code, "failure_message": exc.message, "provider_payment_id": intent_id},
                event_type="PaymentDeclined",
                event_extra={"decline_code": exc.code},
                attempt=Attempt("authorize", summary, {"code": exc.code, "message": exc.message}, "declined"),
            )
            # None: the provider's webhook of this very decline got there first (handled by another replica, or while
            # this call awaited the answer) and the payment is FAILED, which _answer refuses as the decline it is.
            done = await apply(uow, payment.payment_id, transition)
            return _answer(done or await _reload(uow, payment))

        await after_provider("authorize", payment.payment_id)
        transition = _transition_for(intent, summary)
        done = await apply(uow, payment.payment_id, transition)
        if done is None:
            # A concurrent retry, a webhook or a void got there first.
            done = await _reload(uow, payment)
            if done.status in (S.VOIDING, S.VOIDED):
                await _cancel_orphan(uow, provider, done, intent)
        return _answer(done)


def _transition_for(intent: ProviderIntent, summary: dict[str, object]) -> Transition:
    response = {"intent_id": intent.intent_id, "status": intent.status.value}
    changes: dict[str, object] = {"provider_payment_id": intent.intent_id}
    if intent.status == IntentStatus.REQUIRES_ACTION:
        changes["next_action_url"] = intent.next_action_url
        return Transition(
            S.REQUIRES_ACTION,
            _FROM_PENDING,
            changes,
            "PaymentRequiresAction",
            {"next_action_url": intent.next_action_url or ""},
            Attempt("authorize", summary, response, "requires_action"),
        )
    if intent.status == IntentStatus.REQUIRES_CAPTURE:
        return Transition(
            S.AUTHORIZED,
            _FROM_PENDING,
            changes,
            "PaymentAuthorized",
            {},
            Attempt("authorize", summary, response, "authorized"),
        )
    if intent.status == IntentStatus.CANCELED:
        return Transition(
            S.VOIDED, _FROM_PENDING, changes, "PaymentVoided", {}, Attempt("authorize", summary, response, "canceled")
        )
    # FAILED, or a status a manual-capture intent must not have: nothing is held for us.
    changes.update(failure_code=intent.failure_code or "authorization_failed", failure_message=intent.failure_message)
    return Transition(
        S.DECLINED,
        _FROM_PENDING,
        changes,
        "PaymentDeclined",
        {"decline_code": changes["failure_code"]},
        Attempt("authorize", summary, response, "declined"),
    )


async def _cancel_orphan(uow: UnitOfWork, provider: PaymentProvider, payment: Payment, intent: ProviderIntent) -> None:
    """A void ran while we were authorizing: cancel what we just created so no hold is left behind."""
    if intent.status not in (IntentStatus.REQUIRES_CAPTURE, IntentStatus.REQUIRES_ACTION):
        return
    try:
        canceled = await provider.cancel(intent.intent_id, f"void-{payment.payment_id}")
        outcome = {"status": canceled.status.value}
    except ProviderError as exc:
        log.warning("could not cancel intent %s of voided payment %s: %s", intent.intent_id, payment.payment_id, exc)
        outcome = {"code": exc.code, "message": exc.message}
    await record_attempt(uow, payment.payment_id, Attempt("void", {"intent_id": intent.intent_id}, outcome, "orphan"))


async def _reload(uow: UnitOfWork, payment: Payment) -> Payment:
    async with uow.read() as tx:
        return await tx.payments.get(payment.payment_id) or payment


def _answer(payment: Payment) -> Payment:
    """The payment, or the refusal a failed one is: a retry of an authorization whose provider webhook said it
    failed (FAILED) is answered PAYMENT_DECLINED like the call that saw the decline itself, not as a payment to
    be retried later."""
    if payment.status in (S.DECLINED, S.FAILED):
        raise declined(payment)
    return payment
