"""UpdateCheckoutState, PreviewOrder and GetCheckoutSession: fill in a session and show its totals.

Protects ownership and the session's state; the fields are checked, each named, by the servicer before the
use case is called (checkout.service.validation, DESIGN.md §4.6), so nothing is stored for a bad request.
The preview commits nothing: no stock, coupon or money is touched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from checkout.biz.checkout.access import load_owned_session
from checkout.biz.checkout.pricing_engine import PricingEngine, PricingInput
from checkout.biz.checkout.recent import RecentSessions
from checkout.biz.ports import UnitOfWork
from checkout.model.catalog import Address
from checkout.model.session import Preview, Session, SessionStatus
from kernel.caller import Caller
from kernel.errors import FailedPrecondition, Reason

__all__ = ["CheckoutState", "StateUpdate", "session_not_open"]


@dataclass(frozen=True)
class StateUpdate:
    """Fields to replace; None keeps the stored value (an empty value clears it). The servicer checks it, and
    puts it in its stored form, before the use case gets it (checkout.service.validation.check_state_update)."""

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


def _columns(update: StateUpdate) -> dict[str, Any]:
    """The column changes of an update the servicer checked (checkout.service.validation.check_state_update)."""
    changes: dict[str, Any] = {}
    if update.email is not None:
        changes["email"] = update.email
    if update.shipping_address is not None:
        changes["shipping_address"] = update.shipping_address.to_dict()
    elif update.clear_shipping_address:
        changes["shipping_address"] = None
    if update.billing_address is not None:
        changes["billing_address"] = update.billing_address.to_dict()
    elif update.clear_billing_address:
        changes["billing_address"] = None
    for name in ("shipping_method", "payment_method", "promotion_codes", "notes"):
        value = getattr(update, name)
        if value is not None:
            changes[name] = value
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
    """``reuse_seconds``: how long PreviewOrder shows the totals UpdateCheckoutState stored with a change.
    ``recent``: the sessions this process wrote last (StartCheckout's too, when it shares them), on which an update
    is priced without reading the session first; None reads it every time."""

    def __init__(
        self,
        uow: UnitOfWork,
        engine: PricingEngine,
        *,
        reuse_seconds: float = 0.0,
        recent: RecentSessions | None = None,
    ) -> None:
        self._uow = uow
        self._engine = engine
        self._reuse_seconds = reuse_seconds
        self._recent = recent or RecentSessions(0)

    async def get(self, caller: Caller, session_id: str) -> Session:
        return await load_owned_session(self._uow, caller, session_id)

    async def update(self, caller: Caller, session_id: str, update: StateUpdate) -> Session:
        """Price the session as the (checked) update will leave it, and store both in one write (OPEN sessions only).

        The write is conditional on the session being as it was read; one that changed meanwhile (another
        update) is updated first and priced after, as it then is.

        A session this process wrote last (``recent``) is priced as it was written, without a read; the write is
        conditional on it being unchanged since. One that changed, or whose pricing failed, is read and handled
        as it is now, so every answer, refusals included, is the one the session as it is now gives.
        """
        changes = _columns(update)
        if (kept := self._recent.recall(caller, session_id)) is not None:
            try:
                preview = await self._engine.compute(pricing_input(_changed(kept, changes)))
            except Exception:
                session = await load_owned_session(self._uow, caller, session_id)
                if (
                    session.updated_at != kept.updated_at
                    or session.status is not SessionStatus.OPEN
                    or session.is_expired(datetime.now(UTC))
                ):
                    return await self._update_read(session, changes)  # not the session priced: as it is now
                raise  # the session as it is now failed to price
            async with self._uow.single() as tx:
                current = await tx.sessions.update_state(
                    kept.session_id, changes, preview, unchanged_since=kept.updated_at
                )
            if current is not None:
                return self._recent.remember(current)
        session = await load_owned_session(self._uow, caller, session_id)
        return await self._update_read(session, changes)

    async def _update_read(self, session: Session, changes: dict[str, Any]) -> Session:
        """:meth:`update` of the session as just read."""
        now = datetime.now(UTC)
        if session.status is not SessionStatus.OPEN or session.is_expired(now):
            raise session_not_open(session, now)
        preview = await self._engine.compute(pricing_input(_changed(session, changes)))
        async with self._uow.single() as tx:
            current = await tx.sessions.update_state(
                session.session_id, changes, preview, unchanged_since=session.updated_at
            )
        if current is not None:
            return self._recent.remember(current)
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
            self._recent.remember(stored)
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
