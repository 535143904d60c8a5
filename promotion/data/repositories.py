"""Postgres implementations of promotion's storage ports: the repositories of one transaction, SqlTx and
SqlUnitOfWork, the only place a transaction begins."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, UUID, aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from infra import audit
from infra.db import UnitOfWork
from infra.outbox import OutboxTx, claim_inbox
from infra.outbox_cte import OutboxCte
from kernel.money import Money
from promotion.data.tables import SCHEMA, audit_log, inbox, outbox, promotion_usages, promotions
from promotion.model.promotion import Conditions, Promotion, PromotionType
from promotion.model.usage import Usage, UsageStatus

__all__ = ["SqlInbox", "SqlPromotionRepo", "SqlTx", "SqlUnitOfWork", "SqlUsageRepo"]

_ACTIVE = (UsageStatus.RESERVED.value, UsageStatus.CONFIRMED.value)
SERVICE = "promotion"


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
        customer_email_key=row.customer_email_key,
    )


# Statements are built once (building one per call costs more CPU than running it), and lists are
# bound as one array (`= ANY(:x)`), so the SQL text is the same for any number of codes.
_u = promotion_usages
# Literal, not bound: the planner can then match the partial index promotion_usages_customer_idx.
_IS_ACTIVE = _u.c.status.in_([sa.literal_column(f"'{status}'") for status in _ACTIVE])

_LOCK_REFERENCE = sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
_USAGES = sa.select(_u).where(_u.c.reservation_ref == sa.bindparam("ref")).order_by(_u.c.code)
_LOCK_PROMOTIONS = (
    sa.select(promotions)
    .where(promotions.c.code == sa.any_(sa.bindparam("codes", type_=ARRAY(sa.Text))))
    .order_by(promotions.c.code)
    .with_for_update()
)
# The customer's uses: its id's or its mailbox's (a NULL email_key matches nothing), each row once.
_IS_CUSTOMERS = sa.or_(
    _u.c.customer_id == sa.bindparam("customer_id"),
    _u.c.customer_email_key == sa.bindparam("email_key", type_=sa.Text),
)
_CUSTOMER_USES = (
    sa.select(_u.c.promotion_id, sa.func.count())
    .where(
        _u.c.promotion_id == sa.any_(sa.bindparam("promotion_ids", type_=ARRAY(UUID(as_uuid=True)))),
        _IS_ACTIVE,
        _IS_CUSTOMERS,
    )
    .group_by(_u.c.promotion_id)
)
# A preview: promotions and the customer's uses of each in one statement, so one snapshot.
_FIND_WITH_CUSTOMER_USES = sa.select(
    promotions,
    sa.select(sa.func.count())
    .where(_u.c.promotion_id == promotions.c.promotion_id, _IS_ACTIVE, _IS_CUSTOMERS)
    .scalar_subquery()
    .label("customer_uses"),
).where(promotions.c.code == sa.any_(sa.bindparam("codes", type_=ARRAY(sa.Text))))
# Every use of a reservation in one round trip, and (from the statement's snapshot, before its own insert) the
# customer's uses of every promotion of ``:counted_ids``, as ``_CUSTOMER_USES`` counts them: taken rows have ``n``
# NULL, counts a promotion id and ``n``. The promotions are already row-locked by this transaction
# (lock_promotions), so the update takes no new locks. The insert runs even though the final SELECT does not
# read it (Postgres always completes data-modifying WITH parts); it records only the uses actually taken.
_TAKE_USES_COUNTING = sa.text(
    f"""
    WITH wanted AS (
        SELECT * FROM unnest(
            CAST(:promotion_ids AS uuid[]), CAST(:codes AS text[]), CAST(:discounts AS bigint[]),
            CAST(:currencies AS text[]), CAST(:free_shipping AS boolean[])
        ) AS w(promotion_id, code, discount_minor, currency_code, free_shipping)
    ),
    taken AS (
        UPDATE {SCHEMA}.promotions AS p
        SET reserved_count = p.reserved_count + 1, updated_at = now()
        FROM wanted
        WHERE p.promotion_id = wanted.promotion_id
          AND (p.usage_limit = 0 OR p.used_count + p.reserved_count < p.usage_limit)
        RETURNING p.promotion_id
    ),
    recorded AS (
        INSERT INTO {SCHEMA}.promotion_usages AS u
            (promotion_id, reservation_ref, code, customer_id, customer_email_key, status,
             discount_minor, currency_code, free_shipping)
        SELECT wanted.promotion_id, :ref, wanted.code, :customer_id, CAST(:email_key AS text), :status,
               wanted.discount_minor, wanted.currency_code, wanted.free_shipping
        FROM wanted JOIN taken USING (promotion_id)
        ON CONFLICT (promotion_id, reservation_ref) DO UPDATE SET
            customer_id = excluded.customer_id,
            customer_email_key = excluded.customer_email_key,
            status = excluded.status,
            discount_minor = excluded.discount_minor,
            currency_code = excluded.currency_code,
            free_shipping = excluded.free_shipping,
            reserved_at = now(),
            confirmed_at = NULL,
            released_at = NULL,
            updated_at = now()
        WHERE u.status = '{UsageStatus.RELEASED.value}'
    ),
    uses AS (
        SELECT u.promotion_id, count(*) AS n FROM {SCHEMA}.promotion_usages AS u
        WHERE u.promotion_id = ANY(CAST(:counted_ids AS uuid[]))
          AND u.status IN ('{UsageStatus.RESERVED.value}', '{UsageStatus.CONFIRMED.value}')
          AND (u.customer_id = :customer_id OR u.customer_email_key = CAST(:email_key AS text))
        GROUP BY u.promotion_id
    )
    SELECT promotion_id, CAST(NULL AS bigint) AS n FROM taken
    UNION ALL
    SELECT promotion_id, n FROM uses
    """
)


def _settle_stmt(dst: UsageStatus) -> tuple[sa.CompoundSelect, OutboxCte]:
    """Settle a reference's uses in one statement: its uses as they were (``before``), those in ``:src`` moved to
    ``dst`` (``moved``), their promotions row-locked in code order (as ``_LOCK_PROMOTIONS`` locks them, so this
    never deadlocks with a reserve) and their counters shifted (reserved -1, used ``:used``), and one event for
    the moved uses (none if nothing moved). Rows come back tagged ``part`` = 'before' or 'moved'."""
    u, p = promotion_usages, promotions
    ref = sa.bindparam("ref", type_=sa.Text)
    before = sa.select(u).where(u.c.reservation_ref == ref).cte("before")
    stamps: dict[str, Any] = {"status": dst.value, "updated_at": sa.func.now()}
    if dst is UsageStatus.CONFIRMED:
        stamps["confirmed_at"] = sa.func.now()
    elif dst is UsageStatus.RELEASED:
        stamps["released_at"] = sa.func.now()
    moved = (
        u.update()
        .where(u.c.reservation_ref == ref, u.c.status == sa.bindparam("src", type_=sa.Text))
        .values(stamps)
        .returning(*u.c)
        .cte("moved")
    )
    moved_ids = sa.select(moved.c.promotion_id)
    locked = (
        sa.select(p.c.promotion_id)
        .where(p.c.promotion_id.in_(moved_ids))
        .order_by(p.c.code)
        .with_for_update()
        .cte("locked")
    )
    per_promotion = (
        sa.select(moved.c.promotion_id, sa.func.count().label("n")).group_by(moved.c.promotion_id).subquery("m")
    )
    shifted = (
        p.update()
        .where(p.c.promotion_id == per_promotion.c.promotion_id, p.c.promotion_id.in_(sa.select(locked.c.promotion_id)))
        .values(
            reserved_count=p.c.reserved_count - per_promotion.c.n,
            used_count=p.c.used_count + per_promotion.c.n * sa.bindparam("used", type_=sa.BigInteger),
            updated_at=sa.func.now(),
        )
        .returning(p.c.promotion_id)
        .cte("shifted")
    )
    promotion = sa.func.jsonb_build_object(
        "promotion_id",
        sa.cast(moved.c.promotion_id, sa.Text),
        "code",
        moved.c.code,
        "discount",
        sa.func.jsonb_build_object("currency_code", moved.c.currency_code, "amount_minor", moved.c.discount_minor),
        "free_shipping",
        moved.c.free_shipping,
    )
    # UsageEvent.data() of the moved uses (in code order; its customer the first one's).
    data = sa.func.jsonb_build_object(
        "reservation_ref",
        ref,
        "customer_id",
        sa.func.min(moved.c.customer_id),
        "promotions",
        sa.func.jsonb_agg(aggregate_order_by(promotion, moved.c.code)),
    )
    one_event = sa.select(data.label("data")).select_from(moved).having(sa.func.count() > 0).subquery("moved_event")
    event = OutboxCte(outbox, source=one_event, data=one_event.c.data, prefix="ev", name="event")
    stmt = sa.union_all(
        sa.select(sa.literal("before").label("part"), *before.c),
        sa.select(sa.literal("moved").label("part"), *moved.c),
    ).add_cte(shifted, event.cte)
    return stmt, event


_SETTLE = {dst: _settle_stmt(dst) for dst in (UsageStatus.CONFIRMED, UsageStatus.RELEASED)}


def _uuids(ids: Sequence[str]) -> list[uuid.UUID]:
    return [uuid.UUID(i) for i in ids]


def _take_params(usages: Sequence[Usage]) -> dict[str, Any]:
    # One reservation (the biz layer's contract): one reference, customer and status for all.
    first = usages[0]
    return {
        "promotion_ids": _uuids([u.promotion_id for u in usages]),
        "codes": [u.code for u in usages],
        "discounts": [u.discount.amount_minor for u in usages],
        "currencies": [u.discount.currency_code for u in usages],
        "free_shipping": [u.free_shipping for u in usages],
        "ref": first.reservation_ref,
        "customer_id": first.customer_id,
        "email_key": first.customer_email_key,
        "status": first.status.value,
    }


class SqlPromotionRepo:
    """The promotions, on the connection of one transaction (or of autocommit reads)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def lock(self, codes: Sequence[str]) -> dict[str, Promotion]:
        rows = (await self._conn.execute(_LOCK_PROMOTIONS, {"codes": list(codes)})).all()
        return {row.code: _promotion(row) for row in rows}

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

    async def find_with_customer_uses(
        self, codes: Sequence[str], customer_id: str, email_key: str | None
    ) -> tuple[dict[str, Promotion], dict[str, int]]:
        # One statement, so a read (autocommit: no BEGIN/ROLLBACK round trips) needs no transaction around it.
        params = {"codes": list(codes), "customer_id": customer_id, "email_key": email_key}
        rows = (await self._conn.execute(_FIND_WITH_CUSTOMER_USES, params)).all()
        found = {row.code: _promotion(row) for row in rows}
        uses = {str(row.promotion_id): row.customer_uses for row in rows if row.customer_uses}
        return found, uses

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
        row = (await self._conn.execute(stmt)).first()
        if row is None:
            return None
        await audit.record(self._conn, audit_log, f"promotions/{promotion.code}")
        return _promotion(row)


