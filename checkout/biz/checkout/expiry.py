"""Session expiry: an OPEN session past its expires_at gives its stock back and frees its cart.

Protects DESIGN.md §4.4 (no reservation outlives its TTL): the session becomes EXPIRED and its cart
ACTIVE in one transaction, then its reservations are released (DLQ on failure; the warehouse's own
TTL sweeper is the last line).
"""

from __future__ import annotations

from checkout.biz.checkout.compensations import Compensator
from checkout.biz.ports import UnitOfWork
from checkout.model.cart import CartStatus
from checkout.model.compensation import Operation
from checkout.model.session import Session

__all__ = ["SessionExpiry"]


class SessionExpiry:
    def __init__(self, uow: UnitOfWork, compensator: Compensator) -> None:
        self._uow = uow
        self._compensator = compensator

    async def run_once(self, limit: int = 100) -> int:
        """One sweep (the worker's single pass); returns how many sessions expired."""
        return len(await self._expire(limit, None))

    async def expire_for_cart(self, cart_id: str) -> bool:
        """Expire the cart's own OPEN session if it is past due (StartCheckout on a stale session)."""
        return bool(await self._expire(1, cart_id))

    async def _expire(self, limit: int, cart_id: str | None) -> list[Session]:
        async with self._uow.transaction() as tx:
            expired = await tx.sessions.expire_due(limit, cart_id=cart_id)
            for session in expired:
                await tx.carts.transition(session.cart_id, {CartStatus.CHECKOUT}, CartStatus.ACTIVE)
        for session in expired:
            await self._compensator.attempt_or_record(
                session.session_id,
                Operation.RELEASE_RESERVATIONS,
                {"reservation_ref": session.session_id, "reason": "checkout session expired"},
            )
        return expired
