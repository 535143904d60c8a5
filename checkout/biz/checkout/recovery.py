"""Recovery of sagas whose replica died (or stalled) mid-ConfirmCheckout.

Protects DESIGN.md §4.2 and §4.3: a session stuck in CONFIRMING — no progress for the saga's lease,
``recovery_after_seconds``, which is comfortably longer than any one step of a live saga — is claimed
(a new saga attempt: the live saga, should it wake up, is fenced out, see :mod:`lease`) and resumed
forward when its order may exist (CreateOrder is idempotent on the session, so resending it finds the
order) or failed — everything undone, through the same :meth:`Settlement.fail` the saga uses — when
it can't, so no authorization or reservation is left behind. Sessions are claimed one at a time, right
before each is worked on, so no claim waits behind another session's work.

The request that drove the saga is owed its answer (DESIGN.md §3's replay rule): the session's last
write keeps it for the request's key (:func:`~checkout.biz.checkout.replay.keep_answer`) — the order's
result when finished forward, the failure the undo started from, or "undone, start again" when the
process died mid-saga — so the client's repeat gets it, never SESSION_NOT_OPEN.
"""

from __future__ import annotations

import logging

from checkout.biz.checkout.lease import Lease, LeaseLost, Leases
from checkout.biz.checkout.replay import undone
from checkout.biz.checkout.settle import Settlement
from checkout.biz.policy import CheckoutPolicy
from checkout.biz.ports import Gateways, UnitOfWork
from checkout.biz.retry import retrying
from checkout.model.session import Session
from kernel.errors import DomainError, Unavailable

__all__ = ["SagaRecovery"]

log = logging.getLogger("kassa.checkout.recovery")


class SagaRecovery:
    def __init__(self, uow: UnitOfWork, gateways: Gateways, settlement: Settlement, policy: CheckoutPolicy) -> None:
        self._uow = uow
        self._g = gateways
        self._settlement = settlement
        self._policy = policy
        self._leases = Leases(uow, policy)

    async def run_once(self, limit: int = 20) -> int:
        """One pass (the worker's unit): up to ``limit`` stuck sessions, each claimed as its turn comes;
        returns how many were resolved."""
        done = 0
        for _ in range(limit):
            claimed = await self._claim(None)
            if claimed is None:
                break
            if await self._recover(*claimed):
                done += 1
        return done

    async def recover_one(self, session_id: str) -> bool:
        """Claim this session if it is stuck and finish or undo it now (an operator's "drive it"); False when
        it isn't stuck, or its recovery stopped short (and will be tried again)."""
        claimed = await self._claim(session_id)
        return claimed is not None and await self._recover(*claimed)

    async def _claim(self, session_id: str | None) -> tuple[Session, Lease] | None:
        since = self._leases.now()
        async with self._uow.transaction() as tx:
            stuck = await tx.sessions.claim_stuck(self._policy.recovery_after_seconds, 1, session_id=session_id)
        return (stuck[0], self._leases.hold(stuck[0], since)) if stuck else None

    async def _recover(self, session: Session, lease: Lease) -> bool:
        try:
            await self.recover(session, lease)
        except LeaseLost:
            log.warning("recovering session %s: another owner claimed it; stopped", session.session_id)
            return False
        except Exception:
            log.exception("recovering checkout session %s failed; will retry", session.session_id)
            return False
        return True

    async def recover(self, session: Session, lease: Lease) -> None:
        """Finish or undo one claimed saga: forward once the order may exist, else fail it."""
        state, step = session.saga_state, session.saga_step
        if step is None or not step.order_may_exist or state.order_draft is None:
            # An undo under way keeps the failure it started from (a decline stays PAYMENT_DECLINED).
            abandoned = None if state.failure else undone(None)
            await self._settlement.fail(session, state, lease, "checkout abandoned", answer=abandoned)
            return
        if not state.order_id:
            draft = state.order_draft
            try:
                async with lease.step("create_order"):
                    order = await retrying(self._policy.retry, lambda: self._g.order.create_order(draft))
            except Unavailable:
                raise
            except DomainError as refusal:
                cause = f"checkout failed: {refusal.message}"
                await self._settlement.fail(session, state, lease, cause, answer=undone(refusal))
                return
            state.order_id, state.order_status = order.order_id, order.status
        await self._settlement.settle(session, state, lease)