class SqlUsageRepo:
    """The uses of promotions, by reservation reference, on the connection of one transaction."""

    def __init__(self, conn: AsyncConnection, outbox: OutboxTx | None = None) -> None:
        self._conn = conn
        self._outbox = outbox

    async def lock_reference(self, reservation_ref: str) -> None:
        await self._conn.execute(_LOCK_REFERENCE, {"key": f"kassa-promotion-reservation:{reservation_ref}"})

    async def of_reference(self, reservation_ref: str) -> list[Usage]:
        return [_usage(r) for r in (await self._conn.execute(_USAGES, {"ref": reservation_ref})).all()]

    async def customer_uses(
        self, promotion_ids: Sequence[str], customer_id: str, email_key: str | None
    ) -> dict[str, int]:
        if not promotion_ids:
            return {}
        params = {"customer_id": customer_id, "email_key": email_key, "promotion_ids": _uuids(promotion_ids)}
        rows = await self._conn.execute(_CUSTOMER_USES, params)
        return {str(pid): n for pid, n in rows.all()}

    async def take_counting(
        self, usages: Sequence[Usage], promotion_ids: Sequence[str], customer_id: str, email_key: str | None
    ) -> tuple[set[str], dict[str, int]]:
        if not usages:
            return set(), await self.customer_uses(promotion_ids, customer_id, email_key)
        params = _take_params(usages)
        if params["customer_id"] != customer_id or params["email_key"] != email_key:
            raise ValueError("the uses are counted for the customer the usages are recorded for")
        params["counted_ids"] = _uuids(promotion_ids)
        rows = (await self._conn.execute(_TAKE_USES_COUNTING, params)).all()
        taken = {str(r.promotion_id) for r in rows if r.n is None}
        uses = {str(r.promotion_id): int(r.n) for r in rows if r.n is not None}
        return taken, uses

    async def settle(
        self, reservation_ref: str, src: UsageStatus, dst: UsageStatus, *, used: int, event_type: str
    ) -> tuple[list[Usage], list[Usage]]:
        stmt, event = _SETTLE[dst]
        params: dict[str, Any] = {
            "ref": reservation_ref,
            "src": src.value,
            "used": used,
            **event.params(service=SERVICE, event_type=event_type, aggregate_id=reservation_ref),
        }
        rows = (await self._conn.execute(stmt, params)).all()
        before = sorted((_usage(r) for r in rows if r.part == "before"), key=lambda x: x.code)
        moved = [_usage(r) for r in rows if r.part == "moved"]
        if moved:
            if self._outbox is None:
                raise RuntimeError("a statement with an outbox row needs the repository of a Tx")
            self._outbox.count_written(1)
        return before, moved

    async def move(self, reservation_ref: str, src: UsageStatus, dst: UsageStatus) -> list[Usage]:
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


class SqlInbox:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def claim(self, consumer: str, event_id: str) -> bool:
        return await claim_inbox(self._conn, inbox, consumer, event_id)


class SqlTx(OutboxTx):
    """The repositories of one transaction (or of one autocommit read) and its outbox."""

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__(conn, outbox, service=SERVICE)
        self.promotions = SqlPromotionRepo(conn)
        self.usages = SqlUsageRepo(conn, self)
        self.inbox = SqlInbox(conn)


class SqlUnitOfWork(UnitOfWork[SqlTx]):
    """:class:`infra.db.UnitOfWork` of promotion's :class:`SqlTx`: commits when the block exits cleanly;
    ``on_commit`` wakes the outbox publisher after a commit with events."""

    def __init__(self, engine: AsyncEngine, *, on_commit: Callable[[], None] | None = None) -> None:
        super().__init__(engine, SqlTx, on_commit=on_commit)
