"""HandleWebhook: apply a provider's event once, and only if it moves the payment forward."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping

from kernel.errors import InvalidArgument
from kernel.validation import text_problem
from payment.biz.ports import PaymentProvider, UnitOfWork
from payment.biz.reconcile import OPEN_INTENT, cancel_if_orphaned, orphaned
from payment.model.payment import Attempt, NothingToDo, Payment, PaymentStatus, Transition
from payment.model.provider import EventKind, ProviderError, ProviderEvent

__all__ = ["HandleWebhook", "already_applied", "apply_provider_event", "nothing_to_do", "plan_for"]

log = logging.getLogger("kassa.payment.webhook")

S = PaymentStatus

# Forward-only: each effect lists the statuses it may move a payment from, so an event that
# arrives late (amount_capturable_updated after succeeded) finds no match and changes nothing.
_SOURCES: dict[EventKind, frozenset[PaymentStatus]] = {
    EventKind.AUTHORIZED: frozenset({S.PENDING, S.REQUIRES_ACTION}),
    EventKind.FAILED: frozenset({S.PENDING, S.REQUIRES_ACTION}),
    EventKind.CAPTURED: frozenset({S.PENDING, S.REQUIRES_ACTION, S.AUTHORIZED, S.CAPTURING}),
    EventKind.CANCELED: frozenset({S.PENDING, S.REQUIRES_ACTION, S.AUTHORIZED, S.VOIDING}),
    EventKind.REFUNDED: frozenset({S.CAPTURED, S.PARTIALLY_REFUNDED}),
}


class HandleWebhook:
    """Verify, deduplicate, apply. Protects invariant 5 (no event applied twice) and 2/3 (true money state).

    The signature is checked before anything else. The (provider, event id) row is
    inserted in the same transaction as the effect, so a redelivered event is a no-op
    even when two deliveries race. Returns (event id, duplicate).

    The usual webhook, of an outcome the payment already shows (the authorization or capture Kassa
    made itself), costs one autocommit statement: it reads the payment and whether the event was seen,
    and records the event only when it has nothing to apply or cancel (:func:`nothing_to_do`, the SQL
    form of :func:`already_applied`). A webhook with something to apply (one that overtook the synchronous
    answer, or found it still on its way to the database: about one in eight on the bench) claims the event and
    applies its transition in one more autocommit statement, guarded by the statuses it may move the payment
    from, as Postgres sees the row when it updates it (an authorization then reads the payment, to cancel an
    orphaned intent). Refunds, whose effect depends on what is refunded already, and an event whose intent
    another payment holds, go the whole way (claim, lock, apply, in one transaction).

    An authorization that arrives for a payment that holds nothing any more (voided, failed:
    a success after the end, DESIGN.md §3) is cancelled at once; when the provider cannot be
    reached for that, the sweeper's reconciliation cancels it later.
    """

    def __init__(self, uow: UnitOfWork, providers: Mapping[str, PaymentProvider]) -> None:
        self._uow = uow
        self._providers = providers

    async def __call__(self, provider_name: str, payload: bytes, signature: str) -> tuple[str, bool]:
        uow = self._uow
        provider = self._providers.get(provider_name)
        if provider is None:
            raise InvalidArgument("provider", f"unknown payment provider {provider_name!r}")
        event = provider.parse_event(payload, signature)
        _check_storable(event)
        payment_id: uuid.UUID | None = None
        if event.intent is not None:
            try:
                payment_id = uuid.UUID(event.intent.metadata.get("payment_id", ""))
            except ValueError:
                payment_id = None
        if payment_id is not None and event.intent is not None:
            # The usual webhook tells of an outcome Kassa applied itself: one statement records it, or finds it
            # recorded, or finds something to do (then the whole way, below).
            async with uow.single() as tx:
                found = await tx.provider_events.record_if_nothing_to_do(
                    provider.name, event, payment_id, nothing_to_do(event)
                )
            if found.seen:
                return event.event_id, True
            if found.nothing_to_do:
                return event.event_id, not found.recorded
            # Something to apply (a webhook that overtook the answer of the call that caused it, say): claim and
            # apply in one statement when the plan holds whatever the payment became since it was read (the status
            # read is passed for the outcome counters only: stale if the payment moved meanwhile, see the repo).
            transition = None if found.payment is None else _planned_whatever_came_since(event, found.payment)
            if found.payment is not None and transition is not None:
                async with uow.statement() as tx:
                    claimed, done = await tx.payments.apply_provider_event(
                        payment_id, transition, provider.name, event, found.payment.status
                    )
                if claimed:
                    if event.kind == EventKind.AUTHORIZED:
                        if done is None:  # it moved meanwhile (the authorization's answer applied first)
                            async with uow.read() as tx:
                                done = await tx.payments.get(payment_id)
                        await _cancel_if_orphaned(uow, provider, event, done)
                    return event.event_id, False
        duplicate, payment = await apply_provider_event(uow, provider.name, event, payment_id)
        if not duplicate and event.kind == EventKind.AUTHORIZED:
            await _cancel_if_orphaned(uow, provider, event, payment)
        return event.event_id, duplicate


async def _cancel_if_orphaned(
    uow: UnitOfWork, provider: PaymentProvider, event: ProviderEvent, payment: Payment | None
) -> None:
    """A late authorization of a payment that holds nothing any more is cancelled at once (else by the sweeper)."""
    if event.intent is None or payment is None:
        return
    try:
        await cancel_if_orphaned(uow, provider, event.intent, payment)
    except ProviderError as exc:
        log.warning("could not cancel intent %s after a late authorization: %s", event.intent.intent_id, exc)


# The events whose transition (plan_for) is the same from every status it applies from: what it writes depends on
# the event and on the payment's fixed amount only, so the update's guard (status IN sources, checked by Postgres
# on the row as it is when the update runs) is all of plan_for that can change. Not refunds: their amount
# depends on what is refunded already, which the whole way reads under the row's lock.
_PLANNED_FROM_ANY_SOURCE = frozenset({EventKind.AUTHORIZED, EventKind.FAILED, EventKind.CAPTURED, EventKind.CANCELED})


def _planned_whatever_came_since(event: ProviderEvent, payment: Payment) -> Transition | None:
    """The transition of ``event``, planned on ``payment`` as read without a lock, if it is the one :func:`plan_for`
    would plan on any later version of the row that its guard lets it apply to; else None (the whole way)."""
    if event.kind not in _PLANNED_FROM_ANY_SOURCE:
        return None
    return plan_for(event, payment)


async def apply_provider_event(
    uow: UnitOfWork, provider: str, event: ProviderEvent, payment_id: uuid.UUID | None
) -> tuple[bool, Payment | None]:
    """Dedupe the event and apply its effect (:func:`plan_for`) in one transaction; (duplicate, payment after the
    effect). The payment is locked, and read in its latest version even if it changed since the claim's snapshot."""
    async with uow.transaction() as tx:
        claimed, claimed_for = await tx.provider_events.claim(provider, event, payment_id)
        if not claimed:
            return True, None
        payment = None if claimed_for is None else await tx.payments.lock(claimed_for)
        if payment is None:
            return False, None
        transition = plan_for(event, payment)
        if transition is None:
            return False, payment
        done = await tx.payments.apply(payment.payment_id, transition)
    return False, done or payment


