"""The order service's repositories on Postgres (SQLAlchemy Core) and its unit of work.

Every order use case that writes is one statement, run in ``SqlUnitOfWork.statement()``
(:class:`infra.outbox_cte.StatementUnitOfWork`) on an autocommit connection: the change writes its history
entry, its inbox claim and its outbox event itself (data-modifying CTEs; the event an
:class:`infra.outbox_cte.OutboxCte`, counted with ``OutboxTx.count_written``), so it commits with them or not
at all. No use case opens ``transaction()`` or writes an event with ``add_event`` (``statement()`` refuses it);
the one transaction left is the one ``statement()`` gives an admin's call, so its audit entry commits with the
change. ``read()`` gives the same repositories on an autocommit connection, for a use case that only reads.

Each RPC costs as few round trips as the invariants allow (issue 4): the rows an RPC writes go in
one statement (data-modifying CTEs, lines and discounts as ``unnest`` arrays), an order is read with
its lines and discounts in one statement (JSON sub-selects), and the statements are built once at
import time so a call only binds parameters. A read that is a single statement runs without an
explicit transaction (autocommit): one statement is atomic on its own, and it saves BEGIN/ROLLBACK.

Personal data (the email, the addresses, the notes) is encrypted here, on its way in, and decrypted on its
way out (infra.pii): the rest of the service only sees plain values, and the table only tokens.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from infra import audit
from infra.outbox import OutboxTx
from infra.outbox_cte import OutboxCte, StatementUnitOfWork, json_object
from infra.pii import PiiCipher
from kernel.money import Money
from order.biz.ports import PageCursor, Transition, TransitionResult
from order.data.tables import audit_log, history, inbox, order_discounts, order_lines, orders, outbox
from order.model.events import ORDER_CREATED, event_data
from order.model.order import (
    Address,
    DeliveryWindow,
    NewOrder,
    Order,
    OrderDiscount,
    OrderLine,
    OrderStatus,
    PaymentOutcome,
    PaymentStatus,
    StatusChange,
    Totals,
)
from order.model.payment_status import payment_sources_of

__all__ = ["SERVICE", "SqlOrderRepo", "SqlTx", "SqlUnitOfWork"]

SERVICE = "order"

_TEXTS = postgresql.ARRAY(sa.Text)
_INTS = postgresql.ARRAY(sa.Integer)
_BIGINTS = postgresql.ARRAY(sa.BigInteger)
_ADDRESS_FIELDS = tuple(f.name for f in dataclasses.fields(Address))


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _address_json(address: Address | None) -> dict[str, str] | None:
    return address.to_dict() if address is not None else None


def _address(raw: dict[str, Any] | None) -> Address | None:
    if raw is None:
        return None
    return Address(*(str(raw.get(name, "")) for name in _ADDRESS_FIELDS))


@dataclasses.dataclass(frozen=True, slots=True)
class _Personal:
    """An order's personal data in plain text (from a row's tokens, or the values just written)."""

    email: str
    shipping_address: Address | None
    billing_address: Address | None
    notes: str

    @staticmethod
    def of(row: sa.Row[Any], cipher: PiiCipher) -> _Personal:
        return _Personal(
            email=cipher.decrypt(row.email),
            shipping_address=_address(cipher.decrypt_json(row.shipping_address)),
            billing_address=_address(cipher.decrypt_json(row.billing_address)),
            notes=cipher.decrypt(row.notes),
        )


def _param(name: str, type_: Any) -> sa.Cast[Any]:
    return sa.cast(sa.bindparam(name), type_)


# -- reading an order with its lines and discounts in one statement ------------------------------


# The lines and discounts in the statements that read them, by short aliases ("l.sku" for "orders.order_lines.sku"):
# with them, and the payment event's decisions made once (_payment_news_stmt), the payment event's statement is under
# the 4,096 characters up to which psycopg keeps a statement's parsed form (test_round_trips pins it).
_LINES = cast("sa.Alias[Any]", order_lines.alias("l"))
_DISCOUNTS = cast("sa.Alias[Any]", order_discounts.alias("d"))


def _children(order_id: sa.ColumnElement[Any]) -> tuple[sa.Label[Any], sa.Label[Any]]:
    """The lines and the discounts of the order ``order_id`` as JSON arrays of positional arrays."""
    ol, od = _LINES.c, _DISCOUNTS.c
    line = sa.func.json_build_array(
        ol.sku, ol.name, ol.quantity, ol.unit_price_minor, ol.line_total_minor, ol.warehouse_id, ol.tax_class
    )
    lines = (
        sa.select(sa.func.coalesce(sa.func.json_agg(aggregate_order_by(line, ol.line_no)), sa.text("'[]'::json")))
        .where(ol.order_id == order_id)
        .scalar_subquery()
    )
    discount = sa.func.json_build_array(od.code, od.amount_minor)
    discounts = (
        sa.select(sa.func.coalesce(sa.func.json_agg(aggregate_order_by(discount, od.position)), sa.text("'[]'::json")))
        .where(od.order_id == order_id)
        .scalar_subquery()
    )
    return lines.label("lines_json"), discounts.label("discounts_json")


_ORDER_COLUMNS = (*orders.c, *_children(orders.c.order_id))
_LOAD_BY_ID = sa.select(*_ORDER_COLUMNS).where(orders.c.order_id == sa.bindparam("order_id"))
_LOAD_BY_SESSION = sa.select(*_ORDER_COLUMNS).where(orders.c.checkout_session_id == sa.bindparam("checkout_session_id"))
_HISTORY = (
    sa.select(history.c.status, history.c.cause, history.c.occurred_at)
    .where(history.c.order_id == sa.bindparam("order_id"))
    .order_by(history.c.id)
)


# -- an order event's data, computed by the statement that changes the order --------------------------


# '' written into the SQL, not bound (a parameter more to convert on every call, and a longer statement).
_EMPTY = sa.literal_column("''", sa.Text)


def _money_json(currency: sa.ColumnElement[Any], amount: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return json_object({"currency_code": currency, "amount_minor": amount})


def _event_data_sql(row: sa.CTE) -> sa.ColumnElement[Any]:
    """``order.model.events.event_data`` of the order ``row`` (a CTE returning ``orders`` columns), as ``jsonb``;
    its lines read from ``order_lines`` (a statement that changes the order never changes them).

    The keys are written into the SQL (:func:`infra.outbox_cte.json_object`), not bound: bound, they were 26 of
    the statement's parameters, each converted by SQLAlchemy and psycopg on every call, and they took RecordPayment's
    statement past the 4,096 characters up to which psycopg keeps a statement's parsed form."""
    ol = _LINES.c
    line = json_object(
        {
            "sku": ol.sku,
            "quantity": ol.quantity,
            "warehouse_id": ol.warehouse_id,
            "unit_price": _money_json(row.c.currency_code, ol.unit_price_minor),
            "line_total": _money_json(row.c.currency_code, ol.line_total_minor),
        }
    )
    lines = (
        sa.select(sa.func.coalesce(sa.func.jsonb_agg(aggregate_order_by(line, ol.line_no)), sa.text("'[]'::jsonb")))
        .where(ol.order_id == row.c.order_id)
        .scalar_subquery()
    )
    return json_object(
        {
            "order_id": sa.cast(row.c.order_id, sa.Text),
            "checkout_session_id": row.c.checkout_session_id,
            "customer_id": row.c.customer_id,
            "status": row.c.status,
            "cause": sa.bindparam("t_cause", type_=sa.Text),
            "payment_id": row.c.payment_id,
            "payment_method": row.c.payment_method,
            "payment_outcome": sa.func.nullif(row.c.payment_outcome, _EMPTY),
            "payment_status": row.c.payment_status,
            "tracking_number": row.c.tracking_number,
            "carrier": row.c.carrier,
            "grand_total": _money_json(row.c.currency_code, row.c.grand_total_minor),
            "lines": lines,
        }
    )


