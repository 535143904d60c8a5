"""The expiry worker: OPEN sessions past expires_at release their stock (SessionExpiry)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from checkout.biz.checkout.expiry import SessionExpiry
from infra.worker import every

__all__ = ["session_expiry_worker"]


def session_expiry_worker(expiry: SessionExpiry, interval_seconds: float = 5.0) -> Callable[[], Awaitable[None]]:
    return every("session-expiry", interval_seconds, expiry.run_once)