def nothing_to_do(event: ProviderEvent) -> NothingToDo:
    """When ``event`` leaves a payment as it is (:func:`already_applied`), for the statement that records it."""
    intent = event.intent
    return NothingToDo(
        sources=_SOURCES.get(event.kind, frozenset()),
        refunded=intent.amount_refunded if intent is not None and event.kind == EventKind.REFUNDED else None,
        open_intent=event.kind == EventKind.AUTHORIZED and intent is not None and intent.status in OPEN_INTENT,
    )


def already_applied(event: ProviderEvent, provider: str, payment: Payment | None) -> bool:
    """The event says what the payment already shows (a webhook for the authorization or capture Kassa made
    itself): nothing to apply or cancel, so it is only recorded, with no transaction and no lock.

    A payment's status only moves forward, so an event that moves nothing now never will: the read needn't
    be locked. An authorization still goes the whole way when its intent may be orphaned. What
    :func:`nothing_to_do` has the recording statement evaluate in SQL (a test holds the two equal)."""
    if payment is None or event.intent is None or plan_for(event, payment) is not None:
        return False
    return event.kind != EventKind.AUTHORIZED or orphaned(event.intent, provider, payment) is None


_MAX_ID = 255


def _check_storable(event: ProviderEvent) -> None:
    """Refuse (INVALID_ARGUMENT naming payload) an event whose values Postgres can't hold or the payment
    must not take: ids with control characters or longer than any provider's (a NUL in text or jsonb, a
    unique-index entry too long to index: INTERNAL), texts with a NUL, negative amounts (the checks on
    payments would refuse the update: INTERNAL). The signature proved who sent it, not that it is sane."""
    ids = {"id": event.event_id, "type": event.raw_type}
    texts: dict[str, str] = {}
    amounts: dict[str, int] = {}
    if event.intent is not None:
        intent = event.intent
        ids["payment intent id"] = intent.intent_id
        texts = {"failure code": intent.failure_code or "", "failure message": intent.failure_message or "",
                 "next action url": intent.next_action_url or "",
                 **{f"metadata {k!r}": f"{k}{v}" for k, v in intent.metadata.items()}}  # fmt: skip
        amounts = {"amount received": intent.amount_received, "amount refunded": intent.amount_refunded}
    for name, value in ids.items():
        problem = "is longer than 255 characters" if len(value) > _MAX_ID else text_problem(value)
        if problem:
            raise InvalidArgument("payload", f"the event's {name} {problem}")
    for name, value in texts.items():
        if "\x00" in value:
            raise InvalidArgument("payload", f"the event's {name} must not contain NUL")
    for name, amount in amounts.items():
        if amount < 0:
            raise InvalidArgument("payload", f"the event's {name} must not be negative")