# The order's columns a status change's history entry and event (_event_data_sql) read from the updated row.
_EVENT_COLUMNS = (
    "order_id",
    "checkout_session_id",
    "customer_id",
    "status",
    "currency_code",
    "grand_total_minor",
    "payment_id",
    "payment_method",
    "payment_outcome",
    "payment_status",
    "tracking_number",
    "carrier",
)


# -- CreateOrder: the order, its lines, discounts and first history entry in one statement --------

_INSERTED = (
    "order_id",
    "checkout_session_id",
    "customer_id",
    "email",
    "status",
    "currency_code",
    "subtotal_minor",
    "discount_total_minor",
    "shipping_total_minor",
    "tax_total_minor",
    "grand_total_minor",
    "shipping_address",
    "billing_address",
    "shipping_method",
    "payment_id",
    "payment_method",
    "payment_status",
    "notes",
    "delivery_min_days",
    "delivery_max_days",
)


# The personal data is not returned: CreateOrder has it in hand (_build), and without it the statement's text stays
# under the 4,096 characters up to which psycopg keeps a statement's parsed form (it parsed CreateOrder's again on
# every call, ~70 us, when its text was 4,159 characters; test_round_trips pins it).
_PERSONAL_COLUMNS = frozenset({"email", "shipping_address", "billing_address", "notes"})
_NEW_ORDER = (
    insert(orders)
    .values({name: sa.bindparam(name, type_=orders.c[name].type) for name in _INSERTED})
    .on_conflict_do_nothing(index_elements=[orders.c.checkout_session_id])
    .returning(*(c for c in orders.c if c.name not in _PERSONAL_COLUMNS))
    .cte("new_order")
)


