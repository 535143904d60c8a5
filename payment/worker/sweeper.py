"""The sweeper worker: every interval (at once again while it finds more), :class:`payment.biz.sweep.SweepStuckPayments`
and then the reconciliation of the providers' intents (:class:`payment.biz.reconcile.ReconcileIntents`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from infra.worker import every
from payment.biz.reconcile import ReconcileIntents
from payment.biz.sweep import SweepStuckPayments

__all__ = ["sweeper_worker"]

log = logging.getLogger("kassa.payment.sweeper")


def sweeper_worker(
    sweep: SweepStuckPayments, reconcile: ReconcileIntents, interval_seconds: float
) -> Callable[[], Awaitable[None]]:
    async def one_pass() -> bool:
        report = await sweep()
        report.outcomes.update(await reconcile(time.time()))
        if report:
            log.info("payment sweep: %s", dict(report.outcomes))
        return report.more

    return every("payment sweep", interval_seconds, one_pass)
