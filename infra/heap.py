"""The garbage collector of a long-running server: what startup built is frozen, and young collections are rarer.

CPython's cyclic collector, as set by default, runs a young collection every 700 net container allocations and
traverses every object it tracks in each full one. A Kassa service under load allocates thousands per checkout
(protobuf messages, SQLAlchemy rows and connections, spans, asyncio tasks), and the ~100,000 objects startup built
(modules, descriptors, the app) never become garbage, yet every full collection walks them again: 35-60 ms
each on the 2-core test machine, a pause for every call in flight.

:func:`settle`, called once as a server starts serving (by ``infra.runner`` once the service listens, by the gateway
before uvicorn starts):

- collects what startup left behind, then **freezes** the rest (``gc.freeze``): later collections skip it;
- raises the young generation's threshold from 700 to :data:`YOUNG_THRESHOLD`, so the collector runs about
  14 times less often (older generations keep their 10).

Measured in ``make bench`` (REST, closed loop at 16 in flight), the collector's own CPU across the run's Python
processes went from 9.2-9.5 ms per checkout to 3.1-3.2 ms (the bench's load generators' ~0.25 ms included):
checkout 4.4 to 1.6, warehouse 1.1 to 0.6, payment 1.2 to 0.3. Freezing alone made it 6.3; a threshold of 3,000
4.1; one of 50,000 3.9, with young collections of ~80 ms in checkout, where 10,000 keeps them near 10 ms. Cyclic
garbage is still collected: what a running service makes is never frozen; up to 10,000 more young objects (a few
MB) may wait for their collection.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "settle"]

YOUNG_THRESHOLD = 10_000


def settle() -> None:
    """Freeze what the process built so far and make young collections rarer; once, when the server is up."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
