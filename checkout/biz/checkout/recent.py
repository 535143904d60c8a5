"""The checkout sessions this process wrote last, as written: what UpdateCheckoutState checks and prices a change
on without reading the session first.

Only a guarded write may rely on one: UpdateCheckoutState stores its change only while the session is still OPEN,
unexpired and unchanged since (its ``updated_at``: every write of a session sets it), so a session another request
or replica changed meanwhile is read and handled as it is now.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from datetime import UTC, datetime

from checkout.model.session import Session, SessionStatus
from kernel.caller import Caller

__all__ = ["RecentSessions"]


class RecentSessions:
    """Up to ``size`` sessions, the latest written first to stay."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._kept: OrderedDict[str, Session] = OrderedDict()

    def remember(self, session: Session) -> Session:
        """Keep a copy of ``session`` as just written (unless a later write of it is kept already); ``session``."""
        if self._size <= 0 or session.updated_at is None:
            return session
        kept = self._kept.get(session.session_id)
        if kept is None or kept.updated_at is None or kept.updated_at <= session.updated_at:
            self._kept[session.session_id] = replace(session)
        self._kept.move_to_end(session.session_id)
        while len(self._kept) > self._size:
            self._kept.popitem(last=False)
        return session

    def forget(self, session_id: str) -> None:
        """Drop the session (a saga started on it: whatever it becomes, this copy is no longer it)."""
        self._kept.pop(session_id, None)

    def recall(self, caller: Caller, session_id: str) -> Session | None:
        """The caller's session as last written here, if it was OPEN then and is not past its expiry (it may have
        changed since)."""
        kept = self._kept.get(session_id)
        if kept is None or kept.status is not SessionStatus.OPEN or not caller.owns(kept.customer_id):
            return None
        if kept.is_expired(datetime.now(UTC)):
            return None
        return kept