def _create_stmt() -> sa.Select[Any]:
    """Insert the order unless its session has one (then no row comes back and nothing is written), with its
    lines, discounts, first history entry and OrderCreated event."""
    new = _NEW_ORDER
    lines = (
        sa.func.unnest(
            _param("line_nos", _INTS),
            _param("skus", _TEXTS),
            _param("names", _TEXTS),
            _param("quantities", _INTS),
            _param("unit_prices", _BIGINTS),
            _param("line_totals", _BIGINTS),
            _param("warehouse_ids", _TEXTS),
            _param("tax_classes", _TEXTS),
        )
        .table_valued(
            sa.column("line_no", sa.Integer),
            sa.column("sku", sa.Text),
            sa.column("name", sa.Text),
            sa.column("quantity", sa.Integer),
            sa.column("unit_price_minor", sa.BigInteger),
            sa.column("line_total_minor", sa.BigInteger),
            sa.column("warehouse_id", sa.Text),
            sa.column("tax_class", sa.Text),
        )
        .render_derived(name="l")
    )
    line_columns = [c.name for c in lines.c]
    insert_lines = order_lines.insert().from_select(
        ["order_id", *line_columns],
        sa.select(new.c.order_id, *lines.c).select_from(new.join(lines, sa.true())),
    )
    discounts = (
        sa.func.unnest(_param("positions", _INTS), _param("codes", _TEXTS), _param("discount_amounts", _BIGINTS))
        .table_valued(
            sa.column("position", sa.Integer), sa.column("code", sa.Text), sa.column("amount_minor", sa.BigInteger)
        )
        .render_derived(name="d")
    )
    insert_discounts = order_discounts.insert().from_select(
        ["order_id", "position", "code", "amount_minor"],
        sa.select(new.c.order_id, *discounts.c).select_from(new.join(discounts, sa.true())),
    )
    first_entry = history.insert().from_select(
        ["order_id", "status", "cause"],
        sa.select(new.c.order_id, new.c.status, sa.bindparam("first_cause", type_=sa.Text)),
    )
    return sa.select(new).add_cte(
        insert_lines.cte("new_lines"),
        insert_discounts.cte("new_discounts"),
        first_entry.cte("first_entry"),
        _CREATED_EVENT.cte,
    )


# OrderCreated, written only with a new order (its data known before the statement).
_CREATED_EVENT = OutboxCte(outbox, source=_NEW_ORDER, prefix="ev", name="created_event")
_CREATE = _create_stmt()


# -- a status transition, its history entry (and inbox claim) in one statement -------------------


def _claim_cte(*, by_session: bool = False) -> sa.CTE:
    """The inbox claim of ``:t_event_id``; ``by_session``: only if the session ``:t_session`` has an order (an event
    that finds no order by its session is not claimed, as when the order's id was looked up first)."""
    consumer, event_id = sa.bindparam("t_consumer", type_=sa.Text), sa.bindparam("t_event_id", type_=sa.Text)
    if not by_session:
        new = insert(inbox).values(consumer=consumer, event_id=event_id)
    else:
        where = _has_order_by_session()
        new = insert(inbox).from_select(["consumer", "event_id"], sa.select(consumer, event_id).where(where))
    return new.on_conflict_do_nothing().returning(inbox.c.event_id).cte("claim")


