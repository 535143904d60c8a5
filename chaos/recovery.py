"""The bounded recovery window after the load: wait until the mesh has finished what it owes.

Owed work, counted in one read of the database: outbox rows not yet sent (five services), failed
compensations pending, sessions CONFIRMING or AWAITING_PAYMENT, orders PENDING_PAYMENT, reservations
held past their expiry; and every mesh process up. The window ends when all of it is zero or at its
bound, whichever comes first; the checker runs after it either way (and says what is still owed).

The DLQ's own backoff starts at a minute and grows to hours, longer than any window; so, as an
operator replaying the dead-letter queue would, the window makes pending compensations due now
(``next_attempt_at = now()``) every pass. ``nudge_dlq=False`` leaves the backoff alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from chaos.stack import ChaosStack
from devstack.check import OUTBOX_SERVICES, sqlalchemy_to_libpq
from devstack.mesh import MeshError
from infra.migrate import SCHEMAS

__all__ = ["Owed", "owed", "wait_recovered"]

_OWED_SQL = " UNION ALL ".join(
    [f"SELECT 'outbox unsent', count(*) FROM {SCHEMAS[s]}.outbox WHERE status <> 'sent'" for s in OUTBOX_SERVICES]
    + [
        f"SELECT 'dlq pending', count(*) FROM {SCHEMAS['checkout']}.failed_compensations WHERE status = 'pending'",
        f"SELECT 'sessions confirming', count(*) FROM {SCHEMAS['checkout']}.checkout_sessions"
        " WHERE status = 'CONFIRMING'",
        f"SELECT 'sessions awaiting payment', count(*) FROM {SCHEMAS['checkout']}.checkout_sessions"
        " WHERE status = 'AWAITING_PAYMENT'",
        f"SELECT 'orders pending payment', count(*) FROM {SCHEMAS['order']}.orders WHERE status = 'PENDING_PAYMENT'",
        f"SELECT 'holds past expiry', count(*) FROM {SCHEMAS['warehouse']}.reservations"
        " WHERE status = 'active' AND expires_at < now()",
    ]
)
_NUDGE_SQL = (
    f"UPDATE {SCHEMAS['checkout']}.failed_compensations SET next_attempt_at = now()"
    " WHERE status = 'pending' AND next_attempt_at > now()"
)


@dataclass(frozen=True)
class Owed:
    counts: dict[str, int]
    down: tuple[str, ...]

    @property
    def settled(self) -> bool:
        return not self.down and not any(self.counts.values())

    def describe(self) -> str:
        parts = [f"{name} {n}" for name, n in self.counts.items() if n]
        parts += [f"{name} down" for name in self.down]
        return ", ".join(parts) or "nothing owed"


def _healthy(stack: ChaosStack, name: str) -> bool:
    try:
        stack.mesh.wait_healthy(name, timeout=2.0)
    except MeshError:
        return False
    return True


def owed(database_url: str, *, nudge_dlq: bool) -> dict[str, int]:
    import psycopg

    with psycopg.connect(sqlalchemy_to_libpq(database_url), autocommit=True, connect_timeout=10) as conn:
        if nudge_dlq:
            conn.execute(_NUDGE_SQL)
        counts: dict[str, int] = {}
        for name, n in conn.execute(_OWED_SQL):
            counts[name] = counts.get(name, 0) + int(n)
    return counts


async def wait_recovered(
    stack: ChaosStack,
    *,
    seconds: float,
    nudge_dlq: bool = True,
    log: Callable[[str], object] = print,
    every_s: float = 5.0,
) -> tuple[Owed, float]:
    """Poll until nothing is owed or ``seconds`` pass; the last reading and how long it took."""
    started = time.monotonic()
    last_log = 0.0
    while True:
        down = [name for name in stack.mesh.pids if not await asyncio.to_thread(_healthy, stack, name)]
        try:
            counts = await asyncio.to_thread(owed, stack.endpoints.database_url, nudge_dlq=nudge_dlq)
        except Exception as exc:
            counts = {f"database unreadable ({type(exc).__name__})": 1}
        state = Owed(counts, tuple(down))
        elapsed = time.monotonic() - started
        if state.settled or elapsed >= seconds:
            return state, elapsed
        if elapsed - last_log >= every_s:
            log(f"chaos: recovering [{elapsed:5.0f}s / {seconds:.0f}s] {state.describe()}")
            last_log = elapsed
        await asyncio.sleep(1.0)
