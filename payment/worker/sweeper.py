"""The sweeper worker: every interval (at once again while it finds more), :func:`payment.biz.sweep.sweep_once`
and then the reconciliation of the providers' intents (:class:`payment.biz.reconcile.Reconciler`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from payment.biz.ports import PaymentRepo
from payment.biz.providers import Providers
from payment.biz.reconcile import Reconciler
from payment.biz.sweep import SweepPolicy, sweep_once

__all__ = ["sweeper_worker"]

log = logging.getLogger("kassa.payment.sweeper")


def sweeper_worker(
    repo: PaymentRepo, providers: Providers, policy: SweepPolicy, interval_seconds: float
) -> Callable[[], Awaitable[None]]:
    reconciler = Reconciler(
        repo, providers, grace_seconds=policy.abandoned_seconds, lookback_seconds=policy.reconcile_lookback_seconds
    )

    async def run() -> None:
        while True:
            more = False
            try:
                report = await sweep_once(repo, providers, policy)
                more = report.more
                report.outcomes.update(await reconciler.run_once(time.time()))
                if report:
                    log.info("payment sweep: %s", dict(report.outcomes))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("payment sweep failed; retrying")
            if not more:
                await asyncio.sleep(interval_seconds)

    return run
