"""SqlUnitOfWork and SqlTx: the biz ports on Postgres (SQLAlchemy Core, psycopg 3).

Lock order, the same in every transaction so none can deadlock another:
1. the reservation_ref advisory lock (steps of one checkout session serialise);
2. reservation rows (the sweeper claims them with SKIP LOCKED, so it never waits here);
3. stock rows, always ``ORDER BY sku, warehouse_id FOR UPDATE`` before any stock update (in a statement of its own,
   or as a MATERIALIZED CTE of the update, which changes only rows that CTE locked).

One step takes a reservation row after stock rows, and can't wait on it: ReserveStock locks the stock rows
(reservations_and_stock), then deletes the ref's finished (RELEASED, EXPIRED) rows (discard_finished). Only a
holder of the ref's advisory lock, which ReserveStock holds, locks a finished row: every step on a ref takes that
lock first, and the sweeper (expire_due) locks ACTIVE rows only. A row it is expiring still reads ACTIVE, and
ReserveStock answers a ref with an ACTIVE row without deleting anything; one read EXPIRED was committed, its
sweeper done. So the delete never waits, and no cycle goes through it.

A statement that may wait for a lock reads what else it reads at its start (READ COMMITTED re-checks only the rows
it updates or locks): transition_listed's list of the ref's rows, and reservations_and_stock's, can show ACTIVE a row
the sweeper expired during the wait. Not one this statement moved: the sweeper alone gave its stock back. And it
shows an expires_at already past (the sweeper expires nothing before it), as an ACTIVE row the sweeper has not
reached yet does at any time; ReleaseReservations may answer such a row, ReserveStock hand it back as live.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.selectable import CTE

from infra import audit
from infra.db import UnitOfWork
from infra.outbox import OutboxTx, claim_inbox
from infra.outbox_cte import OutboxCte, returned_a_row
from warehouse.biz.ports import NewEvent
from warehouse.data.tables import audit_log, inbox, outbox, reservations, stock, warehouses
from warehouse.model.allocation import Allocation
from warehouse.model.inventory import (
    Address,
    Reservation,
    ReservationStatus,
    StockLevel,
    StockSetting,
    Warehouse,
)
from warehouse.model.reconciliation import StockAudit

__all__ = ["SqlTx", "SqlUnitOfWork"]

SERVICE = "warehouse"

_RESERVATION_COLUMNS = (
    reservations.c.reservation_id,
    reservations.c.reservation_ref,
    reservations.c.sku,
    reservations.c.warehouse_id,
    reservations.c.quantity,
    reservations.c.status,
    reservations.c.expires_at,
)
_ADDRESS_COLUMNS = (
    warehouses.c.address_name,
    warehouses.c.line1,
    warehouses.c.line2,
    warehouses.c.city,
    warehouses.c.region,
    warehouses.c.postal_code,
    warehouses.c.country_code,
    warehouses.c.phone,
)


def _address(row: Any) -> Address:
    return Address(
        name=row.address_name,
        line1=row.line1,
        line2=row.line2,
        city=row.city,
        region=row.region,
        postal_code=row.postal_code,
        country_code=row.country_code,
        phone=row.phone,
    )


def _reservation(row: Any, origin: Address | None = None) -> Reservation:
    return Reservation(
        reservation_id=str(row.reservation_id),
        reservation_ref=row.reservation_ref,
        sku=row.sku,
        warehouse_id=row.warehouse_id,
        quantity=row.quantity,
        status=ReservationStatus(row.status),
        expires_at=row.expires_at,
        origin=origin or Address(),
    )


def _level(row: Any) -> StockLevel:
    return StockLevel(sku=row.sku, warehouse_id=row.warehouse_id, on_hand=row.on_hand, reserved=row.reserved)


def _audit_query(
    *, skus: Sequence[str] | None = None, keys: Sequence[tuple[str, str]] | None = None, only_problems: bool
) -> sa.Select[Any]:
    """Each stock row beside SUM(quantity) of its active reservations, in (sku, warehouse_id) order.

    Restricted to ``skus`` or to the (sku, warehouse_id) ``keys`` when given; ``only_problems`` keeps
    the rows a :class:`StockAudit` would flag (the same conditions, evaluated by Postgres).
    """

    def restrict(table: sa.Table) -> list[sa.ColumnElement[bool]]:
        if skus is not None:
            return [table.c.sku.in_(list(skus))]
        if keys is not None:
            return [sa.tuple_(table.c.sku, table.c.warehouse_id).in_(sorted(set(keys)))]
        return []

    active = (
        sa.select(
            reservations.c.sku,
            reservations.c.warehouse_id,
            sa.func.sum(reservations.c.quantity).label("units"),
        )
        .where(reservations.c.status == ReservationStatus.ACTIVE.value, *restrict(reservations))
        .group_by(reservations.c.sku, reservations.c.warehouse_id)
        .subquery("active")
    )
    units = sa.func.coalesce(active.c.units, 0)
    same_row = sa.and_(active.c.sku == stock.c.sku, active.c.warehouse_id == stock.c.warehouse_id)
    stmt = (
        sa.select(stock.c.sku, stock.c.warehouse_id, stock.c.on_hand, stock.c.reserved, units.label("active_reserved"))
        .select_from(stock.outerjoin(active, same_row))
        .where(*restrict(stock))
        .order_by(stock.c.sku, stock.c.warehouse_id)
    )
    if only_problems:
        stmt = stmt.where(
            sa.or_(
                stock.c.reserved != units,
                stock.c.on_hand < 0,
                stock.c.reserved < 0,
                stock.c.reserved > stock.c.on_hand,
                units > stock.c.on_hand,
            )
        )
    return stmt


def _audit(row: Any) -> StockAudit:
    return StockAudit(
        sku=row.sku,
        warehouse_id=row.warehouse_id,
        on_hand=row.on_hand,
        reserved=row.reserved,
        active_reserved=int(row.active_reserved),
    )


def _seconds(ttl_seconds: int) -> sa.ColumnElement[Any]:
    return sa.func.make_interval(0, 0, 0, 0, 0, 0, sa.cast(ttl_seconds, sa.Integer))


# Statements built once with array bind parameters (``unnest``), so every call hits SQLAlchemy's
# compiled-statement cache whatever the number of rows; a ``VALUES`` construct carrying the rows
# as data would be compiled again on every call.
_TEXTS = postgresql.ARRAY(sa.Text)
_BIGINTS = postgresql.ARRAY(sa.BigInteger)


def _rows_param() -> sa.TableValuedAlias:
    """``unnest(:skus, :warehouse_ids, :quantities) AS v(sku, warehouse_id, qty)``."""
    return (
        sa.func.unnest(
            sa.cast(sa.bindparam("skus"), _TEXTS),
            sa.cast(sa.bindparam("warehouse_ids"), _TEXTS),
            sa.cast(sa.bindparam("quantities"), _BIGINTS),
        )
        .table_valued(sa.column("sku", sa.Text), sa.column("warehouse_id", sa.Text), sa.column("qty", sa.BigInteger))
        .render_derived(name="v")
    )


def _hold_stmt() -> sa.Update:
    wanted = _rows_param()
    return (
        stock.update()
        .where(
            stock.c.sku == wanted.c.sku,
            stock.c.warehouse_id == wanted.c.warehouse_id,
            stock.c.on_hand - stock.c.reserved >= wanted.c.qty,
        )
        .values(reserved=stock.c.reserved + wanted.c.qty, updated_at=sa.func.now())
        .returning(stock.c.sku, stock.c.warehouse_id)
    )


def _locked_in_order() -> CTE:
    """The stock rows of the ``unnest`` parameters, locked in (sku, warehouse_id) order (a MATERIALIZED CTE: the
    statement that joins it changes only rows this CTE already locked, so its locks are taken in that order)."""
    wanted = _rows_param()
    return (
        sa.select(stock.c.sku, stock.c.warehouse_id)
        .where(sa.tuple_(stock.c.sku, stock.c.warehouse_id).in_(sa.select(wanted.c.sku, wanted.c.warehouse_id)))
        .order_by(stock.c.sku, stock.c.warehouse_id)
        .with_for_update(of=stock)
        .cte("locked")
        .prefix_with("MATERIALIZED")
    )


def _per_row_update(values: Callable[[sa.TableValuedAlias], dict[str, Any]]) -> sa.Update:
    """``UPDATE stock`` with ``values`` per (sku, warehouse_id) row of the parameters, after locking them in order;
    RETURNING the rows changed."""
    back = _rows_param()
    locked = _locked_in_order()
    same_row = sa.and_(stock.c.sku == back.c.sku, stock.c.warehouse_id == back.c.warehouse_id)
    is_locked = sa.and_(locked.c.sku == stock.c.sku, locked.c.warehouse_id == stock.c.warehouse_id)
    return (
        stock.update()
        .where(same_row, is_locked)
        .values(**values(back), updated_at=sa.func.now())
        .returning(stock.c.sku, stock.c.warehouse_id)
    )


def _give_back_stmt(*, sold: bool) -> sa.Update:
    def values(back: sa.TableValuedAlias) -> dict[str, Any]:
        changes: dict[str, Any] = {"reserved": stock.c.reserved - back.c.qty}
        if sold:
            changes["on_hand"] = stock.c.on_hand - back.c.qty
        return changes

    return _per_row_update(values)


def _restock_stmt() -> sa.Update:
    return _per_row_update(lambda back: {"on_hand": stock.c.on_hand + back.c.qty})


def _hold_and_insert_stmt() -> sa.Select[Any]:
    """The hold and the insert in one statement: the reservations are inserted only if every stock row of the plan
    was held (``n_rows`` of them); answered with the rows held (a JSON array of [sku, warehouse_id]) beside each
    reservation inserted as reservations_of would answer it (one row of NULLs when none was)."""
    held = _hold_stmt().cte("held")
    all_held = sa.select(sa.func.count()).select_from(held).scalar_subquery() == sa.bindparam(
        "n_rows", type_=sa.Integer
    )
    inserted = _reservations_insert(all_held).returning(*_RESERVATION_COLUMNS).cte("inserted")
    held_keys = (
        sa.select(sa.func.json_agg(sa.func.json_build_array(held.c.sku, held.c.warehouse_id)))
        .scalar_subquery()
        .label("held_keys")
    )
    one = sa.select(sa.literal(1).label("one")).subquery("one")
    with_origin = inserted.join(warehouses, warehouses.c.warehouse_id == inserted.c.warehouse_id)
    return (
        sa.select(held_keys, inserted, *_ADDRESS_COLUMNS)
        .select_from(one.outerjoin(with_origin, sa.true()))
        .order_by(inserted.c.sku, inserted.c.warehouse_id)
    )


def _reservations_insert(only_if: sa.ColumnElement[bool] | None = None) -> sa.Insert:
    """INSERT the reservations of the parameters (``unnest``), all of them only if ``only_if`` holds."""
    rows = (
        sa.func.unnest(
            sa.cast(sa.bindparam("reservation_ids"), postgresql.ARRAY(postgresql.UUID(as_uuid=True))),
            sa.cast(sa.bindparam("skus"), _TEXTS),
            sa.cast(sa.bindparam("warehouse_ids"), _TEXTS),
            sa.cast(sa.bindparam("quantities"), _BIGINTS),
        )
        .table_valued(
            sa.column("reservation_id", postgresql.UUID(as_uuid=True)),
            sa.column("sku", sa.Text),
            sa.column("warehouse_id", sa.Text),
            sa.column("qty", sa.BigInteger),
        )
        .render_derived(name="v")
    )
    expires_at = sa.func.now() + sa.func.make_interval(
        0, 0, 0, 0, 0, 0, sa.cast(sa.bindparam("ttl_seconds"), sa.Integer)
    )
    values = sa.select(
        rows.c.reservation_id,
        sa.cast(sa.bindparam("reservation_ref"), sa.Text),
        rows.c.sku,
        rows.c.warehouse_id,
        rows.c.qty,
        sa.literal(ReservationStatus.ACTIVE.value, sa.Text),
        expires_at,
    )
    return reservations.insert().from_select(
        ["reservation_id", "reservation_ref", "sku", "warehouse_id", "quantity", "status", "expires_at"],
        values if only_if is None else values.where(only_if),
    )


class _PerStockRow:
    """A per-row stock update (:func:`_per_row_update`), alone or with one outbox event (bound in ``event``'s
    parameters), written only if the update changed a row: built once, so a call only binds."""

    def __init__(self, stmt: sa.Update) -> None:
        self.stmt = stmt
        changed = stmt.cte("changed")
        self.event = OutboxCte(outbox, where=returned_a_row(changed), prefix="event", name="event")
        self.with_event = sa.select(sa.func.count()).select_from(changed).add_cte(self.event.cte)


def _lock_ref_stmt() -> sa.Select[Any]:
    key = sa.func.hashtextextended(sa.bindparam("lock_key", type_=sa.Text), 0)
    return sa.select(sa.func.pg_advisory_xact_lock(key))


def _reservations_and_stock_stmt() -> sa.Select[Any]:
    """The ref's rows (as reservations_of answers them) and the skus' stock rows locked in (sku, warehouse_id) order
    by a MATERIALIZED CTE, told apart by ``kind``."""
    locked = (
        sa.select(stock.c.sku, stock.c.warehouse_id, stock.c.on_hand, stock.c.reserved)
        .where(stock.c.sku == sa.any_(sa.cast(sa.bindparam("skus"), _TEXTS)))
        .order_by(stock.c.sku, stock.c.warehouse_id)
        .with_for_update(of=stock)
        .cte("locked")
        .prefix_with("MATERIALIZED")
    )
    none = sa.null
    of_ref = (
        sa.select(
            sa.literal("reservation", sa.Text).label("kind"),
            *_RESERVATION_COLUMNS,
            *_ADDRESS_COLUMNS,
            sa.cast(none(), sa.BigInteger).label("on_hand"),
            sa.cast(none(), sa.BigInteger).label("reserved"),
        )
        .join(warehouses, warehouses.c.warehouse_id == reservations.c.warehouse_id)
        .where(reservations.c.reservation_ref == sa.bindparam("b_ref", type_=sa.Text))
    )
    of_stock = sa.select(
        sa.literal("stock", sa.Text),
        sa.cast(none(), reservations.c.reservation_id.type),
        sa.cast(none(), sa.Text),
        locked.c.sku,
        locked.c.warehouse_id,
        sa.cast(none(), reservations.c.quantity.type),
        sa.cast(none(), sa.Text),
        sa.cast(none(), reservations.c.expires_at.type),
        *_ADDRESS_COLUMNS,
        locked.c.on_hand,
        locked.c.reserved,
    ).join_from(locked, warehouses, warehouses.c.warehouse_id == locked.c.warehouse_id)
    both = sa.union_all(of_ref, of_stock).subquery("both")
    return sa.select(both).order_by(both.c.kind, both.c.sku, both.c.warehouse_id)


def _transition_listed_stmt(*, only_unexpired: bool) -> sa.Select[Any]:
    """Move the ref's ACTIVE rows (only those not expired, if ``only_unexpired``) to the status ``to``, and list
    every row of the ref as it is after the move, each with ``moved``."""
    # Not named after a column: an UPDATE would take a parameter named like one of its columns as that column's value.
    to = sa.bindparam("b_to", type_=sa.Text)
    ref = sa.bindparam("b_ref", type_=sa.Text)
    moved = (
        reservations.update()
        .where(
            reservations.c.reservation_ref == ref,
            reservations.c.status == ReservationStatus.ACTIVE.value,
            *([reservations.c.expires_at > sa.func.now()] if only_unexpired else []),
        )
        .values(status=to, updated_at=sa.func.now())
        .returning(reservations.c.reservation_id)
        .cte("moved")
    )
    # The statement's own snapshot shows the rows as they were before its update: a moved row is shown moved.
    # A row the sweeper expired while the update waited for its lock is shown ACTIVE (module docstring).
    was_moved = reservations.c.reservation_id.in_(sa.select(moved.c.reservation_id))
    columns = [c for c in _RESERVATION_COLUMNS if c is not reservations.c.status]
    return (
        sa.select(
            *columns,
            sa.case((was_moved, to), else_=reservations.c.status).label("status"),
            was_moved.label("moved"),
            *_ADDRESS_COLUMNS,
        )
        .join(warehouses, warehouses.c.warehouse_id == reservations.c.warehouse_id)
        .where(reservations.c.reservation_ref == ref)
        .order_by(reservations.c.sku, reservations.c.warehouse_id)
    )


_GIVE_BACK = _PerStockRow(_give_back_stmt(sold=False))
_GIVE_BACK_SOLD = _PerStockRow(_give_back_stmt(sold=True))
_RESTOCK = _PerStockRow(_restock_stmt())
_HOLD_AND_INSERT = _hold_and_insert_stmt()
_LOCK_REF = _lock_ref_stmt()
_RESERVATIONS_AND_STOCK = _reservations_and_stock_stmt()
_TRANSITION_LISTED = {unexpired: _transition_listed_stmt(only_unexpired=unexpired) for unexpired in (False, True)}


class SqlTx(OutboxTx):
    """The operations of one transaction (or, from :meth:`SqlUnitOfWork.read`, of one autocommit connection)
    and its outbox; see the module docstring for the lock order it follows."""

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__(conn, outbox, service=SERVICE)

    async def lock_ref(self, reservation_ref: str) -> None:
        await self.conn.execute(_LOCK_REF, {"lock_key": f"kassa-warehouse-ref:{reservation_ref}"})

    async def reservations_of(self, reservation_ref: str) -> list[Reservation]:
        stmt = (
            sa.select(*_RESERVATION_COLUMNS, *_ADDRESS_COLUMNS)
            .join(warehouses, warehouses.c.warehouse_id == reservations.c.warehouse_id)
            .where(reservations.c.reservation_ref == reservation_ref)
            .order_by(reservations.c.sku, reservations.c.warehouse_id)
        )
        return [_reservation(row, _address(row)) for row in await self.conn.execute(stmt)]

    async def discard_finished(self, reservation_ref: str) -> None:
        await self.conn.execute(
            reservations.delete().where(
                reservations.c.reservation_ref == reservation_ref,
                reservations.c.status.in_([ReservationStatus.RELEASED.value, ReservationStatus.EXPIRED.value]),
            )
        )

    async def reservations_and_stock(
        self, reservation_ref: str, skus: Sequence[str]
    ) -> tuple[list[Reservation], list[StockLevel], dict[str, str]]:
        # One statement (_reservations_and_stock_stmt): the ref's rows and the skus' stock rows, locked in order.
        params = {"b_ref": reservation_ref, "skus": list(skus)}
        rows = list(await self.conn.execute(_RESERVATIONS_AND_STOCK, params))
        existing = [_reservation(r, _address(r)) for r in rows if r.kind == "reservation"]
        levels = [r for r in rows if r.kind == "stock"]
        return existing, [_level(r) for r in levels], {r.warehouse_id: r.country_code for r in levels}

    async def lock_stock_rows(self, keys: Sequence[tuple[str, str]]) -> None:
        """Lock exactly these stock rows in (sku, warehouse_id) order before changing them."""
        if not keys:
            return
        await self.conn.execute(
            sa.select(stock.c.sku)
            .where(sa.tuple_(stock.c.sku, stock.c.warehouse_id).in_(sorted(set(keys))))
            .order_by(stock.c.sku, stock.c.warehouse_id)
            .with_for_update()
        )

    async def hold_and_insert(
        self, reservation_ref: str, allocations: Sequence[Allocation], ttl_seconds: int
    ) -> tuple[set[tuple[str, str]], list[Reservation]]:
        rows = list(
            await self.conn.execute(
                _HOLD_AND_INSERT,
                {
                    "reservation_ids": [uuid.uuid4() for _ in allocations],
                    "reservation_ref": reservation_ref,
                    "skus": [a.sku for a in allocations],
                    "warehouse_ids": [a.warehouse_id for a in allocations],
                    "quantities": [a.quantity for a in allocations],
                    "ttl_seconds": ttl_seconds,
                    "n_rows": len({(a.sku, a.warehouse_id) for a in allocations}),
                },
            )
        )
        held = {(sku, wh) for sku, wh in rows[0].held_keys or []}
        return held, [_reservation(row, _address(row)) for row in rows if row.reservation_id is not None]

    async def transition(
        self,
        reservation_ref: str,
        to: ReservationStatus,
        *,
        only_unexpired: bool,
        src: ReservationStatus = ReservationStatus.ACTIVE,
    ) -> list[Reservation]:
        conditions = [
            reservations.c.reservation_ref == reservation_ref,
            reservations.c.status == src.value,
        ]
        if only_unexpired:
            conditions.append(reservations.c.expires_at > sa.func.now())
        stmt = (
            reservations.update()
            .where(*conditions)
            .values(status=to.value, updated_at=sa.func.now())
            .returning(*_RESERVATION_COLUMNS)
        )
        return [_reservation(r) for r in await self.conn.execute(stmt)]

    async def transition_listed(
        self, reservation_ref: str, to: ReservationStatus, *, only_unexpired: bool
    ) -> tuple[list[Reservation], list[Reservation]]:
        stmt = _TRANSITION_LISTED[only_unexpired]
        rows = list(await self.conn.execute(stmt, {"b_ref": reservation_ref, "b_to": to.value}))
        return [_reservation(r) for r in rows if r.moved], [_reservation(r, _address(r)) for r in rows]

    async def extend(self, reservation_ref: str, ttl_seconds: int) -> list[Reservation]:
        stmt = (
            reservations.update()
            .where(
                reservations.c.reservation_ref == reservation_ref,
                reservations.c.status == ReservationStatus.ACTIVE.value,
                reservations.c.expires_at > sa.func.now(),
            )
            .values(
                expires_at=sa.func.greatest(reservations.c.expires_at, sa.func.now() + _seconds(ttl_seconds)),
                updated_at=sa.func.now(),
            )
            .returning(*_RESERVATION_COLUMNS)
        )
        return [_reservation(r) for r in await self.conn.execute(stmt)]

    async def expire_due(self, limit: int) -> list[Reservation]:
        # A MATERIALIZED CTE runs once: as `IN (subquery)` Postgres may rerun it per row scanned, each run
        # locking `limit` more rows, so one batch could grow past its bound.
        due = (
            sa.select(reservations.c.reservation_id)
            .where(
                reservations.c.status == ReservationStatus.ACTIVE.value,
                reservations.c.expires_at < sa.func.now(),
            )
            .order_by(reservations.c.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("due_reservations")
            .prefix_with("MATERIALIZED")
        )
        stmt = (
            reservations.update()
            .where(reservations.c.reservation_id == due.c.reservation_id)
            .values(status=ReservationStatus.EXPIRED.value, updated_at=sa.func.now())
            .returning(*_RESERVATION_COLUMNS)
        )
        rows = [_reservation(r) for r in await self.conn.execute(stmt)]
        return sorted(rows, key=lambda r: (r.reservation_ref, r.sku, r.warehouse_id))

    async def _per_stock_row(
        self, per_row: _PerStockRow, held: Sequence[Reservation], event: NewEvent | None = None
    ) -> None:
        """Run the update once over the summed quantity per (sku, warehouse_id), locking those rows in order first,
        in one statement; with ``event``, its outbox row is written by that statement too (infra.outbox_cte),
        guarded by the stock rows changed — every call with reservations, since a stock row is never deleted."""
        if not held:
            return
        totals: dict[tuple[str, str], int] = {}
        for r in held:
            key = (r.sku, r.warehouse_id)
            totals[key] = totals.get(key, 0) + r.quantity
        rows = sorted(totals.items())
        params = {
            "skus": [sku for (sku, _), _ in rows],
            "warehouse_ids": [wh for (_, wh), _ in rows],
            "quantities": [qty for _, qty in rows],
        }
        if event is None:
            await self.conn.execute(per_row.stmt, params)
            return
        params |= per_row.event.params(
            service=SERVICE, event_type=event.event_type, aggregate_id=event.aggregate_id, data=dict(event.data)
        )
        await self.conn.execute(per_row.with_event, params)
        self.count_written(1)

    async def give_back(self, held: Sequence[Reservation], *, sold: bool, event: NewEvent | None = None) -> None:
        await self._per_stock_row(_GIVE_BACK_SOLD if sold else _GIVE_BACK, held, event)

    async def restock(self, sold: Sequence[Reservation]) -> None:
        await self._per_stock_row(_RESTOCK, sold)

    async def claim_event(self, consumer: str, event_id: str) -> bool:
        return await claim_inbox(self.conn, inbox, consumer, event_id)

    async def set_stock(self, settings: Sequence[StockSetting]) -> tuple[list[StockLevel], list[int]]:
        order = sorted(range(len(settings)), key=lambda i: (settings[i].sku, settings[i].warehouse_id))
        await self.lock_stock_rows([(s.sku, s.warehouse_id) for s in settings])
        levels: list[StockLevel] = []
        refused: list[int] = []
        for i in order:
            s = settings[i]
            upsert = insert(stock).values(sku=s.sku, warehouse_id=s.warehouse_id, on_hand=s.on_hand, reserved=0)
            stmt = upsert.on_conflict_do_update(
                index_elements=[stock.c.sku, stock.c.warehouse_id],
                set_={"on_hand": upsert.excluded.on_hand, "updated_at": sa.func.now()},
                where=stock.c.reserved <= upsert.excluded.on_hand,
            ).returning(stock.c.sku, stock.c.warehouse_id, stock.c.on_hand, stock.c.reserved)
            row = (await self.conn.execute(stmt)).first()
            if row is None:
                refused.append(i)
            else:
                levels.append(_level(row))
        # An admin's SetStock is audited with the change (rolled back with it when an item is refused).
        await audit.record(self.conn, audit_log, *(f"warehouses/{s.warehouse_id}/stock/{s.sku}" for s in settings))
        return levels, sorted(refused)

    async def missing_warehouses(self, warehouse_ids: Sequence[str]) -> set[str]:
        found = await self.conn.execute(
            sa.select(warehouses.c.warehouse_id).where(warehouses.c.warehouse_id.in_(list(warehouse_ids)))
        )
        return set(warehouse_ids) - {r.warehouse_id for r in found}

    async def upsert_warehouses(self, items: Sequence[Warehouse]) -> None:
        rows = [
            {
                "warehouse_id": w.warehouse_id,
                "name": w.name,
                "address_name": w.address.name,
                "line1": w.address.line1,
                "line2": w.address.line2,
                "city": w.address.city,
                "region": w.address.region,
                "postal_code": w.address.postal_code,
                "country_code": w.address.country_code,
                "phone": w.address.phone,
            }
            for w in sorted(items, key=lambda w: w.warehouse_id)
        ]
        stmt = insert(warehouses).values(rows)
        updated = {k: stmt.excluded[k] for k in rows[0] if k != "warehouse_id"}
        await self.conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[warehouses.c.warehouse_id], set_={**updated, "updated_at": sa.func.now()}
            )
        )
        await audit.record(self.conn, audit_log, *(f"warehouses/{w.warehouse_id}" for w in items))

    async def lock_and_audit(self, keys: Sequence[tuple[str, str]]) -> list[StockAudit]:
        if not keys:
            return []
        await self.lock_stock_rows(keys)
        # A new statement after the locks: it sees every step that touched these rows committed.
        rows = await self.conn.execute(_audit_query(keys=keys, only_problems=False))
        return [_audit(r) for r in rows]

    async def set_reserved(self, audits: Sequence[StockAudit]) -> list[StockAudit]:
        if not audits:
            return []
        target = sa.values(
            sa.column("sku", sa.Text), sa.column("warehouse_id", sa.Text), sa.column("units", sa.BigInteger), name="v"
        ).data([(a.sku, a.warehouse_id, a.active_reserved) for a in audits])
        stmt = (
            stock.update()
            .where(
                stock.c.sku == target.c.sku,
                stock.c.warehouse_id == target.c.warehouse_id,
                target.c.units <= stock.c.on_hand,
            )
            .values(reserved=target.c.units, updated_at=sa.func.now())
            .returning(stock.c.sku, stock.c.warehouse_id)
        )
        written = {(r.sku, r.warehouse_id) for r in await self.conn.execute(stmt)}
        # An admin's repair (StockAdminService.RepairStockDrift) is audited in the transaction that commits it.
        await audit.record(self.conn, audit_log, *(f"warehouses/{w}/stock/{sku}" for sku, w in sorted(written)))
        return [a for a in audits if (a.sku, a.warehouse_id) in written]

    async def stock_levels(self, skus: Sequence[str]) -> list[StockLevel]:
        stmt = (
            sa.select(stock.c.sku, stock.c.warehouse_id, stock.c.on_hand, stock.c.reserved)
            .where(stock.c.sku.in_(list(skus)))
            .order_by(stock.c.sku, stock.c.warehouse_id)
        )
        return [_level(r) for r in await self.conn.execute(stmt)]

    async def audit_stock(self, skus: Sequence[str] | None = None) -> tuple[int, list[StockAudit]]:
        problems = _audit_query(skus=skus, only_problems=True).subquery("problems")
        counted = sa.select(sa.func.count().label("checked")).select_from(stock)
        if skus is not None:
            counted = counted.where(stock.c.sku.in_(list(skus)))
        total = counted.subquery("total")
        # One statement, so one snapshot: the count and the findings can't disagree.
        stmt = (
            sa.select(total.c.checked, *problems.c)
            .select_from(total.outerjoin(problems, sa.true()))
            .order_by(problems.c.sku, problems.c.warehouse_id)
        )
        rows = list(await self.conn.execute(stmt))
        checked = rows[0].checked if rows else 0
        return checked, [_audit(r) for r in rows if r.sku is not None]

    async def warehouses(self, warehouse_ids: Sequence[str] | None = None) -> list[Warehouse]:
        stmt = sa.select(warehouses.c.warehouse_id, warehouses.c.name, *_ADDRESS_COLUMNS).order_by(
            warehouses.c.warehouse_id
        )
        if warehouse_ids is not None:
            stmt = stmt.where(warehouses.c.warehouse_id.in_(list(warehouse_ids)))
        return [Warehouse(r.warehouse_id, r.name, _address(r)) for r in await self.conn.execute(stmt)]


class SqlUnitOfWork(UnitOfWork[SqlTx]):
    """The only place a warehouse transaction begins (:class:`infra.db.UnitOfWork` of warehouse's
    :class:`SqlTx`); ``on_commit`` wakes the outbox publisher after a commit that added events."""

    def __init__(self, engine: AsyncEngine, *, on_commit: Callable[[], None] | None = None) -> None:
        super().__init__(engine, SqlTx, on_commit=on_commit)