def plan_for(event: ProviderEvent, payment: Payment) -> Transition | None:
    """The transition ``event`` causes on ``payment`` (locked by the caller), or None."""
    intent = event.intent
    sources = _SOURCES.get(event.kind)
    if intent is None or sources is None or payment.status not in sources:
        return None
    attempt = Attempt(
        "webhook",
        {"event_id": event.event_id, "type": event.raw_type},
        {"intent_id": intent.intent_id, "status": intent.status.value},
        event.kind.value,
    )
    base: dict[str, object] = {"provider_payment_id": intent.intent_id}
    if event.kind == EventKind.AUTHORIZED:
        return Transition(S.AUTHORIZED, sources, {**base, "next_action_url": None}, "PaymentAuthorized", {}, attempt)
    if event.kind == EventKind.FAILED:
        code = intent.failure_code or "payment_failed"
        changes = {**base, "failure_code": code, "failure_message": intent.failure_message, "next_action_url": None}
        return Transition(S.FAILED, sources, changes, "PaymentFailed", {"failure_code": code}, attempt)
    if event.kind == EventKind.CAPTURED:
        captured = min(intent.amount_received, payment.amount.amount_minor)
        extra = {"captured_amount": {"currency_code": payment.amount.currency_code, "amount_minor": captured}}
        return Transition(S.CAPTURED, sources, {**base, "captured_minor": captured}, "PaymentCaptured", extra, attempt)
    if event.kind == EventKind.CANCELED:
        return Transition(
            S.VOIDED,
            sources,
            {**base, "next_action_url": None},
            "PaymentVoided",
            {"reason": "canceled at the provider"},
            attempt,
        )
    refunded = min(intent.amount_refunded, payment.captured_minor)
    if refunded <= payment.refunded_minor:
        return None
    to = S.REFUNDED if refunded == payment.captured_minor else S.PARTIALLY_REFUNDED
    extra = {
        "refund_amount": {
            "currency_code": payment.amount.currency_code,
            "amount_minor": refunded - payment.refunded_minor,
        }
    }
    return Transition(to, sources, {"refunded_minor": refunded}, "PaymentRefunded", extra, attempt)
