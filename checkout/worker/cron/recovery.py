"""The recovery worker: resumes or compensates sagas stuck in CONFIRMING (SagaRecovery)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from checkout.biz.checkout.recovery import SagaRecovery
from infra.worker import every

__all__ = ["recovery_worker"]


def recovery_worker(recovery: SagaRecovery, interval_seconds: float = 15.0) -> Callable[[], Awaitable[None]]:
    return every("saga-recovery", interval_seconds, recovery.run_once)
