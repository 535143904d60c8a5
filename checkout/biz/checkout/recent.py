"""The checkout sessions this process wrote last, as written: what UpdateCheckoutState checks and prices a change
on, and ConfirmCheckout checks and fingerprints a request on, without reading the session first.

Only a guarded write may rely on one: UpdateCheckoutState stores its change, and ConfirmCheckout's durable guard
(``begin_confirm_with_cart(unchanged_since=…)``) starts the saga, only while the session is still OPEN,
unexpired and unchanged since (its ``updated_at``: every write of a session sets it), so a session another request
or replica changed meanwhile is read and handled as it is now.

A copy serves the next calls of one checkout flow only: it is kept for ``ttl_seconds`` at most (never past the
session's own expiry), at most ``max_entries`` of them, and a session of more than ``max_lines`` lines is not kept
at all (its calls read it): a kept session holds the customer's decrypted contact and addresses.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from checkout.biz.kept import KeptWrites
from checkout.model.session import Session, SessionStatus
from kernel.caller import Caller

__all__ = ["RecentSessions"]


class RecentSessions(KeptWrites[Session]):
    """Up to ``max_entries`` sessions of at most ``max_lines`` lines, each for ``ttl_seconds`` after it was written
    (0 entries keeps none). ``forget(session_id)`` drops one a saga started on: whatever it becomes, this copy is no
    longer it."""

    def remember(self, session: Session) -> Session:
        """Keep a copy of ``session`` as just written (unless a later write of it is kept already); ``session``."""
        if session.updated_at is None:
            return session
        if len(session.lines) > self._max_lines:
            self._kept.pop(session.session_id)
            return session
        kept = self._kept.get(session.session_id)
        if kept is None or kept.updated_at is None or kept.updated_at <= session.updated_at:
            left = (session.expires_at - datetime.now(UTC)).total_seconds()
            self._kept.put(session.session_id, replace(session), ttl_seconds=left)
        return session

    def recall(self, caller: Caller, session_id: str) -> Session | None:
        """The caller's session as last written here, if it was OPEN then and is not past its expiry (it may have
        changed since)."""
        kept = self._kept.get(session_id)
        if kept is None or kept.status is not SessionStatus.OPEN or not caller.owns(kept.customer_id):
            return None
        if kept.is_expired(datetime.now(UTC)):
            return None
        return kept
