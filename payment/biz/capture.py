"""CapturePayment: take the authorized money for an order, at most once."""

from __future__ import annotations

import uuid

from kernel.errors import InvalidArgument, Unavailable
from kernel.money import Money
from payment.biz.common import after_provider, apply, before_provider, invalid_state, load, unavailable
from payment.biz.ports import UnitOfWork
from payment.biz.providers import Providers
from payment.model.payment import CAPTURE_HOLDING, Attempt, Payment, PaymentStatus, Transition
from payment.model.provider import ProviderError, ProviderUnavailable

__all__ = ["CAPTURE_LEASE_SECONDS", "CapturePayment"]

S = PaymentStatus
# How long one capture may talk to the provider before another caller may take over.
CAPTURE_LEASE_SECONDS = 30


class CapturePayment:
    """Capture once. Protects invariant 2 (at most one captured payment per order, no double charge).

    The AUTHORIZED → CAPTURING claim is a conditional update, so of two concurrent
    captures only one talks to the provider; the other is told to retry and then
    sees CAPTURED. A partial unique index on order_id over capturing/captured rows
    refuses a second payment for the same order. The provider call uses the key
    ``capture-<payment_id>``, so even a capture retried after a crash charges once.
    A capture of a captured payment returns it unchanged. A capture never exceeds the
    authorization (refused here before the claim, and by the provider), and it writes
    Kassa's order id into the intent's metadata (``kassa_order_id``, beside the
    ``kassa_session_id`` authorize put there) so the provider's ledger reconciles with orders.
    """

    def __init__(self, uow: UnitOfWork, providers: Providers) -> None:
        self._uow = uow
        self._providers = providers

    async def __call__(self, payment_id: uuid.UUID, order_id: str, amount: Money | None) -> Payment:
        uow, providers = self._uow, self._providers
        claim = Transition(
            S.CAPTURING, frozenset({S.AUTHORIZED}), {"order_id": order_id}, lease_seconds=CAPTURE_LEASE_SECONDS
        )
        # The usual capture (of the whole authorized amount) claims first: one round trip, no read. Only if
        # the claim does not apply is the payment read to tell why (or to validate a partial amount).
        claimed = await apply(uow, payment_id, claim) if amount is None else None
        if claimed is None:
            payment = await load(uow, payment_id)
            if amount is not None:
                if amount.currency_code != payment.amount.currency_code:
                    raise InvalidArgument(
                        "amount.currency_code", f"must be the authorized currency {payment.amount.currency_code}"
                    )
                if amount.amount_minor > payment.amount.amount_minor:
                    raise InvalidArgument("amount.amount_minor", f"must not exceed the authorized {payment.amount}")
            if payment.status in CAPTURE_HOLDING - {S.CAPTURING}:
                if payment.order_id and payment.order_id != order_id:
                    raise invalid_state(payment, "capture", f"it was captured for order {payment.order_id}")
                return payment
            if payment.status == S.CASH_ON_DELIVERY:
                raise invalid_state(payment, "capture", "cash on delivery is collected on delivery, nothing is held")
            if payment.status not in (S.AUTHORIZED, S.CAPTURING):
                raise invalid_state(payment, "capture")
            claimed = await apply(uow, payment_id, claim)
        if claimed is None:
            current = await load(uow, payment_id)
            if current.status in CAPTURE_HOLDING - {S.CAPTURING}:
                return current
            if current.status == S.CAPTURING:
                raise Unavailable(
                    "a capture of this payment is in progress; retry", metadata={"payment_id": str(payment_id)}
                )
            raise invalid_state(current, "capture")

        to_capture = claimed.amount.amount_minor if amount is None else amount.amount_minor
        summary = {"intent_id": claimed.provider_payment_id, "amount_minor": to_capture, "order_id": order_id}
        metadata = {"kassa_order_id": order_id, "kassa_session_id": claimed.order_ref}
        await before_provider("capture", payment_id)
        try:
            provider = providers.holding(claimed.provider)
            intent = await provider.capture(
                claimed.provider_payment_id or "", to_capture, f"capture-{payment_id}", metadata
            )
        except ProviderUnavailable as exc:
            # Unknown outcome: keep the claim but let a retry take it at once (the provider key makes it safe).
            await apply(
                uow,
                payment_id,
                Transition(
                    S.CAPTURING,
                    frozenset({S.CAPTURING}),
                    lease_seconds=0,
                    attempt=Attempt("capture", summary, {"code": exc.code}, "unavailable"),
                ),
            )
            raise unavailable(payment_id, exc) from exc
        except ProviderError as exc:
            await after_provider("capture", payment_id)
            await apply(
                uow,
                payment_id,
                Transition(
                    S.AUTHORIZED,
                    frozenset({S.CAPTURING}),
                    {"order_id": None},
                    attempt=Attempt("capture", summary, {"code": exc.code, "message": exc.message}, "rejected"),
                ),
            )
            raise invalid_state(claimed, "capture", f"the provider refused: {exc.message}") from exc

        await after_provider("capture", payment_id)
        captured = Money(claimed.amount.currency_code, intent.amount_received)
        done = await apply(
            uow,
            payment_id,
            Transition(
                S.CAPTURED,
                frozenset({S.CAPTURING}),
                {"captured_minor": intent.amount_received},
                "PaymentCaptured",
                {"captured_amount": {"currency_code": captured.currency_code, "amount_minor": captured.amount_minor}},
                Attempt("capture", summary, {"intent_id": intent.intent_id, "status": intent.status.value}, "captured"),
            ),
        )
        return done or await load(uow, payment_id)
