"""The periodic worker loop every service uses: run a pass, and go again at once while there is more to do.

``every(name, interval, one_pass)`` builds the loop; ``one_pass`` returns something truthy when it should run
again at once (it did a full batch, or found work), falsy to wait ``interval_seconds``. A pass that raises is
logged and retried after the interval; cancellation (the runner's shutdown) ends the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ["every"]

log = logging.getLogger("kassa.worker")


def every(
    name: str,
    interval_seconds: float,
    one_pass: Callable[[], Awaitable[object]],
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> Callable[[], Awaitable[None]]:
    """A worker that runs ``one_pass`` until cancelled; a truthy result is followed at once by another pass.
    ``sleep`` waits between passes (a test records the waits instead)."""

    async def run() -> None:
        while True:
            try:
                more = await one_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s pass failed; retrying", name)
                more = False
            if not more:
                await sleep(interval_seconds)

    return run
