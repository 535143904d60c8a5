"""Postgres implementations of promotion's ports."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from infra.money import Money
from infra.outbox import add_event
from promotion.data.tables import outbox, promotion_usages, promotions
from promotion.model.promotion import Conditions, Promotion, PromotionType
from promotion.model.usage import Usage, UsageEvent, UsageStatus

__all__ = ["SqlPromotionRepo", "SqlPromotionUnitOfWork"]

_ACTIVE = (UsageStatus.RESERVED.value, UsageStatus.CONFIRMED.value)


def _promotion(row: sa.Row[Any]) -> Promotion:
    c = row.conditions or {}
    return Promotion(
        promotion_id=str(row.promotion_id),
        code=row.code,
        name=row.name,
        type=PromotionType(row.type),
        percent_off=row.percent_off,
        amount_off_minor=row.amount_off_minor,
        currency_code=row.currency_code,
        usage_limit=row.usage_limit,
        usage_limit_per_customer=row.usage_limit_per_customer,
        min_subtotal_minor=row.min_subtotal_minor,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        combinable=row.combinable,
        active=row.active,
        conditions=Conditions(
            skus=frozenset(c.get("skus", ())),
            categories=frozenset(c.get("categories", ())),
            brands=frozenset(c.get("brands", ())),
            buy_quantity=int(c.get("buy_quantity", 0)),
            get_quantity=int(c.get("get_quantity", 0)),
        ),
        used_count=row.used_count,
        reserved_count=row.reserved_count,
    )


def _conditions_json(c: Conditions) -> dict[str, Any]:
    return {
        "skus": sorted(c.skus),
        "categories": sorted(c.categories),
        "brands": sorted(c.brands),
        "buy_quantity": c.buy_quantity,
        "get_quantity": c.get_quantity,
    }


def _usage(row: sa.Row[Any]) -> Usage:
    return Usage(
        promotion_id=str(row.promotion_id),
        code=row.code,
        reservation_ref=row.reservation_ref,
        customer_id=row.customer_id,
        status=UsageStatus(row.status),
        discount=Money(row.currency_code, row.discount_minor),
        free_shipping=row.free_shipping,
    )


async def _customer_uses(conn: AsyncConnection, promotion_ids: Sequence[str], customer_id: str) -> dict[str, int]:
    if not promotion_ids:
        return {}
    u = promotion_usages
    stmt = (
        sa.select(u.c.promotion_id, sa.func.count())
        .where(
            u.c.customer_id == customer_id,
            u.c.promotion_id.in_([uuid.UUID(p) for p in promotion_ids]),
            u.c.status.in_(_ACTIVE),
        )
        .group_by(u.c.promotion_id)
    )
    return {str(pid): n for pid, n in (await conn.execute(stmt)).all()}


class SqlPromotionUnitOfWork:
    """One open transaction on ``conn``; see :class:`promotion.biz.ports.PromotionUnitOfWork`."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self.events_added = False

    async def lock_reference(self, reservation_ref: str) -> None:
        await self._conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"kassa-promotion-reservation:{reservation_ref}"},
        )

    async def usages(self, reservation_ref: str) -> list[Usage]:
        stmt = (
            sa.select(promotion_usages)
            .where(promotion_usages.c.reservation_ref == reservation_ref)
            .order_by(promotion_usages.c.code)
        )
        return [_usage(r) for r in (await self._conn.execute(stmt)).all()]

    async def lock_promotions(self, codes: Sequence[str]) -> dict[str, Promotion]:
        stmt = (
            sa.select(promotions)
            .where(promotions.c.code.in_(list(codes)))
            .order_by(promotions.c.code)
            .with_for_update()
        )
        return {row.code: _promotion(row) for row in (await self._conn.execute(stmt)).all()}

    async def customer_uses(self, promotion_ids: Sequence[str], customer_id: str) -> dict[str, int]:
        return await _customer_uses(self._conn, promotion_ids, customer_id)

    async def take_use(self, promotion_id: str) -> bool:
        p = promotions
        stmt = (
            p.update()
            .where(
                p.c.promotion_id == uuid.UUID(promotion_id),
                sa.or_(p.c.usage_limit == 0, p.c.used_count + p.c.reserved_count < p.c.usage_limit),
            )
            .values(reserved_count=p.c.reserved_count + 1, updated_at=sa.func.now())
            .returning(p.c.promotion_id)
        )
        return (await self._conn.execute(stmt)).first() is not None

    async def record_usage(self, usage: Usage) -> None:
        u = promotion_usages
        values = {
            "promotion_id": uuid.UUID(usage.promotion_id),
            "reservation_ref": usage.reservation_ref,
            "code": usage.code,
            "customer_id": usage.customer_id,
            "status": usage.status.value,
            "discount_minor": usage.discount.amount_minor,
            "currency_code": usage.discount.currency_code,
            "free_shipping": usage.free_shipping,
        }
        stmt = insert(u).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[u.c.promotion_id, u.c.reservation_ref],
            set_={
                "customer_id": stmt.excluded.customer_id,
                "status": stmt.excluded.status,
                "discount_minor": stmt.excluded.discount_minor,
                "currency_code": stmt.excluded.currency_code,
                "free_shipping": stmt.excluded.free_shipping,
                "reserved_at": sa.func.now(),
                "confirmed_at": None,
                "released_at": None,
                "updated_at": sa.func.now(),
            },
            where=u.c.status == UsageStatus.RELEASED.value,
        )
        await self._conn.execute(stmt)

    async def move_usages(self, reservation_ref: str, src: UsageStatus, dst: UsageStatus) -> list[Usage]:
        u = promotion_usages
        stamps: dict[str, Any] = {"updated_at": sa.func.now()}
        if dst is UsageStatus.CONFIRMED:
            stamps["confirmed_at"] = sa.func.now()
        elif dst is UsageStatus.RELEASED:
            stamps["released_at"] = sa.func.now()
        stmt = (
            u.update()
            .where(u.c.reservation_ref == reservation_ref, u.c.status == src.value)
            .values(status=dst.value, **stamps)
            .returning(*u.c)
        )
        return [_usage(r) for r in (await self._conn.execute(stmt)).all()]

    async def shift_counts(self, promotion_id: str, *, reserved: int, used: int) -> None:
        p = promotions
        await self._conn.execute(
            p.update()
            .where(p.c.promotion_id == uuid.UUID(promotion_id))
            .values(
                reserved_count=p.c.reserved_count + reserved,
                used_count=p.c.used_count + used,
                updated_at=sa.func.now(),
            )
        )

    async def add_event(self, event: UsageEvent) -> None:
        await add_event(
            self._conn,
            outbox,
            service="promotion",
            event_type=event.event_type,
            aggregate_id=event.reservation_ref,
            data=event.data(),
        )
        self.events_added = True


