"""A status transition and its outbox event, in one statement of the caller's unit of work."""

from __future__ import annotations

from order.biz.ports import Transition, TransitionResult, Tx

__all__ = ["apply_transition"]


async def apply_transition(tx: Tx, transition: Transition) -> TransitionResult:
    """Apply ``transition`` on ``tx``; if it moved the order, its ``event_type`` event (``event_data`` of the order
    as moved) is written by the same statement (invariant 5: the status change and its event commit together,
    or neither does), so the step needs no transaction around it: ``uow.statement()``."""
    return await tx.orders.transition(transition)
