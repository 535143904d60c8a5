"""Recovery of sagas whose replica died mid-ConfirmCheckout.

Protects DESIGN.md §4.2 and §4.3: a session stuck in CONFIRMING (no progress for
``recovery_after_seconds``) is resumed forward when its order may exist (CreateOrder is idempotent
on the session, so resending it finds the order) and compensated when it can't, so no authorization
or reservation is left behind. Claiming moves the session's heartbeat, so replicas don't collide.
"""

from __future__ import annotations

import logging

from checkout.biz.checkout.confirm import ConfirmCheckout
from checkout.biz.policy import CheckoutPolicy
from checkout.biz.ports import UnitOfWork

__all__ = ["SagaRecovery"]

log = logging.getLogger("kassa.checkout.recovery")


class SagaRecovery:
    def __init__(self, uow: UnitOfWork, confirm: ConfirmCheckout, policy: CheckoutPolicy) -> None:
        self._uow = uow
        self._confirm = confirm
        self._policy = policy

    async def run_once(self, limit: int = 20) -> int:
        """One pass (the worker's unit); returns how many sessions were resolved."""
        async with self._uow() as tx:
            stuck = await tx.sessions.claim_stuck(self._policy.recovery_after_seconds, limit)
        done = 0
        for session in stuck:
            try:
                await self._confirm.recover(session)
                done += 1
            except Exception:
                log.exception("recovering checkout session %s failed; will retry", session.session_id)
        return done