class SqlPromotionRepo:
    def __init__(self, engine: AsyncEngine, *, on_events: Callable[[], None] | None = None) -> None:
        """``on_events`` runs after a commit that wrote outbox events (wakes the publisher early)."""
        self._engine = engine
        self._on_events = on_events

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlPromotionUnitOfWork]:
        async with self._engine.begin() as conn:
            uow = SqlPromotionUnitOfWork(conn)
            yield uow
        if uow.events_added and self._on_events is not None:
            self._on_events()

    async def find_by_codes(self, codes: Sequence[str]) -> dict[str, Promotion]:
        stmt = sa.select(promotions).where(promotions.c.code.in_(list(codes)))
        async with self._engine.connect() as conn:
            return {row.code: _promotion(row) for row in (await conn.execute(stmt)).all()}

    async def customer_uses(self, promotion_ids: Sequence[str], customer_id: str) -> dict[str, int]:
        async with self._engine.connect() as conn:
            return await _customer_uses(conn, promotion_ids, customer_id)

    async def create(self, promotion: Promotion) -> Promotion | None:
        stmt = (
            insert(promotions)
            .values(
                promotion_id=uuid.UUID(promotion.promotion_id),
                code=promotion.code,
                name=promotion.name,
                type=promotion.type.value,
                percent_off=promotion.percent_off,
                amount_off_minor=promotion.amount_off_minor,
                currency_code=promotion.currency_code,
                usage_limit=promotion.usage_limit,
                usage_limit_per_customer=promotion.usage_limit_per_customer,
                min_subtotal_minor=promotion.min_subtotal_minor,
                starts_at=promotion.starts_at,
                ends_at=promotion.ends_at,
                combinable=promotion.combinable,
                active=promotion.active,
                conditions=_conditions_json(promotion.conditions),
            )
            .on_conflict_do_nothing(index_elements=[promotions.c.code])
            .returning(*promotions.c)
        )
        async with self._engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
        return _promotion(row) if row is not None else None
