"""CreateOrder: record checkout's order, once per checkout session."""

from __future__ import annotations

from kernel.errors import AlreadyExists
from order.biz.ports import UnitOfWork
from order.model.order import NewOrder, Order
from order.model.totals import verify_authorized_amount, verify_totals

__all__ = ["CreateOrder"]


class CreateOrder:
    """Protects invariant 2 (at most one order per checkout session: the session id is unique and a
    retry returns the first order unchanged), invariant 3 (an order is placed only if the payment
    holds exactly its recomputed grand total: PAYMENT_AMOUNT_MISMATCH otherwise, so checkout voids
    the authorization) and invariant 6 (every field validated, by the servicer's
    order/service/validation.py, and the totals recomputed here before anything is written). The
    order row and its OrderCreated event commit together (invariant 5)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, new: NewOrder) -> tuple[Order, bool]:
        # The request's fields were checked by the servicer (order/service/validation.py); the totals are the
        # order's own rule, whoever places it.
        verify_totals(new)
        verify_authorized_amount(new)
        cause = "order placed at checkout"
        # One statement: the order, its lines, discounts, first history entry and OrderCreated event.
        async with self._uow.statement() as tx:
            order, created = await tx.orders.create(new, cause=cause)
        if not created and order.customer_id != new.customer_id:
            raise AlreadyExists(
                "an order for this checkout session already exists for another customer",
                metadata={"field": "checkout_session_id"},
            )
        return order, created
