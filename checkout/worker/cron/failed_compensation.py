"""The DLQ worker: retries failed compensations with backoff until done or dead (FailedCompensationDrain)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from checkout.biz.checkout.dlq import FailedCompensationDrain
from infra.worker import every

__all__ = ["failed_compensation_worker"]


def failed_compensation_worker(
    drain: FailedCompensationDrain, interval_seconds: float = 10.0
) -> Callable[[], Awaitable[None]]:
    return every("failed-compensation", interval_seconds, drain.run_once)
