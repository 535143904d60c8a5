"""A status transition and its outbox event, in the caller's transaction."""

from __future__ import annotations

from order.biz.ports import Transition, TransitionResult, Tx
from order.model.events import event_data

__all__ = ["apply_transition"]


async def apply_transition(tx: Tx, transition: Transition) -> TransitionResult:
    """Apply ``transition`` on ``tx``; if it moved the order, add its ``event_type`` event to the same transaction
    (invariant 5: the status change and its event commit together, or neither does)."""
    result = await tx.orders.transition(transition)
    if result.applied and result.order is not None:
        await tx.add_event(transition.event_type, result.order.order_id, event_data(result.order, transition.cause))
    return result
