"""UpdateCheckoutState, PreviewOrder and GetCheckoutSession: fill in a session and show its totals.

Protects DESIGN.md §4.6 (every field is validated, naming it, before anything is stored; a card
number is refused so it is never stored) and ownership. The preview commits nothing: no stock,
coupon or money is touched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from checkout.biz.checkout.access import load_owned_session
from checkout.biz.checkout.pricing_engine import PricingEngine, PricingInput
from checkout.biz.ports import UnitOfWork
from checkout.biz.validation import validate_notes, validate_payment_method
from checkout.model.catalog import Address
from checkout.model.session import Preview, Session, SessionStatus
from infra.caller import Caller
from infra.errors import FailedPrecondition, InvalidArgument, Reason
from infra.validation import check_address, check_email

__all__ = ["SHIPPING_METHODS", "CheckoutState", "StateUpdate", "session_not_open"]

SHIPPING_METHODS = ("standard", "express")
MAX_PROMOTION_CODES = 5
MAX_CODE_LENGTH = 64
MAX_NOTES = 500


@dataclass(frozen=True)
class StateUpdate:
    """Fields to replace; None keeps the stored value (an empty value clears it)."""

    email: str | None = None
    shipping_address: Address | None = None
    clear_shipping_address: bool = False
    billing_address: Address | None = None
    clear_billing_address: bool = False
    shipping_method: str | None = None
    payment_method: str | None = None
    promotion_codes: list[str] | None = None
    notes: str | None = None


def session_not_open(session: Session, now: datetime) -> FailedPrecondition:
    """The refusal for a session that can no longer change, with the reason a client acts on."""
    if session.status is SessionStatus.EXPIRED or (session.status is SessionStatus.OPEN and session.is_expired(now)):
        return FailedPrecondition(
            f"checkout session {session.session_id} expired; start checkout again",
            reason=Reason.SESSION_EXPIRED,
            metadata={"session_id": session.session_id},
        )
    metadata = {"session_id": session.session_id, "status": session.status.value}
    if session.order_id:
        metadata["order_id"] = session.order_id
    return FailedPrecondition(
        f"checkout session {session.session_id} is {session.status.value}", reason=Reason.SESSION_NOT_OPEN,
        metadata=metadata,
    )  # fmt: skip


def validate_update(update: StateUpdate) -> dict[str, Any]:
    """The validated column changes; raises InvalidArgument naming the first bad field."""
    changes: dict[str, Any] = {}
    if update.email is not None:
        changes["email"] = check_email("email", update.email) if update.email.strip() else ""
    if update.shipping_address is not None:
        changes["shipping_address"] = check_address("shipping_address", update.shipping_address).to_dict()
    elif update.clear_shipping_address:
        changes["shipping_address"] = None
    if update.billing_address is not None:
        changes["billing_address"] = check_address("billing_address", update.billing_address).to_dict()
    elif update.clear_billing_address:
        changes["billing_address"] = None
    if update.shipping_method is not None:
        method = update.shipping_method.strip().lower()
        if method and method not in SHIPPING_METHODS:
            raise InvalidArgument("shipping_method", f"must be one of {', '.join(SHIPPING_METHODS)}")
        changes["shipping_method"] = method
    if update.payment_method is not None:
        changes["payment_method"] = (
            validate_payment_method(update.payment_method) if update.payment_method.strip() else ""
        )
    if update.promotion_codes is not None:
        codes = list(dict.fromkeys(c.strip().upper() for c in update.promotion_codes))
        if len(codes) > MAX_PROMOTION_CODES:
            raise InvalidArgument("promotion_codes", f"at most {MAX_PROMOTION_CODES} codes")
        for i, code in enumerate(codes):
            bare = code.replace("-", "").replace("_", "")
            if not code or len(code) > MAX_CODE_LENGTH or not (bare.isascii() and bare.isalnum()):
                raise InvalidArgument(f"promotion_codes[{i}]", "must be 1-64 letters, digits, '-' or '_'")
        changes["promotion_codes"] = codes
    if update.notes is not None:
        changes["notes"] = validate_notes(update.notes, MAX_NOTES)
    return changes


def _changed(session: Session, changes: dict[str, Any]) -> Session:
    """The session as ``changes`` (validated column values, addresses as dicts) will leave it."""
    fields: dict[str, Any] = {
        name: Address.from_dict(value) if name in ("shipping_address", "billing_address") else value
        for name, value in changes.items()
    }
    return replace(session, **fields)


def pricing_input(session: Session) -> PricingInput:
    return PricingInput(
        currency_code=session.currency_code,
        customer_id=session.customer_id,
        customer_email=session.email,
        lines=session.lines,
        shipping_address=session.shipping_address,
        shipping_method=session.shipping_method,
        promotion_codes=session.promotion_codes,
    )


class CheckoutState:
    """``reuse_seconds``: how long PreviewOrder shows the totals UpdateCheckoutState stored with a change."""

    def __init__(self, uow: UnitOfWork, engine: PricingEngine, *, reuse_seconds: float = 0.0) -> None:
        self._uow = uow
        self._engine = engine
        self._reuse_seconds = reuse_seconds

    async def get(self, caller: Caller, session_id: str) -> Session:
        return await load_owned_session(self._uow, caller, session_id)

    async def update(self, caller: Caller, session_id: str, update: StateUpdate) -> Session:
        """Validate everything, price the session as it will be, and store both in one write (OPEN sessions only).

        The write is conditional on the session being as it was read; one that changed meanwhile (another
        update) is updated first and priced after, as it then is.
        """
        changes = validate_update(update)
        session = await load_owned_session(self._uow, caller, session_id)
        now = datetime.now(UTC)
        if session.status is not SessionStatus.OPEN or session.is_expired(now):
            raise session_not_open(session, now)
        preview = await self._engine.compute(pricing_input(_changed(session, changes)))
        async with self._uow.single() as tx:
            current = await tx.sessions.update_state(
                session.session_id, changes, preview, unchanged_since=session.updated_at
            )
        if current is not None:
            return current
        return await self._update_changed(session.session_id, changes)

    async def _update_changed(self, session_id: str, changes: dict[str, Any]) -> Session:
        """The session changed after it was read: store the changes (clearing its totals), then price it."""
        async with self._uow.transaction() as tx:
            current = await tx.sessions.update_state(session_id, changes, None)
            refused = await tx.sessions.get(session_id) if current is None else None
        if current is None:
            assert refused is not None
            raise session_not_open(refused, datetime.now(UTC))
        preview = await self._engine.compute(pricing_input(current))
        # Stored only while the session is still what was priced: one changed again meanwhile keeps no totals
        # (PreviewOrder then prices it afresh) rather than totals of another state.
        async with self._uow.single() as tx:
            stored = await tx.sessions.update_state(current.session_id, {}, preview, unchanged_since=current.updated_at)
        current.preview = preview
        if stored is not None:
            current.updated_at = stored.updated_at
        return current

    async def preview(self, caller: Caller, session_id: str) -> Preview:
        """The totals of a session: for an OPEN one, those stored with its last change when that was less than
        ``reuse_seconds`` ago (ConfirmCheckout prices it afresh anyway), else fresh ones; for one past that
        stage, its last totals."""
        session = await load_owned_session(self._uow, caller, session_id)
        if session.preview is not None and (session.status is not SessionStatus.OPEN or self._fresh(session)):
            return session.preview
        return await self._engine.compute(pricing_input(session))

    def _fresh(self, session: Session) -> bool:
        changed = session.updated_at
        return changed is not None and (datetime.now(UTC) - changed).total_seconds() < self._reuse_seconds
