"""The garbage collector of a long-running server: what startup built is frozen, so full collections skip it.

CPython's cyclic collector walks every object it tracks in each full collection. The ~100,000 objects a Kassa
process builds at startup (modules, protobuf descriptors, the app) never become garbage, yet every full collection
walked them again: 35-60 ms of CPU each on the 2-core test machine, and on a saturated machine a pause of up to a
quarter of a second (266 ms of wall time measured in warehouse during a ``make bench`` run) for every call in
flight.

:func:`settle`, called once as a server starts serving (by ``infra.runner`` once the service listens, by the gateway
before uvicorn starts), collects what startup left behind and freezes the rest (``gc.freeze``): later collections,
full ones included, walk only what the running service built. Cyclic garbage it makes is still collected; the
thresholds stay CPython's.

Measured in ``make bench`` (REST, closed loop at 16 in flight), the collector's own CPU across the run's Python
processes: 9.2-9.5 ms per checkout before, 6.3 ms frozen. Raising the young threshold as well (700 to 10,000) made
it 3.1-3.2 ms, but across 11 interleaved pairs of whole-mesh runs no gain showed, not even against the processes it
cannot touch (checkout's CPU per checkout rose by the same share as Postgres'), and its young collections took ~10 ms
each instead of ~1: not kept.
"""

from __future__ import annotations

import gc

__all__ = ["settle"]


def settle() -> None:
    """Collect, then freeze what the process built so far; once, when the server starts serving."""
    gc.collect()
    gc.freeze()
