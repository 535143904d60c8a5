"""SqlPaymentRepo: the PaymentRepo port on Postgres, one short transaction per call.

Every status change is ``UPDATE … WHERE status IN (…) RETURNING`` with its outbox
event and attempt log row in the same transaction; nothing reads a row, decides
in Python and writes it back without holding a lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from infra.errors import AlreadyExists, FailedPrecondition, InvalidArgument, Reason
from infra.money import Money
from infra.outbox import add_event
from payment.biz.ports import EventPlan
from payment.data.tables import attempts, outbox, payments, provider_events, refunds
from payment.model.payment import (
    INVALID_STATE,
    Attempt,
    NewPayment,
    Payment,
    PaymentStatus,
    Refund,
    Transition,
    event_data,
)
from payment.model.provider import ProviderEvent

__all__ = ["SqlPaymentRepo"]

S = PaymentStatus
_REFUNDABLE = (S.CAPTURED.value, S.PARTIALLY_REFUNDED.value, S.REFUNDED.value)
_ONE_CAPTURE_INDEX = "payments_one_capture_per_order"


def _payment(row: sa.Row[Any]) -> Payment:
    m = row._mapping
    return Payment(
        payment_id=m["payment_id"],
        idempotency_key=m["idempotency_key"],
        order_ref=m["order_ref"],
        order_id=m["order_id"],
        customer_id=m["customer_id"],
        status=PaymentStatus(m["status"]),
        amount=Money(m["currency_code"], m["amount_minor"]),
        captured_minor=m["captured_minor"],
        refunded_minor=m["refunded_minor"],
        provider=m["provider"],
        provider_payment_id=m["provider_payment_id"],
        payment_method=m["payment_method"],
        return_url=m["return_url"],
        next_action_url=m["next_action_url"],
        failure_code=m["failure_code"],
        failure_message=m["failure_message"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def _refund(row: sa.Row[Any]) -> Refund:
    m = row._mapping
    return Refund(
        refund_id=m["refund_id"],
        payment_id=m["payment_id"],
        idempotency_key=m["idempotency_key"],
        amount_minor=m["amount_minor"],
        status=m["status"],
        provider_refund_id=m["provider_refund_id"],
    )


class SqlPaymentRepo:
    def __init__(self, engine: AsyncEngine, *, on_event: Callable[[], None] | None = None) -> None:
        self._engine = engine
        # Wakes the outbox publisher after a commit that wrote an event.
        self._on_event = on_event or (lambda: None)

    async def create_or_get(self, new: NewPayment) -> tuple[Payment, bool]:
        stmt = (
            insert(payments)
            .values(
                payment_id=new.payment_id,
                idempotency_key=new.idempotency_key,
                order_ref=new.order_ref,
                customer_id=new.customer_id,
                status=S.PENDING.value,
                amount_minor=new.amount.amount_minor,
                currency_code=new.amount.currency_code,
                provider=new.provider,
                payment_method=new.payment_method,
                return_url=new.return_url,
            )
            .on_conflict_do_nothing(index_elements=[payments.c.idempotency_key])
            .returning(*payments.c)
        )
        async with self._engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
            if row is not None:
                return _payment(row), True
            existing = (
                await conn.execute(sa.select(payments).where(payments.c.idempotency_key == new.idempotency_key))
            ).one()
            return _payment(existing), False

    async def get(self, payment_id: uuid.UUID) -> Payment | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(payments).where(payments.c.payment_id == payment_id))).first()
        return None if row is None else _payment(row)

    async def apply(self, payment_id: uuid.UUID, transition: Transition) -> Payment | None:
        try:
            async with self._engine.begin() as conn:
                done = await self._apply_in(conn, payment_id, transition)
        except IntegrityError as exc:
            if _ONE_CAPTURE_INDEX in str(exc.orig):
                raise FailedPrecondition(
                    "another payment is already captured for this order",
                    reason=INVALID_STATE,
                    metadata={"payment_id": str(payment_id), "order_id": str(transition.changes.get("order_id"))},
                ) from exc
            raise
        if done is not None and transition.event_type:
            self._on_event()
        return done

    async def record_attempt(self, payment_id: uuid.UUID, attempt: Attempt) -> None:
        async with self._engine.begin() as conn:
            await _insert_attempt(conn, payment_id, attempt)

    async def apply_provider_event(
        self, provider: str, event: ProviderEvent, payment_id: uuid.UUID | None, plan: EventPlan
    ) -> tuple[bool, Payment | None]:
        claim = (
            insert(provider_events)
            .values(provider=provider, event_id=event.event_id, event_type=event.raw_type)
            .on_conflict_do_nothing()
            .returning(provider_events.c.event_id)
        )
        async with self._engine.begin() as conn:
            if (await conn.execute(claim)).first() is None:
                return True, None
            row = None
            if event.intent is not None:
                row = (
                    await conn.execute(
                        sa.select(payments)
                        .where(
                            payments.c.provider == provider, payments.c.provider_payment_id == event.intent.intent_id
                        )
                        .with_for_update()
                    )
                ).first()
            if row is None and payment_id is not None:
                row = (
                    await conn.execute(
                        sa.select(payments)
                        .where(payments.c.payment_id == payment_id, payments.c.provider == provider)
                        .with_for_update()
                    )
                ).first()
            if row is None:
                return False, None
            payment = _payment(row)
            await conn.execute(
                provider_events.update()
                .where(provider_events.c.provider == provider, provider_events.c.event_id == event.event_id)
                .values(payment_id=payment.payment_id)
            )
            transition = plan(payment)
            if transition is None:
                return False, payment
            done = await self._apply_in(conn, payment.payment_id, transition)
        if done is not None and transition.event_type:
            self._on_event()
        return False, done or payment

    async def reserve_refund(
        self, payment_id: uuid.UUID, idempotency_key: str, amount_minor: int | None
    ) -> tuple[Refund, Payment]:
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(sa.select(payments).where(payments.c.payment_id == payment_id).with_for_update())
            ).one()
            payment = _payment(row)
            existing = await _refund_by_key(conn, idempotency_key)
            if existing is not None:
                return _same_refund(existing, payment_id, amount_minor), payment
            if payment.status.value not in _REFUNDABLE:
                raise FailedPrecondition(
                    f"cannot refund a payment in status {payment.status.value}",
                    reason=INVALID_STATE,
                    metadata={"payment_id": str(payment_id), "status": payment.status.value},
                )
            remaining = payment.captured_minor - payment.refunded_minor
            amount = remaining if amount_minor is None else amount_minor
            if amount <= 0 or amount > remaining:
                raise InvalidArgument(
                    "amount.amount_minor",
                    f"must be between 1 and the refundable {Money(payment.amount.currency_code, remaining)}",
                )
            refund_row = (
                await conn.execute(
                    insert(refunds)
                    .values(
                        refund_id=uuid.uuid4(),
                        payment_id=payment_id,
                        idempotency_key=idempotency_key,
                        amount_minor=amount,
                    )
                    .on_conflict_do_nothing(index_elements=[refunds.c.idempotency_key])
                    .returning(*refunds.c)
                )
            ).first()
            if refund_row is None:
                # The same key is being used for another payment's refund at this very moment.
                raced = await _refund_by_key(conn, idempotency_key)
                if raced is None:
                    raise AlreadyExists(
                        "idempotency_key is in use by another refund", reason=Reason.IDEMPOTENCY_KEY_REUSED
                    )
                return _same_refund(raced, payment_id, amount_minor), payment
            updated = (
                await conn.execute(
                    payments.update()
                    .where(payments.c.payment_id == payment_id)
                    .values(refunded_minor=payments.c.refunded_minor + amount, updated_at=sa.func.now())
                    .returning(*payments.c)
                )
            ).one()
        return _refund(refund_row), _payment(updated)

    async def finish_refund(
        self, refund: Refund, *, provider_refund_id: str | None, succeeded: bool, attempt: Attempt
    ) -> Payment:
        async with self._engine.begin() as conn:
            finished = (
                await conn.execute(
                    refunds.update()
                    .where(refunds.c.refund_id == refund.refund_id, refunds.c.status == "PENDING")
                    .values(
                        status="SUCCEEDED" if succeeded else "FAILED",
                        provider_refund_id=provider_refund_id,
                        updated_at=sa.func.now(),
                    )
                    .returning(refunds.c.refund_id)
                )
            ).first()
            where = payments.c.payment_id == refund.payment_id
            if finished is None:
                row = (await conn.execute(sa.select(payments).where(where))).one()
                return _payment(row)
            if succeeded:
                fully = payments.c.refunded_minor >= payments.c.captured_minor
                values: dict[str, Any] = {
                    "status": sa.case((fully, S.REFUNDED.value), else_=S.PARTIALLY_REFUNDED.value),
                    "updated_at": sa.func.now(),
                }
            else:
                values = {
                    "refunded_minor": payments.c.refunded_minor - refund.amount_minor,
                    "updated_at": sa.func.now(),
                }
            row = (await conn.execute(payments.update().where(where).values(values).returning(*payments.c))).one()
            payment = _payment(row)
            await _insert_attempt(conn, refund.payment_id, attempt)
            if succeeded:
                await add_event(
                    conn,
                    outbox,
                    service="payment",
                    event_type="PaymentRefunded",
                    aggregate_id=str(payment.payment_id),
                    data=event_data(
                        payment,
                        refund_id=str(refund.refund_id),
                        refund_amount={
                            "currency_code": payment.amount.currency_code,
                            "amount_minor": refund.amount_minor,
                        },
                    ),
                )
        if succeeded:
            self._on_event()
        return payment

    async def _apply_in(self, conn: AsyncConnection, payment_id: uuid.UUID, t: Transition) -> Payment | None:
        condition = payments.c.status.in_([s.value for s in t.sources])
        values: dict[str, Any] = {**t.changes, "status": t.to.value, "updated_at": sa.func.now()}
        if t.lease_seconds is None:
            values["lease_until"] = None
        else:
            # A claim whose holder crashed (lease over) may be taken again.
            condition = sa.or_(
                condition, sa.and_(payments.c.status == t.to.value, payments.c.lease_until < sa.func.now())
            )
            values["lease_until"] = sa.func.now() + timedelta(seconds=t.lease_seconds)
        stmt = (
            payments.update()
            .where(payments.c.payment_id == payment_id, condition)
            .values(values)
            .returning(*payments.c)
        )
        row = (await conn.execute(stmt)).first()
        if row is None:
            return None
        payment = _payment(row)
        if t.attempt is not None:
            await _insert_attempt(conn, payment_id, t.attempt)
        if t.event_type:
            await add_event(
                conn,
                outbox,
                service="payment",
                event_type=t.event_type,
                aggregate_id=str(payment_id),
                data=event_data(payment, **t.event_extra),
            )
        return payment


async def _insert_attempt(conn: AsyncConnection, payment_id: uuid.UUID, attempt: Attempt) -> None:
    await conn.execute(
        attempts.insert().values(
            payment_id=payment_id,
            operation=attempt.operation,
            request=attempt.request,
            response=attempt.response,
            outcome=attempt.outcome,
        )
    )


async def _refund_by_key(conn: AsyncConnection, idempotency_key: str) -> Refund | None:
    row = (await conn.execute(sa.select(refunds).where(refunds.c.idempotency_key == idempotency_key))).first()
    return None if row is None else _refund(row)


def _same_refund(existing: Refund, payment_id: uuid.UUID, amount_minor: int | None) -> Refund:
    if existing.payment_id != payment_id or (amount_minor is not None and amount_minor != existing.amount_minor):
        raise AlreadyExists(
            "idempotency_key was already used for a different refund",
            reason=Reason.IDEMPOTENCY_KEY_REUSED,
            metadata={"field": "idempotency_key", "refund_id": str(existing.refund_id)},
        )
    return existing
