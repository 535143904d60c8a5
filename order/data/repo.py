"""SqlOrderRepo: the OrderRepo port on Postgres (SQLAlchemy Core, one short transaction per call)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from infra.money import Money
from infra.outbox import add_event, claim_inbox
from order.biz.ports import PageCursor, Transition, TransitionResult
from order.data.tables import history, inbox, order_discounts, order_lines, orders, outbox
from order.model.events import ORDER_CREATED, event_data
from order.model.order import (
    Address,
    NewOrder,
    Order,
    OrderDiscount,
    OrderLine,
    OrderStatus,
    PaymentOutcome,
    StatusChange,
    Totals,
)

__all__ = ["SqlOrderRepo"]

SERVICE = "order"


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _address_json(address: Address | None) -> dict[str, str] | None:
    return dataclasses.asdict(address) if address is not None else None


def _address(raw: dict[str, str] | None) -> Address | None:
    if raw is None:
        return None
    return Address(**{f.name: str(raw.get(f.name, "")) for f in dataclasses.fields(Address)})


class SqlOrderRepo:
    """``on_commit`` is called after a transaction that wrote outbox rows (wakes the publisher)."""

    def __init__(self, engine: AsyncEngine, *, on_commit: Callable[[], None] = lambda: None) -> None:
        self._engine = engine
        self._on_commit = on_commit

    async def create(self, order: NewOrder, cause: str) -> tuple[Order, bool]:
        t = order.totals
        values: dict[str, Any] = {
            "order_id": uuid.uuid4(),
            "checkout_session_id": order.checkout_session_id,
            "customer_id": order.customer_id,
            "email": order.email,
            "status": OrderStatus.PENDING_PAYMENT.value,
            "currency_code": order.currency_code,
            "subtotal_minor": t.subtotal.amount_minor,
            "discount_total_minor": t.discount_total.amount_minor,
            "shipping_total_minor": t.shipping_total.amount_minor,
            "tax_total_minor": t.tax_total.amount_minor,
            "grand_total_minor": t.grand_total.amount_minor,
            "shipping_address": _address_json(order.shipping_address),
            "billing_address": _address_json(order.billing_address),
            "shipping_method": order.shipping_method,
            "payment_id": order.payment_id,
            "payment_method": order.payment_method,
            "notes": order.notes,
        }
        stmt = (
            insert(orders)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[orders.c.checkout_session_id])
            .returning(*orders.c)
        )
        async with self._engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
            if row is None:
                existing = await self._load_where(conn, orders.c.checkout_session_id == order.checkout_session_id)
                if existing is None:  # the unique index guarantees the conflicting row is visible now
                    raise RuntimeError(f"order for session {order.checkout_session_id} vanished")
                return existing, False
            oid = row.order_id
            await conn.execute(
                order_lines.insert(),
                [
                    {
                        "order_id": oid,
                        "line_no": i,
                        "sku": line.sku,
                        "name": line.name,
                        "quantity": line.quantity,
                        "unit_price_minor": line.unit_price.amount_minor,
                        "line_total_minor": line.line_total.amount_minor,
                        "warehouse_id": line.warehouse_id,
                        "tax_class": line.tax_class,
                    }
                    for i, line in enumerate(order.lines)
                ],
            )
            if order.discounts:
                await conn.execute(
                    order_discounts.insert(),
                    [
                        {"order_id": oid, "position": i, "code": d.code, "amount_minor": d.amount.amount_minor}
                        for i, d in enumerate(order.discounts)
                    ],
                )
            await conn.execute(history.insert().values(order_id=oid, status=row.status, cause=cause))
            created = self._build(row, order.lines, order.discounts)
            await add_event(
                conn,
                outbox,
                service=SERVICE,
                event_type=ORDER_CREATED,
                aggregate_id=created.order_id,
                data=event_data(created, cause),
            )
        self._on_commit()
        return created, True

    async def get(self, order_id: str) -> Order | None:
        oid = _uuid(order_id)
        if oid is None:
            return None
        async with self._engine.connect() as conn:
            return await self._load_where(conn, orders.c.order_id == oid)

    async def find_id_by_session(self, checkout_session_id: str) -> str | None:
        async with self._engine.connect() as conn:
            oid = (
                await conn.execute(
                    sa.select(orders.c.order_id).where(orders.c.checkout_session_id == checkout_session_id)
                )
            ).scalar()
        return str(oid) if oid is not None else None

    async def history(self, order_id: str) -> list[StatusChange]:
        oid = _uuid(order_id)
        if oid is None:
            return []
        stmt = (
            sa.select(history.c.status, history.c.cause, history.c.occurred_at)
            .where(history.c.order_id == oid)
            .order_by(history.c.id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [StatusChange(OrderStatus(r.status), r.cause, r.occurred_at) for r in rows]

    async def list_for_customer(self, customer_id: str, limit: int, after: PageCursor | None) -> list[Order]:
        stmt = sa.select(orders).where(orders.c.customer_id == customer_id)
        if after is not None:
            stmt = stmt.where(
                sa.tuple_(orders.c.created_at, orders.c.order_id)
                < sa.tuple_(after.created_at, uuid.UUID(after.order_id))
            )
        stmt = stmt.order_by(orders.c.created_at.desc(), orders.c.order_id.desc()).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
            return await self._with_children(conn, rows)

    async def transition(self, transition: Transition) -> TransitionResult:
        oid = _uuid(transition.order_id)
        if oid is None:
            return TransitionResult(order=None, applied=False)
        where = [orders.c.order_id == oid, orders.c.status.in_([s.value for s in transition.sources])]
        values: dict[str, Any] = {"status": transition.target.value, "updated_at": sa.func.now()}
        if transition.payment_id:
            where.append(orders.c.payment_id.in_(["", transition.payment_id]))
            values["payment_id"] = transition.payment_id
        if transition.payment_outcome is not None:
            values["payment_outcome"] = transition.payment_outcome.value
        if transition.tracking_number:
            values["tracking_number"] = transition.tracking_number
        stmt = orders.update().where(*where).values(**values).returning(*orders.c)
        async with self._engine.begin() as conn:
            claim = transition.inbox
            if claim is not None and not await claim_inbox(conn, inbox, claim.consumer, claim.event_id):
                current = await self._load_where(conn, orders.c.order_id == oid)
                return TransitionResult(order=current, applied=False, duplicate=True)
            row = (await conn.execute(stmt)).first()
            if row is None:
                current = await self._load_where(conn, orders.c.order_id == oid)
                return TransitionResult(order=current, applied=False)
            await conn.execute(history.insert().values(order_id=oid, status=row.status, cause=transition.cause))
            (updated,) = await self._with_children(conn, [row])
            await add_event(
                conn,
                outbox,
                service=SERVICE,
                event_type=transition.event_type,
                aggregate_id=updated.order_id,
                data=event_data(updated, transition.cause),
            )
        self._on_commit()
        return TransitionResult(order=updated, applied=True)

    async def _load_where(self, conn: AsyncConnection, condition: sa.ColumnElement[bool]) -> Order | None:
        row = (await conn.execute(sa.select(orders).where(condition))).first()
        if row is None:
            return None
        (order,) = await self._with_children(conn, [row])
        return order

    async def _with_children(self, conn: AsyncConnection, rows: Sequence[sa.Row[Any]]) -> list[Order]:
        """Attach lines and discounts to order rows with one query each, whatever the number of rows."""
        if not rows:
            return []
        ids = [r.order_id for r in rows]
        line_rows = (
            await conn.execute(
                sa.select(order_lines).where(order_lines.c.order_id.in_(ids)).order_by(order_lines.c.line_no)
            )
        ).all()
        discount_rows = (
            await conn.execute(
                sa.select(order_discounts)
                .where(order_discounts.c.order_id.in_(ids))
                .order_by(order_discounts.c.position)
            )
        ).all()
        currency = {r.order_id: r.currency_code for r in rows}
        lines: dict[uuid.UUID, list[OrderLine]] = {i: [] for i in ids}
        for lr in line_rows:
            cur = currency[lr.order_id]
            lines[lr.order_id].append(
                OrderLine(
                    sku=lr.sku,
                    name=lr.name,
                    quantity=lr.quantity,
                    unit_price=Money(cur, lr.unit_price_minor),
                    line_total=Money(cur, lr.line_total_minor),
                    warehouse_id=lr.warehouse_id,
                    tax_class=lr.tax_class,
                )
            )
        discounts: dict[uuid.UUID, list[OrderDiscount]] = {i: [] for i in ids}
        for dr in discount_rows:
            discounts[dr.order_id].append(
                OrderDiscount(code=dr.code, amount=Money(currency[dr.order_id], dr.amount_minor))
            )
        return [self._build(r, lines[r.order_id], discounts[r.order_id]) for r in rows]

    @staticmethod
    def _build(row: sa.Row[Any], lines: Sequence[OrderLine], discounts: Sequence[OrderDiscount]) -> Order:
        cur = row.currency_code
        return Order(
            order_id=str(row.order_id),
            checkout_session_id=row.checkout_session_id,
            customer_id=row.customer_id,
            email=row.email,
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
            shipping_address=_address(row.shipping_address),
            billing_address=_address(row.billing_address),
            shipping_method=row.shipping_method,
            payment_id=row.payment_id,
            payment_method=row.payment_method,
            payment_outcome=PaymentOutcome(row.payment_outcome) if row.payment_outcome else None,
            notes=row.notes,
            tracking_number=row.tracking_number,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