_SESSION = sa.bindparam("t_session", type_=sa.Text)


def _has_order_by_session() -> sa.Exists:
    return sa.exists(sa.select(orders.c.order_id).where(orders.c.checkout_session_id == _SESSION))


def _with_entry(
    updated: sa.CTE,
    claimed: sa.Exists | None,
    event: OutboxCte | None,
    found: sa.Exists | None = None,
    *,
    brief: bool = False,
) -> sa.Select[Any]:
    """Select the updated order with its lines and discounts (and ``claimed`` first, then ``found`` if given), after
    writing its history entry (and ``event``, the outbox row of the status change). ``brief``: only the updated
    order's id and its ``moved`` and ``recorded`` (``Transition.brief``)."""
    entry = history.insert().from_select(
        ["order_id", "status", "cause"],
        sa.select(updated.c.order_id, updated.c.status, sa.bindparam("t_cause", type_=sa.Text)),
    )
    ctes = [entry.cte("entry")] if event is None else [entry.cte("entry"), event.cte]
    if brief:
        columns: tuple[sa.ColumnElement[Any], ...] = (updated.c.order_id, updated.c.moved, updated.c.recorded)
    else:
        columns = (*updated.c, *_children(updated.c.order_id))
    if claimed is None:
        return sa.select(*columns).add_cte(*ctes)
    flags = [claimed.label("claimed")] if found is None else [claimed.label("claimed"), found.label("found")]
    flag = sa.select(*flags).subquery("flag")
    return sa.select(*flag.c, *columns).select_from(flag.outerjoin(updated, sa.true())).add_cte(*ctes)


def _status_event(updated: sa.CTE, where: sa.ColumnElement[bool] | None = None) -> OutboxCte:
    """The outbox row of a status change (``:t_event_type`` bound by the caller), for each updated row that
    passes ``where`` (at most one: the update is by order id)."""
    return OutboxCte(
        outbox,
        source=updated,
        where=where,
        data=_event_data_sql(updated),
        aggregate_id=sa.cast(updated.c.order_id, sa.Text),
        prefix="ev",
        name="event",
    )


