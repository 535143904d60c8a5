"""Compensations and post-order steps, run inline by the saga and later by the DLQ worker.

One handler per operation, so the saga and the failed-compensation worker run exactly the same code.
Every handler calls idempotent RPCs (by reservation ref, payment id or order id), so running one
twice has no second effect. A step that still fails is written to ``failed_compensations`` and never
dropped (DESIGN.md §4.3 money leak, §4.4 stock leak).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from checkout.biz.ports import Gateways, UnitOfWork
from checkout.biz.retry import RetryPolicy, retrying
from checkout.model.cart import CartStatus
from checkout.model.catalog import PaymentOutcome
from checkout.model.compensation import NewCompensation, Operation
from kernel.errors import DomainError, Unavailable

__all__ = ["Compensator"]

log = logging.getLogger("kassa.checkout.compensation")


class Compensator:
    def __init__(self, uow: UnitOfWork, gateways: Gateways, retry: RetryPolicy) -> None:
        self._uow = uow
        self._g = gateways
        self._retry = retry
        self._handlers: dict[Operation, Callable[[dict[str, Any]], Awaitable[None]]] = {
            Operation.VOID_AUTHORIZATION: self._void_authorization,
            Operation.RELEASE_RESERVATIONS: self._release_reservations,
            Operation.RELEASE_PROMOTION: self._release_promotion,
            Operation.CONFIRM_RESERVATIONS: self._confirm_reservations,
            Operation.CONFIRM_PROMOTION: self._confirm_promotion,
            Operation.CAPTURE_PAYMENT: self._capture_payment,
            Operation.RECORD_PAYMENT: self._record_payment,
            Operation.CART_CLEANUP: self._cart_cleanup,
            Operation.REFUND_PAYMENT: self._refund_payment,
        }

    async def run(self, operation: Operation, payload: dict[str, Any]) -> None:
        """Run one operation once (the worker's unit of retry)."""
        await self._handlers[Operation(operation)](payload)

    async def attempt(self, session_id: str, operation: Operation, payload: dict[str, Any]) -> NewCompensation | None:
        """Run with bounded retries; on exhaustion, the DLQ entry to write (None when it succeeded)."""
        try:
            await retrying(self._retry, lambda: self.run(operation, payload))
        except Exception as exc:
            log.warning("%s for session %s failed, queued for retry: %s", operation, session_id, exc)
            return NewCompensation(session_id, operation, payload, f"{type(exc).__name__}: {exc}"[:1000])
        return None

    async def attempt_or_record(self, session_id: str, operation: Operation, payload: dict[str, Any]) -> bool:
        """Like :meth:`attempt`, writing the DLQ entry in its own transaction; True when it succeeded."""
        failed = await self.attempt(session_id, operation, payload)
        if failed is None:
            return True
        async with self._uow.transaction() as tx:
            await tx.compensations.add(failed)
        return False

    async def _void_authorization(self, payload: dict[str, Any]) -> None:
        payment_id = str(payload.get("payment_id") or "")
        reason = str(payload.get("reason") or "checkout failed")
        if payment_id:
            await self._g.payment.void(payment_id, reason)
            return
        # The authorize call's outcome is unknown (timeout, crash): the payment service finds what its
        # key created, at the provider if need be, and voids it. Nothing held is a success.
        key = str(payload.get("authorize_key") or (payload.get("authorize") or {}).get("idempotency_key") or "")
        if key:
            await self._g.payment.void_by_key(key, reason)

    async def _release_reservations(self, payload: dict[str, Any]) -> None:
        await self._g.inventory.release_reservations(
            payload["reservation_ref"], str(payload.get("reason") or "checkout failed")
        )

    async def _release_promotion(self, payload: dict[str, Any]) -> None:
        await self._g.promotion.release_usage(payload["reservation_ref"])

    async def _confirm_reservations(self, payload: dict[str, Any]) -> None:
        await self._g.inventory.confirm_reservations(payload["reservation_ref"])

    async def _confirm_promotion(self, payload: dict[str, Any]) -> None:
        await self._g.promotion.confirm_usage(payload["reservation_ref"])

    async def _capture_payment(self, payload: dict[str, Any]) -> None:
        """Capture, then tell the order; a refused capture fails the order and lets the hold go."""
        payment_id, order_id = payload["payment_id"], payload["order_id"]
        try:
            await self._g.payment.capture(payment_id, order_id)
        except Unavailable:
            raise
        except DomainError as refusal:
            await self._g.order.record_payment(order_id, payment_id, PaymentOutcome.FAILED, refusal.message)
            await self._g.payment.void(payment_id, "capture refused")
            return
        await self._g.order.record_payment(order_id, payment_id, PaymentOutcome.CAPTURED, "payment captured")

    async def _refund_payment(self, payload: dict[str, Any]) -> None:
        await self._g.payment.refund(
            payload["payment_id"], str(payload["idempotency_key"]), str(payload.get("reason") or "")
        )

    async def _record_payment(self, payload: dict[str, Any]) -> None:
        await self._g.order.record_payment(
            payload["order_id"],
            payload["payment_id"],
            PaymentOutcome(payload["outcome"]),
            str(payload.get("cause", "")),
        )

    async def _cart_cleanup(self, payload: dict[str, Any]) -> None:
        status = CartStatus(payload["status"])
        async with self._uow.transaction() as tx:
            moved = await tx.carts.transition(payload["cart_id"], {CartStatus.CHECKOUT}, status)
            if moved and status is CartStatus.CONVERTED:
                await tx.add_event(
                    "CartConverted",
                    payload["cart_id"],
                    {"cart_id": payload["cart_id"], "customer_id": payload.get("customer_id", ""),
                     "order_id": payload.get("order_id", ""), "session_id": payload.get("session_id", "")},
                )  # fmt: skip
