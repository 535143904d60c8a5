"""SqlPaymentRepo: the PaymentRepo port on Postgres, one short transaction per call.

Every status change is ``UPDATE … WHERE status IN (…) RETURNING`` with its outbox
event and attempt log row in the same transaction; nothing reads a row, decides
in Python and writes it back without holding a lock.

Round trips are counted (issue 4): the status change and its attempt row are one statement
(a data-modifying CTE), statements are built once and only bound per call, and a step that is a
single statement (a read, the PENDING insert, a claim without an event) runs without an explicit
transaction (autocommit): one statement is atomic on its own, and it saves BEGIN and COMMIT.
Bind parameters of UPDATE statements never share a column's name: SQLAlchemy would add such a
key to the SET clause.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from infra import audit
from infra.db import single_statements
from infra.errors import AlreadyExists, FailedPrecondition, InvalidArgument, Reason
from infra.money import Money
from infra.outbox import add_event, claim_inbox
from payment.biz.ports import EventPlan
from payment.data.tables import (
    CAPTURE_HOLDING_SQL,
    attempts,
    audit_log,
    inbox,
    outbox,
    payments,
    provider_events,
    refunds,
)
from payment.model.payment import (
    INVALID_STATE,
    Attempt,
    Consumed,
    NewPayment,
    Payment,
    PaymentStatus,
    Refund,
    Transition,
    event_data,
)
from payment.model.provider import ProviderEvent
from payment.model.stats import FailureRates

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


_TEXTS = ARRAY(sa.Text)

_INSERT_PAYMENT = (
    insert(payments)
    .values(
        {
            name: sa.bindparam(name, type_=payments.c[name].type)
            for name in (
                "payment_id",
                "idempotency_key",
                "order_ref",
                "customer_id",
                "status",
                "amount_minor",
                "currency_code",
                "provider",
                "payment_method",
                "return_url",
            )
        }
    )
    .on_conflict_do_nothing(index_elements=[payments.c.idempotency_key])
    .returning(*payments.c)
)
_BY_KEY = sa.select(payments).where(payments.c.idempotency_key == sa.bindparam("idempotency_key"))
_BY_ID = sa.select(payments).where(payments.c.payment_id == sa.bindparam("payment_id"))
_LOCK_BY_ID = _BY_ID.with_for_update()
# Served by the partial unique index payments_one_capture_per_order.
_CAPTURED_FOR_ORDER = sa.select(payments).where(
    payments.c.order_id == sa.bindparam("order_id"), sa.text(CAPTURE_HOLDING_SQL)
)
_BY_ORDER_REF = (
    sa.select(payments).where(payments.c.order_ref == sa.bindparam("order_ref")).order_by(payments.c.created_at)
)
# What the sweeper may look for (served by the partial index payments_unsettled).
_UNSETTLED = frozenset({S.PENDING, S.CAPTURING, S.VOIDING})
_PENDING_REFUNDS = (
    sa.select(refunds)
    .where(
        refunds.c.status == "PENDING",
        refunds.c.created_at < sa.func.now() - sa.bindparam("idle", type_=sa.Interval),
    )
    .order_by(refunds.c.created_at)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)
_BY_IDS = sa.select(payments).where(
    payments.c.payment_id == sa.any_(sa.bindparam("ids", type_=ARRAY(payments.c.payment_id.type)))
)
_INBOX_SEEN = sa.select(inbox.c.event_id).where(
    inbox.c.consumer == sa.bindparam("consumer"), inbox.c.event_id == sa.bindparam("event_id")
)

# Claim a provider event once, recording the payment it is about: the one holding its intent,
# else the one its metadata names (a webhook can overtake the commit that stores the intent id).
_CLAIM_EVENT = (
    insert(provider_events)
    .values(
        provider=sa.bindparam("e_provider", type_=sa.Text),
        event_id=sa.bindparam("e_event_id", type_=sa.Text),
        event_type=sa.bindparam("e_event_type", type_=sa.Text),
        payment_id=sa.func.coalesce(
            sa.select(payments.c.payment_id)
            .where(
                payments.c.provider == sa.bindparam("e_provider", type_=sa.Text),
                payments.c.provider_payment_id == sa.bindparam("e_intent_id", type_=sa.Text),
            )
            .scalar_subquery(),
            sa.select(payments.c.payment_id)
            .where(
                payments.c.payment_id == sa.bindparam("e_payment_id", type_=payments.c.payment_id.type),
                payments.c.provider == sa.bindparam("e_provider", type_=sa.Text),
            )
            .scalar_subquery(),
        ),
    )
    .on_conflict_do_nothing()
    .returning(provider_events.c.payment_id)
)
# A payment with whether a provider event was already claimed: a webhook's one read before it applies anything.
_WITH_EVENT_SEEN = sa.select(
    payments,
    sa.exists()
    .where(
        provider_events.c.provider == sa.bindparam("e_provider", type_=sa.Text),
        provider_events.c.event_id == sa.bindparam("e_event_id", type_=sa.Text),
    )
    .label("event_seen"),
).where(payments.c.payment_id == sa.bindparam("payment_id"))


def _event_params(provider: str, event: ProviderEvent, payment_id: uuid.UUID | None) -> dict[str, Any]:
    return {
        "e_provider": provider,
        "e_event_id": event.event_id,
        "e_event_type": event.raw_type,
        "e_intent_id": event.intent.intent_id if event.intent is not None else None,
        "e_payment_id": payment_id,
    }


def _attempt_columns(payment_id: sa.ColumnElement[Any]) -> sa.Select[Any]:
    return sa.select(
        payment_id,
        sa.bindparam("a_operation", type_=sa.Text),
        sa.bindparam("a_request", type_=JSONB),
        sa.bindparam("a_response", type_=JSONB),
        sa.bindparam("a_outcome", type_=sa.Text),
    )


_ATTEMPT_COLUMNS = ["payment_id", "operation", "request", "response", "outcome"]
_INSERT_ATTEMPT = attempts.insert().from_select(
    _ATTEMPT_COLUMNS, _attempt_columns(sa.bindparam("a_payment_id", type_=attempts.c.payment_id.type))
)


def _attempt_params(attempt: Attempt) -> dict[str, Any]:
    return {
        "a_operation": attempt.operation,
        "a_request": attempt.request,
        "a_response": attempt.response,
        "a_outcome": attempt.outcome,
    }


@functools.cache
def _unsettled_stmt(statuses: tuple[str, ...]) -> sa.Select[Any]:
    """Payments in ``statuses`` untouched for a while and not claimed (statuses written out, so that the
    planner can prove the partial index payments_unsettled covers the query)."""
    listed = ", ".join(f"'{status}'" for status in statuses)
    return (
        sa.select(payments)
        .where(
            sa.text(f"status IN ({listed})"),
            payments.c.updated_at < sa.func.now() - sa.bindparam("idle", type_=sa.Interval),
            sa.or_(payments.c.lease_until.is_(None), payments.c.lease_until < sa.func.now()),
        )
        .order_by(payments.c.updated_at)
        .limit(sa.bindparam("limit", type_=sa.Integer))
    )


@functools.cache
def _transition_stmt(changed: tuple[str, ...], *, lease: bool, attempt: bool) -> sa.Executable:
    """The conditional update of :class:`Transition` for these changed columns, returning the row;
    with ``attempt`` the attempt row is inserted by the same statement (only if the update applied)."""
    condition: sa.ColumnElement[bool] = payments.c.status == sa.any_(sa.cast(sa.bindparam("p_sources"), _TEXTS))
    values: dict[str, Any] = {
        name: sa.bindparam(f"p_{name}", type_=payments.c[name].type) for name in changed if name != "status"
    }
    values["status"] = sa.bindparam("p_to", type_=sa.Text)
    values["updated_at"] = sa.func.now()
    if lease:
        # A claim whose holder crashed (lease over) may be taken again.
        condition = sa.or_(
            condition,
            sa.and_(payments.c.status == sa.bindparam("p_to", type_=sa.Text), payments.c.lease_until < sa.func.now()),
        )
        values["lease_until"] = sa.func.now() + sa.bindparam("p_lease", type_=sa.Interval)
    else:
        values["lease_until"] = None
    update = (
        payments.update()
        .where(payments.c.payment_id == sa.bindparam("p_payment_id", type_=payments.c.payment_id.type), condition)
        .values(values)
        .returning(*payments.c)
    )
    if not attempt:
        return update
    updated = update.cte("updated")
    log = attempts.insert().from_select(_ATTEMPT_COLUMNS, _attempt_columns(updated.c.payment_id))
    return sa.select(updated).add_cte(log.cte("attempt"))


class SqlPaymentRepo:
    def __init__(self, engine: AsyncEngine, *, on_event: Callable[[], None] | None = None) -> None:
        self._engine = engine
        # For steps that are one statement: no BEGIN/COMMIT round trips.
        self._single = single_statements(engine)
        # Wakes the outbox publisher after a commit that wrote an event.
        self._on_event = on_event or (lambda: None)

    async def create_or_get(self, new: NewPayment) -> tuple[Payment, bool]:
        params = {
            "payment_id": new.payment_id,
            "idempotency_key": new.idempotency_key,
            "order_ref": new.order_ref,
            "customer_id": new.customer_id,
            "status": S.PENDING.value,
            "amount_minor": new.amount.amount_minor,
            "currency_code": new.amount.currency_code,
            "provider": new.provider,
            "payment_method": new.payment_method,
            "return_url": new.return_url,
        }
        async with self._single.connect() as conn:
            row = (await conn.execute(_INSERT_PAYMENT, params)).first()
            if row is not None:
                return _payment(row), True
            # A new statement sees the row whose key conflicted (it is committed once we could not insert).
            existing = (await conn.execute(_BY_KEY, {"idempotency_key": new.idempotency_key})).one()
            return _payment(existing), False

    async def failure_rates(self, start: datetime, end: datetime) -> FailureRates:
        """One indexed range scan of payments by created_at (payments_created_idx)."""
        p = payments
        failed = p.c.status.in_([S.DECLINED.value, S.FAILED.value])
        code = sa.case((failed, sa.func.coalesce(sa.func.nullif(p.c.failure_code, ""), "unknown")), else_="")
        stmt = (
            sa.select(code.label("code"), sa.func.count().label("n"))
            .where(p.c.created_at >= start, p.c.created_at < end)
            .group_by(sa.literal_column("1"))
        )
        async with self._single.connect() as conn:
            rows = list(await conn.execute(stmt))
        return FailureRates(start, end, sum(r.n for r in rows), {r.code: r.n for r in rows if r.code})

    async def get(self, payment_id: uuid.UUID) -> Payment | None:
        async with self._single.connect() as conn:
            row = (await conn.execute(_BY_ID, {"payment_id": payment_id})).first()
        return None if row is None else _payment(row)

    async def get_by_key(self, idempotency_key: str) -> Payment | None:
        async with self._single.connect() as conn:
            row = (await conn.execute(_BY_KEY, {"idempotency_key": idempotency_key})).first()
        return None if row is None else _payment(row)

    async def captured_for_order(self, order_id: str) -> Payment | None:
        async with self._single.connect() as conn:
            row = (await conn.execute(_CAPTURED_FOR_ORDER, {"order_id": order_id})).first()
        return None if row is None else _payment(row)

    async def by_order_ref(self, order_ref: str) -> list[Payment]:
        async with self._single.connect() as conn:
            rows = (await conn.execute(_BY_ORDER_REF, {"order_ref": order_ref})).all()
        return [_payment(r) for r in rows]

    async def unsettled(self, statuses: Iterable[PaymentStatus], idle_seconds: float, limit: int) -> list[Payment]:
        wanted = frozenset(statuses)
        if not wanted or not wanted <= _UNSETTLED:
            raise ValueError(f"unsettled() looks for {sorted(_UNSETTLED)} only, not {sorted(wanted)}")
        stmt = _unsettled_stmt(tuple(sorted(s.value for s in wanted)))
        async with self._single.connect() as conn:
            rows = (await conn.execute(stmt, {"idle": timedelta(seconds=idle_seconds), "limit": limit})).all()
        return [_payment(r) for r in rows]

    async def pending_refunds(self, idle_seconds: float, limit: int) -> list[tuple[Refund, Payment]]:
        async with self._single.connect() as conn:
            found = [
                _refund(r)
                for r in await conn.execute(_PENDING_REFUNDS, {"idle": timedelta(seconds=idle_seconds), "limit": limit})
            ]
            if not found:
                return []
            rows = await conn.execute(_BY_IDS, {"ids": list({r.payment_id for r in found})})
            by_id = {p.payment_id: p for p in map(_payment, rows)}
        return [(r, by_id[r.payment_id]) for r in found]

    async def inbox_seen(self, consumer: str, event_id: str) -> bool:
        async with self._single.connect() as conn:
            return (await conn.execute(_INBOX_SEEN, {"consumer": consumer, "event_id": event_id})).first() is not None

    async def claim_inbox(self, consumer: str, event_id: str) -> bool:
        async with self._single.connect() as conn:
            return await claim_inbox(conn, inbox, consumer, event_id)

    async def apply(self, payment_id: uuid.UUID, transition: Transition) -> Payment | None:
        try:
            if transition.event_type or transition.consumed:
                async with self._engine.begin() as conn:
                    done = await self._apply_in(conn, payment_id, transition)
            else:
                # No event: the update (and its attempt row) is a single statement.
                async with self._single.connect() as conn:
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
        async with self._single.connect() as conn:
            await _insert_attempt(conn, payment_id, attempt)

    async def with_event_seen(self, provider: str, event_id: str, payment_id: uuid.UUID) -> tuple[Payment | None, bool]:
        params = {"e_provider": provider, "e_event_id": event_id, "payment_id": payment_id}
        async with self._single.connect() as conn:
            row = (await conn.execute(_WITH_EVENT_SEEN, params)).first()
        return (None, False) if row is None else (_payment(row), bool(row.event_seen))

    async def record_provider_event(self, provider: str, event: ProviderEvent, payment_id: uuid.UUID | None) -> bool:
        async with self._single.connect() as conn:
            return (await conn.execute(_CLAIM_EVENT, _event_params(provider, event, payment_id))).first() is not None

    async def apply_provider_event(
        self, provider: str, event: ProviderEvent, payment_id: uuid.UUID | None, plan: EventPlan
    ) -> tuple[bool, Payment | None]:
        params = _event_params(provider, event, payment_id)
        async with self._engine.begin() as conn:
            claimed = (await conn.execute(_CLAIM_EVENT, params)).first()
            if claimed is None:
                return True, None
            row = None
            if claimed.payment_id is not None:
                # Locked, and the latest version even if it changed since the claim's snapshot.
                row = (await conn.execute(_LOCK_BY_ID, {"payment_id": claimed.payment_id})).first()
            if row is None:
                return False, None
            payment = _payment(row)
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
            if amount_minor is not None and amount_minor <= 0:
                raise InvalidArgument("amount.amount_minor", "must be a positive amount in the currency's minor unit")
            if amount <= 0 or amount > remaining:
                raise FailedPrecondition(
                    f"refunds would exceed the capture: {Money(payment.amount.currency_code, remaining)} "
                    "is left to refund",
                    reason=Reason.REFUND_EXCEEDS_CAPTURE,
                    metadata={
                        "payment_id": str(payment_id),
                        "refundable_minor": str(remaining),
                        "captured_minor": str(payment.captured_minor),
                    },
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
            # An admin's refund is audited when the money is set aside for it, the decision that commits here.
            await audit.record(conn, audit_log, f"payments/{payment_id}", f"refunds/{refund_row.refund_id}")
        return _refund(refund_row), _payment(updated)

    async def finish_refund(
        self,
        refund: Refund,
        *,
        provider_refund_id: str | None,
        succeeded: bool,
        attempt: Attempt,
        consumed: Consumed | None = None,
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
            if consumed is not None:
                await claim_inbox(conn, inbox, consumed.consumer, consumed.event_id)
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
        changed = tuple(sorted(t.changes))
        stmt = _transition_stmt(changed, lease=t.lease_seconds is not None, attempt=t.attempt is not None)
        params: dict[str, Any] = {f"p_{name}": t.changes[name] for name in changed}
        params.update(p_payment_id=payment_id, p_sources=[s.value for s in t.sources], p_to=t.to.value)
        if t.lease_seconds is not None:
            params["p_lease"] = timedelta(seconds=t.lease_seconds)
        if t.attempt is not None:
            params.update(_attempt_params(t.attempt))
        row = (await conn.execute(stmt, params)).first()
        if row is None:
            return None
        payment = _payment(row)
        if t.consumed is not None:
            # A redelivery that raced us may have claimed it first: the state change is the same either way.
            await claim_inbox(conn, inbox, t.consumed.consumer, t.consumed.event_id)
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
    await conn.execute(_INSERT_ATTEMPT, {"a_payment_id": payment_id, **_attempt_params(attempt)})


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