def _payment_not_in(column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """The order's payment status is none of ``:t_unless_payment`` (``Transition.unless_payment``)."""
    return column != sa.all_(_param("t_unless_payment", _TEXTS))


# The order a transition updates, by a short alias: "o.status" where "orders.orders.status" took 14 characters
# more at each of some 30 places, which kept RecordPayment's statement over the 4,096 characters up to which
# psycopg keeps a statement's parsed form (test_round_trips pins it).
_UPDATED_ORDER = cast("sa.Alias[Any]", orders.alias("o"))  # a Table's alias is an Alias (sa.alias's docs)
# The order a payment event locks first (_payment_news_stmt's "cur"), by another.
_LOCKED_ORDER = cast("sa.Alias[Any]", orders.alias("r"))


@functools.cache
def _transition_stmt(
    *, payment: bool, outcome: bool, tracking: bool, claim: bool, guard: bool, event: bool
) -> tuple[sa.Select[Any], OutboxCte | None]:
    """``UPDATE orders … WHERE status = ANY(:sources)`` plus its history entry; the updated order with
    its lines and discounts comes back (no row: the status did not match). With ``claim``, the update
    applies only if the inbox claim is new, and the first column says whether it was. With ``event``, the
    status change's outbox row is written by the same statement (returned too, for its parameters)."""
    o = _UPDATED_ORDER
    where: list[sa.ColumnElement[bool]] = [
        o.c.order_id == sa.bindparam("t_order_id", type_=orders.c.order_id.type),
        o.c.status == sa.any_(_param("t_sources", _TEXTS)),
    ]
    if guard:
        where.append(_payment_not_in(o.c.payment_status))
    values: dict[str, Any] = {"status": sa.bindparam("t_target", type_=sa.Text), "updated_at": sa.func.now()}
    if payment:
        payment_id = sa.bindparam("t_payment_id", type_=sa.Text)
        where.append(sa.or_(o.c.payment_id == _EMPTY, o.c.payment_id == payment_id))
        values["payment_id"] = payment_id
    if outcome:
        values["payment_outcome"] = sa.bindparam("t_payment_outcome", type_=sa.Text)
    if tracking:
        values["tracking_number"] = sa.bindparam("t_tracking_number", type_=sa.Text)
        values["carrier"] = sa.bindparam("t_carrier", type_=sa.Text)
    claimed = None
    if claim:
        claimed = sa.exists(sa.select(_claim_cte().c.event_id))
        where.append(claimed)
    updated = sa.update(o).where(*where).values(values).returning(*o.c).cte("updated")
    outbox_row = _status_event(updated) if event else None
    return _with_entry(updated, claimed, outbox_row), outbox_row


@functools.cache
def _payment_news_stmt(
    *, move: bool, payment: bool, claim: bool, guard: bool, event: bool, by_session: bool = False, brief: bool = False
) -> tuple[sa.Select[Any], OutboxCte | None]:
    """A payment event: record ``:ps`` if the order's payment status is one of ``:ps_sources``, and
    (``move``) take the order from ``:sources`` to ``:target``; either one applies the update and its
    history entry. The row is locked first (``cur``) so the update knows the status it started from:
    ``moved`` and ``recorded`` come back with the order (no order columns: nothing applied). ``by_session``: the
    order of checkout session ``:t_session`` instead of ``:t_order_id`` (one statement, no lookup first). With ``move``
    and ``event``, the outbox row of the status change is written by the same statement, only if the status moved (a
    move without an event type moves all the same, and writes no event). ``brief`` (``Transition.brief``): the update
    returns only what its history entry and event use, and the statement only the order's id, ``moved`` and
    ``recorded``."""
    claimed = sa.exists().select_from(_claim_cte(by_session=by_session)) if claim else None
    r = _LOCKED_ORDER
    cur_where: list[sa.ColumnElement[bool]] = [
        r.c.checkout_session_id == _SESSION
        if by_session
        else r.c.order_id == sa.bindparam("t_order_id", type_=orders.c.order_id.type)
    ]
    if claimed is not None:
        cur_where.append(claimed)
    values: dict[str, Any] = {"updated_at": sa.func.now()}
    if payment:
        # An order with another payment is not locked: neither recorded nor moved (its claim is made all the same).
        # Not waiting for its lock is safe because an order's payment_id never changes once set (every writer sets it
        # only where it is '' or already the same), so that event's answer is CONFLICT whatever the holder commits.
        payment_id = sa.bindparam("t_payment_id", type_=sa.Text)
        cur_where.append(sa.or_(r.c.payment_id == _EMPTY, r.c.payment_id == payment_id))
        values["payment_id"] = payment_id
    # Whether the event records its payment status and whether it moves the order, decided once on the row as locked:
    # when the row was changed meanwhile, Postgres locks its latest version and runs cur's WHERE and select list again
    # on it. The update's own WHERE reads only cur, so this FOR UPDATE is the one guard (a capture never un-cancels an
    # order, nor confirms it twice: test_payment_event_locks); it must stay. Written out at each of their 5 uses in the
    # update, the two took the statement past the 4,096 characters up to which psycopg keeps a statement's parsed form
    # (test_round_trips pins it).
    records = r.c.payment_status == sa.any_(_param("t_ps_sources", _TEXTS))
    moves: sa.ColumnElement[bool] = sa.false()
    if move:
        moves = r.c.status == sa.any_(_param("t_sources", _TEXTS))
        if guard:
            moves = sa.and_(moves, _payment_not_in(r.c.payment_status))
    cur = (
        sa.select(r.c.order_id, moves.label("moves"), records.label("records"))
        .where(*cur_where)
        .with_for_update()
        .cte("cur")
    )
    o = _UPDATED_ORDER
    if move:
        values["status"] = sa.case((cur.c.moves, sa.bindparam("t_target", type_=sa.Text)), else_=o.c.status)
        values["payment_outcome"] = sa.case(
            (cur.c.moves, sa.bindparam("t_payment_outcome", type_=sa.Text)), else_=o.c.payment_outcome
        )
    values["payment_status"] = sa.case(
        (cur.c.records, sa.bindparam("t_payment_status", type_=sa.Text)), else_=o.c.payment_status
    )
    updated = (
        sa.update(o)
        .where(o.c.order_id == cur.c.order_id, sa.or_(cur.c.moves, cur.c.records))
        .values(values)
        .returning(
            *(o.c[name] for name in _EVENT_COLUMNS) if brief else o.c,
            cur.c.moves.label("moved"),
            cur.c.records.label("recorded"),
        )
        .cte("u")
    )
    outbox_row = _status_event(updated, updated.c.moved) if move and event else None
    # Found by its session: whether the session has an order, in the snapshot the claim saw (an unclaimed event
    # then says why without a second statement).
    found = _has_order_by_session() if by_session and claimed is not None else None
    return _with_entry(updated, claimed, outbox_row, found, brief=brief), outbox_row


class SqlOrderRepo:
    """The orders, on one connection: a transaction's (``SqlTx``) or an autocommit one (``SqlUnitOfWork.read``).
    ``cipher`` encrypts the personal columns. Never opens a transaction of its own."""

    def __init__(self, conn: AsyncConnection, cipher: PiiCipher, outbox: OutboxTx | None = None) -> None:
        self._conn = conn
        self._cipher = cipher
        self._outbox = outbox

    def _wrote_event(self) -> None:
        """An event written by one of this repository's statements counts in its Tx's ``events``."""
        if self._outbox is None:
            raise RuntimeError("a statement with an outbox row needs the repository of a Tx")
        self._outbox.count_written(1)

    async def create(self, order: NewOrder, cause: str) -> tuple[Order, bool]:
        t = order.totals
        lines, discounts = order.lines, order.discounts
        order_id = uuid.uuid4()
        personal = _Personal(order.email, order.shipping_address, order.billing_address, order.notes)
        # The order as the statement will write it, for its OrderCreated event (written only with the order).
        planned = _planned(str(order_id), order, personal)
        params: dict[str, Any] = {
            "order_id": order_id,
            "checkout_session_id": order.checkout_session_id,
            "customer_id": order.customer_id,
            "email": self._cipher.encrypt(order.email),
            "status": OrderStatus.PENDING_PAYMENT.value,
            "currency_code": order.currency_code,
            "subtotal_minor": t.subtotal.amount_minor,
            "discount_total_minor": t.discount_total.amount_minor,
            "shipping_total_minor": t.shipping_total.amount_minor,
            "tax_total_minor": t.tax_total.amount_minor,
            "grand_total_minor": t.grand_total.amount_minor,
            "shipping_address": self._cipher.encrypt_json(_address_json(order.shipping_address)),
            "billing_address": self._cipher.encrypt_json(_address_json(order.billing_address)),
            "shipping_method": order.shipping_method,
            "payment_id": order.payment_id,
            "payment_method": order.payment_method,
            "payment_status": order.initial_payment_status.value,
            "notes": self._cipher.encrypt(order.notes),
            "delivery_min_days": order.delivery_window.min_business_days if order.delivery_window else None,
            "delivery_max_days": order.delivery_window.max_business_days if order.delivery_window else None,
            "line_nos": list(range(len(lines))),
            "skus": [line.sku for line in lines],
            "names": [line.name for line in lines],
            "quantities": [line.quantity for line in lines],
            "unit_prices": [line.unit_price.amount_minor for line in lines],
            "line_totals": [line.line_total.amount_minor for line in lines],
            "warehouse_ids": [line.warehouse_id for line in lines],
            "tax_classes": [line.tax_class for line in lines],
            "positions": list(range(len(discounts))),
            "codes": [d.code for d in discounts],
            "discount_amounts": [d.amount.amount_minor for d in discounts],
            "first_cause": cause,
            **_CREATED_EVENT.params(
                service=SERVICE,
                event_type=ORDER_CREATED,
                aggregate_id=planned.order_id,
                data=event_data(planned, cause),
            ),
        }
        conn = self._conn
        row = (await conn.execute(_CREATE, params)).first()
        if row is None:
            # The session has an order; the unique index guarantees it is visible to a new statement.
            existing = (
                await conn.execute(_LOAD_BY_SESSION, {"checkout_session_id": order.checkout_session_id})
            ).first()
            if existing is None:
                raise RuntimeError(f"order for session {order.checkout_session_id} vanished")
            return _order(existing, self._cipher), False
        self._wrote_event()
        created = _build(row, lines, discounts, personal)
        await audit.record(conn, audit_log, f"orders/{created.order_id}")
        return created, True

    async def _by_session(self, checkout_session_id: str) -> Order | None:
        row = (await self._conn.execute(_LOAD_BY_SESSION, {"checkout_session_id": checkout_session_id})).first()
        return None if row is None else _order(row, self._cipher)

    async def get(self, order_id: str) -> Order | None:
        oid = _uuid(order_id)
        if oid is None:
            return None
        return await _load(self._conn, oid, self._cipher)

    async def history(self, order_id: str) -> list[StatusChange]:
        oid = _uuid(order_id)
        if oid is None:
            return []
        rows = (await self._conn.execute(_HISTORY, {"order_id": oid})).all()
        return [StatusChange(OrderStatus(r.status), r.cause, r.occurred_at) for r in rows]

    async def list_for_customer(self, customer_id: str, limit: int, after: PageCursor | None) -> list[Order]:
        stmt = sa.select(*_ORDER_COLUMNS).where(orders.c.customer_id == customer_id)
        if after is not None:
            stmt = stmt.where(
                sa.tuple_(orders.c.created_at, orders.c.order_id)
                < sa.tuple_(after.created_at, uuid.UUID(after.order_id))
            )
        stmt = stmt.order_by(orders.c.created_at.desc(), orders.c.order_id.desc()).limit(limit)
        rows = (await self._conn.execute(stmt)).all()
        return [_order(r, self._cipher) for r in rows]

    async def transition(self, transition: Transition) -> TransitionResult:
        claim = transition.inbox
        target = transition.target
        news = transition.payment_status is not None
        session = transition.checkout_session_id if not transition.order_id else ""
        oid = _uuid(transition.order_id)
        if oid is None and not (news and session):
            return TransitionResult(order=None, applied=False)
        guard = bool(transition.unless_payment)
        if news:
            stmt, event = _payment_news_stmt(
                move=target is not None,
                payment=bool(transition.payment_id),
                claim=claim is not None,
                guard=guard,
                event=bool(transition.event_type),
                by_session=bool(session),
                brief=transition.brief,
            )
        elif target is not None:
            stmt, event = _transition_stmt(
                payment=bool(transition.payment_id),
                outcome=transition.payment_outcome is not None,
                tracking=bool(transition.tracking_number),
                claim=claim is not None,
                guard=guard,
                event=bool(transition.event_type),
            )
        else:
            raise ValueError("a transition needs a target status or a payment status")
        params: dict[str, Any] = {
            "t_order_id": oid,
            "t_session": session,
            "t_sources": [s.value for s in transition.sources],
            "t_target": target.value if target else None,
            "t_payment_id": transition.payment_id,
            "t_payment_outcome": transition.payment_outcome.value if transition.payment_outcome else None,
            "t_tracking_number": transition.tracking_number,
            "t_carrier": transition.carrier,
            "t_cause": transition.cause,
        }
        if guard:
            params["t_unless_payment"] = [s.value for s in transition.unless_payment]
        if transition.payment_status is not None:
            params["t_payment_status"] = transition.payment_status.value
            params["t_ps_sources"] = [s.value for s in payment_sources_of(transition.payment_status)]
        if claim is not None:
            params["t_consumer"], params["t_event_id"] = claim.consumer, claim.event_id
        if event is not None:
            # The statement writes the order's id into the event (it may know the order by its session only).
            params.update(event.params(service=SERVICE, event_type=transition.event_type, aggregate_id=""))
        conn = self._conn
        row = (await conn.execute(stmt, params)).first()

        async def reread() -> Order | None:
            # Read the order again in a new statement, which sees what the update saw.
            if oid is not None:
                return await _load(conn, oid, self._cipher)
            return await self._by_session(session)

        if claim is not None and (row is None or not row.claimed):
            if oid is None and row is not None and not row.found:
                # Found by its session: no order has that session, so the claim was not made.
                return TransitionResult(order=None, applied=False)
            return TransitionResult(order=await reread(), applied=False, duplicate=True)
        if row is None or row.order_id is None:
            return TransitionResult(order=await reread(), applied=False)
        updated = None if news and transition.brief else _order(row, self._cipher)
        moved = bool(row.moved) if news else True
        recorded = bool(news and row.recorded)
        if moved and event is not None:
            self._wrote_event()
        if moved or recorded:
            await audit.record(conn, audit_log, f"orders/{row.order_id}")
        return TransitionResult(order=updated, applied=moved, recorded=recorded)


class SqlTx(OutboxTx):
    """The repositories of one connection (a ``statement()``'s or a ``read()``'s, autocommit; an admin call's
    transaction) and its outbox count."""

    def __init__(self, conn: AsyncConnection, cipher: PiiCipher) -> None:
        super().__init__(conn, outbox, service=SERVICE)
        self.orders = SqlOrderRepo(conn, cipher, self)


class SqlUnitOfWork(StatementUnitOfWork[SqlTx]):
    """:class:`infra.db.UnitOfWork` of order's :class:`SqlTx`. ``statement()`` (``infra.outbox_cte``): a step that
    is one write statement with its event, in autocommit (a transaction for an admin's call); ``read()`` for reads.
    ``on_commit`` wakes the outbox publisher after a statement that wrote events. ``cipher`` encrypts and decrypts
    the orders' personal data."""

    def __init__(self, engine: AsyncEngine, cipher: PiiCipher, *, on_commit: Callable[[], None] | None = None) -> None:
        super().__init__(engine, lambda conn: SqlTx(conn, cipher), on_commit=on_commit)


async def _load(conn: AsyncConnection, order_id: uuid.UUID, cipher: PiiCipher) -> Order | None:
    row = (await conn.execute(_LOAD_BY_ID, {"order_id": order_id})).first()
    return None if row is None else _order(row, cipher)


def _order(row: sa.Row[Any], cipher: PiiCipher) -> Order:
    """An order row carrying ``lines_json`` and ``discounts_json`` (see :func:`_children`)."""
    cur = row.currency_code
    lines = [
        OrderLine(
            sku=sku,
            name=name,
            quantity=quantity,
            unit_price=Money(cur, unit_price),
            line_total=Money(cur, line_total),
            warehouse_id=warehouse_id,
            tax_class=tax_class,
        )
        for sku, name, quantity, unit_price, line_total, warehouse_id, tax_class in row.lines_json
    ]
    discounts = [OrderDiscount(code=code, amount=Money(cur, amount)) for code, amount in row.discounts_json]
    return _build(row, lines, discounts, _Personal.of(row, cipher))


def _planned(order_id: str, new: NewOrder, personal: _Personal) -> Order:
    """The order CreateOrder's statement writes, before it runs (times are the statement's own: not known)."""
    now = datetime.now(UTC)
    return Order(
        order_id=order_id,
        checkout_session_id=new.checkout_session_id,
        customer_id=new.customer_id,
        email=personal.email,
        status=OrderStatus.PENDING_PAYMENT,
        lines=tuple(new.lines),
        discounts=tuple(new.discounts),
        totals=new.totals,
        shipping_address=personal.shipping_address,
        billing_address=personal.billing_address,
        shipping_method=new.shipping_method,
        payment_id=new.payment_id,
        payment_method=new.payment_method,
        payment_outcome=None,
        payment_status=new.initial_payment_status,
        notes=personal.notes,
        tracking_number="",
        created_at=now,
        updated_at=now,
        delivery_window=new.delivery_window,
    )


def _build(row: sa.Row[Any], lines: Any, discounts: Any, personal: _Personal) -> Order:
    cur = row.currency_code
    return Order(
        order_id=str(row.order_id),
        checkout_session_id=row.checkout_session_id,
        customer_id=row.customer_id,
        email=personal.email,
        status=OrderStatus(row.status),
        lines=tuple(lines),
        discounts=tuple(discounts),
        totals=Totals(
            subtotal=Money(cur, row.subtotal_minor),
            discount_total=Money(cur, row.discount_total_minor),
            shipping_total=Money(cur, row.shipping_total_minor),
            tax_total=Money(cur, row.tax_total_minor),
            grand_total=Money(cur, row.grand_total_minor),
        ),
        shipping_address=personal.shipping_address,
        billing_address=personal.billing_address,
        shipping_method=row.shipping_method,
        payment_id=row.payment_id,
        payment_method=row.payment_method,
        payment_outcome=PaymentOutcome(row.payment_outcome) if row.payment_outcome else None,
        payment_status=PaymentStatus(row.payment_status),
        notes=personal.notes,
        tracking_number=row.tracking_number,
        created_at=row.created_at,
        updated_at=row.updated_at,
        carrier=row.carrier,
        delivery_window=(
            DeliveryWindow(row.delivery_min_days, row.delivery_max_days) if row.delivery_min_days is not None else None
        ),
    )
