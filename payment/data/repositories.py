"""The payment repositories on Postgres (bound to one connection), SqlTx and SqlUnitOfWork, the only place a
transaction begins. Each step of a use case asks the unit of work for what it needs: ``read()`` to read,
``single()`` or ``statement()`` (a status change with its outbox event) for a step that is one write statement,
in autocommit, and ``transaction()`` only for a step of several statements that must commit together (a
webhook's claim, lock and transition; a refund's reservation; a refund's end with its event).

Every status change is ``UPDATE … WHERE status IN (…) RETURNING`` with its attempt log row, its outbox event
and the inbox claim of the event that caused it in the same statement (data-modifying CTEs that insert only
from the updated row, so nothing is written when the guard refuses); nothing reads a row, decides in Python
and writes it back without holding a lock.

Round trips are counted (issues 4 and 11): statements are built once and only bound per call, and a step that
is a single statement (a read, the PENDING insert, a status change with its event, a webhook's record) runs
without an explicit transaction (autocommit, ``SqlUnitOfWork.read()``/``single()``, or ``statement()`` when it writes
its outbox event, :class:`infra.outbox_cte.StatementUnitOfWork`): one statement is atomic on its own, and it saves
BEGIN and COMMIT.
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
from infra.outbox import OutboxTx, claim_inbox
from infra.outbox_cte import OutboxCte, StatementUnitOfWork, json_object
from kernel.errors import FailedPrecondition
from kernel.money import Money
from payment.data.outcomes import count_outcome
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
    NOTHING_HELD,
    Attempt,
    EventRecord,
    NewPayment,
    NothingToDo,
    Payment,
    PaymentStatus,
    Refund,
    Transition,
)
from payment.model.provider import ProviderEvent
from payment.model.stats import FailureRates

__all__ = [
    "SERVICE",
    "SqlInboxRepo",
    "SqlPaymentRepo",
    "SqlPaymentStats",
    "SqlProviderEventRepo",
    "SqlRefundRepo",
    "SqlTx",
    "SqlUnitOfWork",
]

SERVICE = "payment"

S = PaymentStatus
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
_CLAIM_EVENT_PAYMENT = sa.func.coalesce(
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
)
_EVENT_CLAIM_COLUMNS = ["provider", "event_id", "event_type", "payment_id"]


def _event_claim(payment_id: sa.ColumnElement[Any]) -> sa.Select[Any]:
    """The row a statement that claims a provider event inserts (``e_*`` bound as for _CLAIM_EVENT), for
    ``payment_id``: what ``INSERT … SELECT`` into provider_events selects."""
    return sa.select(
        sa.bindparam("e_provider", type_=sa.Text),
        sa.bindparam("e_event_id", type_=sa.Text),
        sa.bindparam("e_event_type", type_=sa.Text),
        payment_id,
    )


_CLAIM_EVENT = (
    insert(provider_events)
    .values(
        provider=sa.bindparam("e_provider", type_=sa.Text),
        event_id=sa.bindparam("e_event_id", type_=sa.Text),
        event_type=sa.bindparam("e_event_type", type_=sa.Text),
        payment_id=_CLAIM_EVENT_PAYMENT,
    )
    .on_conflict_do_nothing()
    .returning(provider_events.c.payment_id)
)
# HandleWebhook's short cut, one statement: the payment the event's metadata names, whether the event was claimed
# already, whether it leaves the payment as it is (NothingToDo, evaluated on this statement's snapshot), and if so
# the event claimed (as _CLAIM_EVENT does it) — no transaction and no lock: a payment's status only moves forward,
# so an event that moves nothing now never will.
_NAMED = sa.select(payments).where(payments.c.payment_id == sa.bindparam("e_payment_id")).cte("named")
_NOTHING_TO_DO = sa.and_(
    sa.or_(
        _NAMED.c.status != sa.all_(sa.cast(sa.bindparam("n_sources"), _TEXTS)),
        sa.and_(
            sa.cast(sa.bindparam("n_refunded"), sa.BigInteger).is_not(None),
            sa.func.least(sa.cast(sa.bindparam("n_refunded"), sa.BigInteger), _NAMED.c.captured_minor)
            <= _NAMED.c.refunded_minor,
        ),
    ),
    sa.or_(
        sa.not_(sa.bindparam("n_open_intent", type_=sa.Boolean)),
        sa.and_(
            _NAMED.c.provider == sa.bindparam("e_provider", type_=sa.Text),
            sa.or_(
                _NAMED.c.provider_payment_id.is_(None),
                _NAMED.c.provider_payment_id == sa.bindparam("e_intent_id", type_=sa.Text),
            ),
            _NAMED.c.status != sa.all_(sa.cast(sa.bindparam("n_nothing_held"), _TEXTS)),
        ),
    ),
)
_RECORDED = (
    insert(provider_events)
    .from_select(_EVENT_CLAIM_COLUMNS, _event_claim(_CLAIM_EVENT_PAYMENT).select_from(_NAMED).where(_NOTHING_TO_DO))
    .on_conflict_do_nothing()
    .returning(provider_events.c.event_id)
    .cte("recorded")
)
_RECORD_IF_NOTHING_TO_DO = sa.select(
    _NAMED,
    sa.exists()
    .where(
        provider_events.c.provider == sa.bindparam("e_provider", type_=sa.Text),
        provider_events.c.event_id == sa.bindparam("e_event_id", type_=sa.Text),
    )
    .label("event_seen"),
    _NOTHING_TO_DO.label("nothing_to_do"),
    sa.exists(sa.select(_RECORDED.c.event_id)).label("recorded"),
)


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


def _event_data(updated: sa.FromClause) -> sa.ColumnElement[Any]:
    """:func:`payment.model.payment.event_data` of the row ``updated`` returns, in SQL, merged with the bound
    ``o_extra`` (the transition's ``event_extra``), as ``dict.update`` does."""
    c = updated.c
    empty: sa.ColumnElement[str] = sa.literal_column("''", sa.Text)
    data = json_object(
        {
            "payment_id": sa.cast(c.payment_id, sa.Text),
            "order_ref": c.order_ref,
            "order_id": sa.func.coalesce(c.order_id, empty),
            "customer_id": c.customer_id,
            "status": c.status,
            "amount": json_object({"currency_code": c.currency_code, "amount_minor": c.amount_minor}),
            "captured_minor": c.captured_minor,
            "refunded_minor": c.refunded_minor,
            "provider": c.provider,
            "provider_payment_id": sa.func.coalesce(c.provider_payment_id, empty),
        }
    )
    return data.op("||", return_type=JSONB)(sa.bindparam("o_extra", type_=JSONB))


# A provider event claimed for the payment ``p_payment_id`` (with ``e_*`` bound as for _CLAIM_EVENT, and
# ``e_payment_id`` = ``p_payment_id``), only if that is the payment _CLAIM_EVENT would record it for: a transition's
# statement that claims the event it applies (_transition_stmt(provider_event=True)) applies it only if this claimed.
_CLAIM_EVENT_FOR_PAYMENT = (
    insert(provider_events)
    .from_select(
        _EVENT_CLAIM_COLUMNS,
        _event_claim(sa.bindparam("p_payment_id", type_=payments.c.payment_id.type)).where(
            sa.bindparam("p_payment_id", type_=payments.c.payment_id.type) == _CLAIM_EVENT_PAYMENT
        ),
    )
    .on_conflict_do_nothing()
    .returning(provider_events.c.payment_id)
    .cte("event_claim")
)


@functools.cache
def _transition_stmt(
    changed: tuple[str, ...],
    *,
    lease: bool,
    attempt: bool,
    event: bool = False,
    consumed: bool = False,
    provider_event: bool = False,
) -> tuple[sa.Executable, OutboxCte | None]:
    """The conditional update of :class:`Transition` for these changed columns, returning the row. Only if the
    update applied, the same statement (data-modifying CTEs) also inserts: with ``attempt`` the attempt row,
    with ``event`` the outbox row (an :class:`infra.outbox_cte.OutboxCte`, returned to bind its ``o_*``
    parameters, plus ``o_extra``), with ``consumed`` the inbox claim of the event that caused it (``ON CONFLICT
    DO NOTHING``: a redelivery that raced us may have claimed it first).

    With ``provider_event`` the statement first claims the provider event that causes the transition
    (:data:`_CLAIM_EVENT_FOR_PAYMENT`) and updates only if that claim was made; it returns one row whatever
    happened, ``event_claimed`` and the payment's columns (NULL when the update did not apply)."""
    condition: sa.ColumnElement[bool] = payments.c.status == sa.any_(sa.cast(sa.bindparam("p_sources"), _TEXTS))
    if provider_event:
        condition = sa.and_(condition, sa.exists(sa.select(_CLAIM_EVENT_FOR_PAYMENT.c.payment_id)))
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
    if not (attempt or event or consumed or provider_event):
        return update, None
    updated = update.cte("updated")
    stmt = sa.select(updated)
    if provider_event:
        one = sa.select(sa.literal(1).label("one")).subquery("one")
        stmt = sa.select(
            sa.exists(sa.select(_CLAIM_EVENT_FOR_PAYMENT.c.payment_id)).label("event_claimed"), *updated.c
        ).select_from(one.outerjoin(updated, sa.true()))
    written: OutboxCte | None = None
    if attempt:
        log = attempts.insert().from_select(_ATTEMPT_COLUMNS, _attempt_columns(updated.c.payment_id))
        stmt = stmt.add_cte(log.cte("attempt"))
    if event:
        # One row per row the update returned (none if the guard refused), its data computed from that row.
        written = OutboxCte(outbox, source=updated, data=_event_data(updated), prefix="o", name="event")
        stmt = stmt.add_cte(written.cte)
    if consumed:
        claim = (
            insert(inbox)
            .from_select(
                ["consumer", "event_id"],
                sa.select(
                    sa.bindparam("i_consumer", type_=sa.Text), sa.bindparam("i_event_id", type_=sa.Text)
                ).select_from(updated),
            )
            .on_conflict_do_nothing()
        )
        stmt = stmt.add_cte(claim.cte("inbox_claim"))
    return stmt, written


class SqlPaymentRepo:
    """Payments on one connection (the Tx's): statements only, never a transaction of its own.

    ``counted`` collects the payments whose new status is counted (:mod:`payment.data.outcomes`) once the
    transaction that wrote it has committed: with the status the payment had when this transaction locked it,
    if it did, which tells a 3-D Secure result from a plain one."""

    def __init__(
        self,
        conn: AsyncConnection,
        counted: list[tuple[Payment, PaymentStatus | None]],
        count_written: Callable[[int], None] | None = None,
    ) -> None:
        self._c = conn
        self._counted = counted
        self._count_written = count_written  # the Tx's OutboxTx.count_written
        self._locked: dict[uuid.UUID, PaymentStatus] = {}

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
        row = (await self._c.execute(_INSERT_PAYMENT, params)).first()
        if row is not None:
            return _payment(row), True
        # A new statement sees the row whose key conflicted (it is committed once we could not insert).
        existing = (await self._c.execute(_BY_KEY, {"idempotency_key": new.idempotency_key})).one()
        return _payment(existing), False

    async def get(self, payment_id: uuid.UUID) -> Payment | None:
        row = (await self._c.execute(_BY_ID, {"payment_id": payment_id})).first()
        return None if row is None else _payment(row)

    async def lock(self, payment_id: uuid.UUID) -> Payment | None:
        row = (await self._c.execute(_LOCK_BY_ID, {"payment_id": payment_id})).first()
        if row is None:
            return None
        payment = _payment(row)
        self._locked[payment_id] = payment.status
        return payment

    async def get_by_key(self, idempotency_key: str) -> Payment | None:
        row = (await self._c.execute(_BY_KEY, {"idempotency_key": idempotency_key})).first()
        return None if row is None else _payment(row)

    async def captured_for_order(self, order_id: str) -> Payment | None:
        row = (await self._c.execute(_CAPTURED_FOR_ORDER, {"order_id": order_id})).first()
        return None if row is None else _payment(row)

    async def by_order_ref(self, order_ref: str) -> list[Payment]:
        rows = (await self._c.execute(_BY_ORDER_REF, {"order_ref": order_ref})).all()
        return [_payment(r) for r in rows]

    async def unsettled(self, statuses: Iterable[PaymentStatus], idle_seconds: float, limit: int) -> list[Payment]:
        wanted = frozenset(statuses)
        if not wanted or not wanted <= _UNSETTLED:
            raise ValueError(f"unsettled() looks for {sorted(_UNSETTLED)} only, not {sorted(wanted)}")
        stmt = _unsettled_stmt(tuple(sorted(s.value for s in wanted)))
        rows = (await self._c.execute(stmt, {"idle": timedelta(seconds=idle_seconds), "limit": limit})).all()
        return [_payment(r) for r in rows]

    async def apply(self, payment_id: uuid.UUID, t: Transition) -> Payment | None:
        """The conditional update with, in the same statement, its attempt row, its outbox event and the inbox
        claim of the event that caused it; None (and nothing written) if it did not apply."""
        row = await self._apply(payment_id, t, None)
        return None if row is None else self._applied(payment_id, t, row, self._locked.get(payment_id))

    async def apply_provider_event(
        self, payment_id: uuid.UUID, t: Transition, provider: str, event: ProviderEvent, before: PaymentStatus
    ) -> tuple[bool, Payment | None]:
        """One statement: claim the provider ``event`` for this payment (as ProviderEventRepo.claim would record
        it, and only if it would record it for this payment) and, only if claimed now, the transition it causes
        (as :meth:`apply`); (claimed now, the payment if the transition applied). ``before``: the status the
        transition was planned from, for the outcome counters only: the status read before this statement, not
        under its lock, so when the payment moved in between (its guard lets the transition apply from any of its
        sources) the counters may see the wrong one: a 3-D Secure authorization counted as a plain one, say. The
        payment itself, its events and the claim are what the statement saw; only that metric may be off, rarely
        (a webhook racing the answer of its own call and another change at once)."""
        row = await self._apply(payment_id, t, _event_params(provider, event, payment_id))
        if row is None or not row.event_claimed:
            return False, None
        if row.payment_id is None:
            return True, None
        return True, self._applied(payment_id, t, row, before)

    async def _apply(self, payment_id: uuid.UUID, t: Transition, claim: dict[str, Any] | None) -> sa.Row[Any] | None:
        changed = tuple(sorted(t.changes))
        stmt, event = _transition_stmt(
            changed,
            lease=t.lease_seconds is not None,
            attempt=t.attempt is not None,
            event=bool(t.event_type),
            consumed=t.consumed is not None,
            provider_event=claim is not None,
        )
        params: dict[str, Any] = {f"p_{name}": t.changes[name] for name in changed}
        params.update(p_payment_id=payment_id, p_sources=[s.value for s in t.sources], p_to=t.to.value)
        if t.lease_seconds is not None:
            params["p_lease"] = timedelta(seconds=t.lease_seconds)
        if t.attempt is not None:
            params.update(_attempt_params(t.attempt))
        if event is not None and t.event_type:
            params.update(event.params(service=SERVICE, event_type=t.event_type, aggregate_id=str(payment_id)))
            params["o_extra"] = t.event_extra
        if t.consumed is not None:
            params.update(i_consumer=t.consumed.consumer, i_event_id=t.consumed.event_id)
        if claim is not None:
            params.update(claim)
        try:
            return (await self._c.execute(stmt, params)).first()
        except IntegrityError as exc:
            if _ONE_CAPTURE_INDEX in str(exc.orig):
                raise FailedPrecondition(
                    "another payment is already captured for this order",
                    reason=INVALID_STATE,
                    metadata={"payment_id": str(payment_id), "order_id": str(t.changes.get("order_id"))},
                ) from exc
            raise

    def _applied(self, payment_id: uuid.UUID, t: Transition, row: sa.Row[Any], before: PaymentStatus | None) -> Payment:
        payment = _payment(row)
        self._counted.append((payment, before))
        if t.event_type and self._count_written is not None:
            self._count_written(1)
        return payment

    async def record_attempt(self, payment_id: uuid.UUID, attempt: Attempt) -> None:
        await self._c.execute(_INSERT_ATTEMPT, {"a_payment_id": payment_id, **_attempt_params(attempt)})

    async def add_refunded(self, payment_id: uuid.UUID, amount_minor: int) -> Payment:
        row = (
            await self._c.execute(
                payments.update()
                .where(payments.c.payment_id == payment_id)
                .values(refunded_minor=payments.c.refunded_minor + amount_minor, updated_at=sa.func.now())
                .returning(*payments.c)
            )
        ).one()
        return _payment(row)

    async def settle_refund(self, refund: Refund, *, succeeded: bool) -> Payment:
        where = payments.c.payment_id == refund.payment_id
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
        row = (await self._c.execute(payments.update().where(where).values(values).returning(*payments.c))).one()
        payment = _payment(row)
        if succeeded:
            self._counted.append((payment, None))  # each refund counts, partial ones too
        return payment


class SqlRefundRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._c = conn

    async def by_key(self, idempotency_key: str) -> Refund | None:
        row = (await self._c.execute(sa.select(refunds).where(refunds.c.idempotency_key == idempotency_key))).first()
        return None if row is None else _refund(row)

    async def insert(self, payment_id: uuid.UUID, idempotency_key: str, amount_minor: int) -> Refund | None:
        row = (
            await self._c.execute(
                insert(refunds)
                .values(
                    refund_id=uuid.uuid4(),
                    payment_id=payment_id,
                    idempotency_key=idempotency_key,
                    amount_minor=amount_minor,
                )
                .on_conflict_do_nothing(index_elements=[refunds.c.idempotency_key])
                .returning(*refunds.c)
            )
        ).first()
        return None if row is None else _refund(row)

    async def finish(self, refund: Refund, *, succeeded: bool, provider_refund_id: str | None) -> bool:
        finished = (
            await self._c.execute(
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
        return finished is not None

    async def pending(self, idle_seconds: float, limit: int) -> list[tuple[Refund, Payment]]:
        found = [
            _refund(r)
            for r in await self._c.execute(_PENDING_REFUNDS, {"idle": timedelta(seconds=idle_seconds), "limit": limit})
        ]
        if not found:
            return []
        rows = await self._c.execute(_BY_IDS, {"ids": list({r.payment_id for r in found})})
        by_id = {p.payment_id: p for p in map(_payment, rows)}
        return [(r, by_id[r.payment_id]) for r in found]


class SqlProviderEventRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._c = conn

    async def claim(
        self, provider: str, event: ProviderEvent, payment_id: uuid.UUID | None
    ) -> tuple[bool, uuid.UUID | None]:
        row = (await self._c.execute(_CLAIM_EVENT, _event_params(provider, event, payment_id))).first()
        return (False, None) if row is None else (True, row.payment_id)

    async def record_if_nothing_to_do(
        self, provider: str, event: ProviderEvent, payment_id: uuid.UUID, when: NothingToDo
    ) -> EventRecord:
        """One statement: see :data:`_RECORD_IF_NOTHING_TO_DO`."""
        params = _event_params(provider, event, payment_id)
        params.update(
            n_sources=[s.value for s in when.sources],
            n_refunded=when.refunded,
            n_open_intent=when.open_intent,
            n_nothing_held=[s.value for s in NOTHING_HELD],
        )
        row = (await self._c.execute(_RECORD_IF_NOTHING_TO_DO, params)).first()
        if row is None:
            return EventRecord(None, seen=False, nothing_to_do=False, recorded=False)
        return EventRecord(
            _payment(row), seen=bool(row.event_seen), nothing_to_do=bool(row.nothing_to_do), recorded=bool(row.recorded)
        )


class SqlInboxRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._c = conn

    async def seen(self, consumer: str, event_id: str) -> bool:
        return (await self._c.execute(_INBOX_SEEN, {"consumer": consumer, "event_id": event_id})).first() is not None

    async def claim(self, consumer: str, event_id: str) -> bool:
        return await claim_inbox(self._c, inbox, consumer, event_id)


class SqlPaymentStats:
    def __init__(self, conn: AsyncConnection) -> None:
        self._c = conn

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
        rows = list(await self._c.execute(stmt))
        return FailureRates(start, end, sum(r.n for r in rows), {r.code: r.n for r in rows if r.code})


class SqlTx(OutboxTx):
    """The repositories of one transaction (or of single statements, from ``read()``/``single()``/``statement()``)
    and its outbox.

    ``events`` counts every outbox row written (the publisher is woken after a commit that wrote any). A transition
    writes its event in its own statement (``SqlPaymentRepo.apply``), run in ``statement()``, where ``add_event`` (a
    statement of its own, which only a transaction may write) is refused (:class:`infra.outbox.OutboxTx`)."""

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__(conn, outbox, service=SERVICE)
        self.counted: list[tuple[Payment, PaymentStatus | None]] = []
        self.payments = SqlPaymentRepo(conn, self.counted, self.count_written)
        self.refunds = SqlRefundRepo(conn)
        self.provider_events = SqlProviderEventRepo(conn)
        self.inbox = SqlInboxRepo(conn)
        self.stats = SqlPaymentStats(conn)

    async def audit(self, *targets: str) -> None:
        await audit.record(self.conn, audit_log, *targets)


class SqlUnitOfWork(StatementUnitOfWork[SqlTx]):
    """The only place a payment transaction begins (:class:`infra.outbox_cte.StatementUnitOfWork` of payment's
    :class:`SqlTx`): ``statement()`` for one write that writes its outbox event itself (a transition, in a CTE),
    ``single()`` for one write without an event. ``on_commit`` wakes the outbox publisher after a commit that
    added events; the payments' new statuses are counted (:mod:`payment.data.outcomes`) once they are committed,
    by ``transaction()``, ``single()`` and ``statement()``."""

    def __init__(self, engine: AsyncEngine, *, on_commit: Callable[[], None] | None = None) -> None:
        super().__init__(engine, SqlTx, on_commit=on_commit)

    def after_commit(self, tx: SqlTx) -> None:
        for payment, before in tx.counted:
            count_outcome(payment, before=before)
