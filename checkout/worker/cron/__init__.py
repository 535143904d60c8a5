"""Periodic sweeps: the failed-compensation drain, saga recovery and session expiry."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ["every"]

log = logging.getLogger("kassa.checkout.cron")


def every(name: str, interval_seconds: float, one_pass: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[None]]:
    """A worker that runs ``one_pass`` forever; a pass that did work is followed at once by another."""

    async def run() -> None:
        while True:
            try:
                done = await one_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s pass failed; retrying", name)
                done = 0
            if not done:
                await asyncio.sleep(interval_seconds)

    return run
