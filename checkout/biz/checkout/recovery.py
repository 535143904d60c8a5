"""Recovery of sagas whose replica died mid-ConfirmCheckout.

Protects DESIGN.md §4.2 and §4.3: a session stuck in CONFIRMING (no progress for
``recovery_after_seconds``) is resumed forward when its order may exist (CreateOrder is idempotent
on the session, so resending it finds the order) and failed — everything undone, through the same
:meth:`Settlement.fail` the saga uses — when it can't, so no authorization or reservation is left
behind. Claiming moves the session's heartbeat, so replicas don't collide.
"""

from __future__ import annotations

import logging

from checkout.biz.checkout.replay import Replays, fingerprint
from checkout.biz.checkout.settle import Settlement
from checkout.biz.policy import CheckoutPolicy
from checkout.biz.ports import Gateways, IdempotencyStore, UnitOfWork
from checkout.biz.retry import retrying
from checkout.model.session import Session
from infra.errors import DomainError, Unavailable

__all__ = ["SagaRecovery"]

log = logging.getLogger("kassa.checkout.recovery")


class SagaRecovery:
    def __init__(
        self,
        uow: UnitOfWork,
        gateways: Gateways,
        settlement: Settlement,
        store: IdempotencyStore,
        policy: CheckoutPolicy,
    ) -> None:
        self._uow = uow
        self._g = gateways
        self._settlement = settlement
        self._replays = Replays(uow, store, policy.replay_ttl_seconds)
        self._policy = policy

    async def run_once(self, limit: int = 20) -> int:
        """One pass (the worker's unit); returns how many sessions were resolved."""
        async with self._uow() as tx:
            stuck = await tx.sessions.claim_stuck(self._policy.recovery_after_seconds, limit)
        done = 0
        for session in stuck:
            try:
                await self.recover(session)
                done += 1
            except Exception:
                log.exception("recovering checkout session %s failed; will retry", session.session_id)
        return done

    async def recover_one(self, session_id: str) -> bool:
        """Claim this session if it is stuck (no progress for ``recovery_after_seconds``) and finish or undo
        it now; False when it isn't stuck."""
        async with self._uow() as tx:
            claimed = await tx.sessions.claim_stuck(self._policy.recovery_after_seconds, 1, session_id=session_id)
        if not claimed:
            return False
        await self.recover(claimed[0])
        return True

    async def recover(self, session: Session) -> None:
        """Finish or undo one saga: forward once the order may exist, else fail it."""
        state, step = session.saga_state, session.saga_step
        if step is None or not step.order_may_exist or state.order_draft is None:
            await self._settlement.fail(session, state, "checkout abandoned")
            return
        if not state.order_id:
            draft = state.order_draft
            try:
                order = await retrying(self._policy.retry, lambda: self._g.order.create_order(draft))
            except Unavailable:
                raise
            except DomainError as refusal:
                await self._settlement.fail(session, state, f"checkout failed: {refusal.message}")
                return
            state.order_id, state.order_status = order.order_id, order.status
        result = await self._settlement.settle(session, state)
        if session.idempotency_key and state.preview is not None:
            # The client's repeat of its request gets this answer, not CHECKOUT_IN_PROGRESS.
            print_ = fingerprint(session.session_id, state.preview.grand_total, session.payment_method)
            record = Replays.record(session.session_id, print_, result)
            key = session.idempotency_key
            await self._replays.keep(f"{session.customer_id}:{key}", session.customer_id, key, record)
