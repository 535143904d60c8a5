"""How many statements and transactions promotion's hot calls cost, and that the batched reserve is exact."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from helpers import RoundTrips, Trips, unique
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.config import Settings
from infra.db import create_engine
from kernel.errors import FailedPrecondition
from kernel.money import Money
from promotion.biz.create import CreatePromotion
from promotion.biz.reserve import ReservePromotionUsage
from promotion.biz.settle import ConfirmPromotionUsage, ReleasePromotionUsage
from promotion.biz.validate import ValidatePromotions
from promotion.data.repositories import SqlUnitOfWork
from promotion.data.tables import outbox, promotion_usages, promotions
from promotion.model.promotion import Cart, CartLine, Promotion, PromotionType
from promotion.model.usage import UsageEvent, UsageStatus

pytestmark = pytest.mark.integration

CART = Cart("USD", (CartLine("KB-001", "keyboards", "Acme", 2, Money("USD", 5000)),), Money("USD", 499))


def _now() -> datetime:
    return datetime.now(UTC)


@pytest_asyncio.fixture(loop_scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(str(settings.database_url), pool_size=2)
    yield engine
    await engine.dispose()


async def _create(uow: SqlUnitOfWork, prefix: str = "RT", **fields: Any) -> Promotion:
    values: dict[str, Any] = {"percent_off": 10, "combinable": True}
    values.update(fields)
    stored = await CreatePromotion(uow)(
        Promotion(str(uuid.uuid4()), unique(prefix).upper(), "round trips", PromotionType.PERCENTAGE, **values)
    )
    assert stored is not None
    return stored


async def _counts(engine: AsyncEngine, code: str) -> tuple[int, int]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(promotions.c.used_count, promotions.c.reserved_count).where(promotions.c.code == code)
            )
        ).one()
    return row.used_count, row.reserved_count


async def test_validate_is_one_autocommit_statement(engine: AsyncEngine) -> None:
    uow = SqlUnitOfWork(engine)
    limited = await _create(uow, usage_limit_per_customer=1)
    other = await _create(uow)
    await ReservePromotionUsage(uow, _now)(
        reservation_ref=unique("ref"), codes=[limited.code], cart=CART, customer_id="cust-rt"
    )
    trips = RoundTrips(engine)

    result = await ValidatePromotions(uow, _now)(codes=[limited.code, other.code], cart=CART, customer_id="cust-rt")

    assert [a.code for a in result.applied] == [other.code]
    assert [(r.code, r.reason) for r in result.rejected] == [(limited.code, "PROMOTION_EXHAUSTED")]
    assert trips.take() == Trips(statements=1, autocommit=1)
    # Without a customer the per-customer limit is not checked.
    anonymous = await ValidatePromotions(uow, _now)(codes=[limited.code], cart=CART, customer_id="")
    assert [a.code for a in anonymous.applied] == [limited.code]


async def test_reserve_takes_every_code_in_one_statement(engine: AsyncEngine) -> None:
    uow = SqlUnitOfWork(engine)
    codes = sorted([(await _create(uow)).code for _ in range(3)])
    trips = RoundTrips(engine)

    reservation = await ReservePromotionUsage(uow, _now)(
        reservation_ref=unique("ref"), codes=codes, cart=CART, customer_id="cust-rt"
    )

    assert [u.code for u in reservation.usages] == codes
    # Lock the reference, read its usages, lock the promotions, take all uses counting the customer's (was 5).
    assert trips.take() == Trips(statements=4, transactions=1, commits=1)
    for code in codes:
        assert await _counts(engine, code) == (0, 1)


async def test_batched_reserve_refuses_the_exhausted_code_and_keeps_nothing(engine: AsyncEngine) -> None:
    uow = SqlUnitOfWork(engine)
    free, full = await _create(uow), await _create(uow, usage_limit=1)
    await ReservePromotionUsage(uow, _now)(
        reservation_ref=unique("ref"), codes=[full.code], cart=CART, customer_id="cust-a"
    )
    ref = unique("ref")

    with pytest.raises(FailedPrecondition) as exc_info:
        await ReservePromotionUsage(uow, _now)(
            reservation_ref=ref, codes=[free.code, full.code], cart=CART, customer_id="cust-b"
        )

    assert exc_info.value.metadata == {"code": full.code}
    assert await _counts(engine, free.code) == (0, 0)
    assert await _counts(engine, full.code) == (0, 1)
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(promotion_usages).where(promotion_usages.c.reservation_ref == ref))).all()
    assert rows == []


async def test_a_released_reference_reserves_again_through_the_batched_insert(engine: AsyncEngine) -> None:
    uow = SqlUnitOfWork(engine)
    promo = await _create(uow, usage_limit=1)
    ref = unique("ref")
    await ReservePromotionUsage(uow, _now)(reservation_ref=ref, codes=[promo.code], cart=CART, customer_id="c")
    assert await ReleasePromotionUsage(uow)(ref) == 1

    again = await ReservePromotionUsage(uow, _now)(reservation_ref=ref, codes=[promo.code], cart=CART, customer_id="c")

    assert [(u.code, u.status.value) for u in again.usages] == [(promo.code, "reserved")]
    async with engine.connect() as conn:
        status = (
            await conn.execute(sa.select(promotion_usages.c.status).where(promotion_usages.c.reservation_ref == ref))
        ).scalar_one()
    assert status == "reserved"
    assert await _counts(engine, promo.code) == (0, 1)


async def _events(engine: AsyncEngine, ref: str) -> list[tuple[str, dict[str, Any]]]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(outbox.c.event_type, outbox.c.payload, outbox.c.subject)
                .where(outbox.c.aggregate_id == ref)
                .order_by(outbox.c.created_at)
            )
        ).all()
    assert all(r.subject == f"kassa.promotion.{r.event_type}" for r in rows)
    return [(r.event_type, r.payload) for r in rows]


async def _statuses(engine: AsyncEngine, ref: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(promotion_usages.c.status)
            .where(promotion_usages.c.reservation_ref == ref)
            .order_by(promotion_usages.c.code)
        )
        return [r.status for r in rows]


async def test_confirm_is_the_lock_and_one_statement_with_counters_and_event(engine: AsyncEngine) -> None:
    uow = SqlUnitOfWork(engine)
    codes = sorted([(await _create(uow, usage_limit=5)).code for _ in range(2)])
    ref = unique("ref")
    reservation = await ReservePromotionUsage(uow, _now)(reservation_ref=ref, codes=codes, cart=CART, customer_id="c1")
    trips = RoundTrips(engine)

    assert await ConfirmPromotionUsage(uow)(ref) == 2
    # Lock the reference; then its uses, the move, both counters and the event in one statement (was 5 + 2 events).
    assert trips.take() == Trips(statements=2, transactions=1, commits=1)
    for code in codes:
        assert await _counts(engine, code) == (1, 0)
    assert await _statuses(engine, ref) == ["confirmed", "confirmed"]
    events = await _events(engine, ref)
    assert [t for t, _ in events] == ["PromotionUsageConfirmed"]
    payload = events[0][1]
    confirmed = tuple(dataclasses.replace(u, status=UsageStatus.CONFIRMED) for u in reservation.usages)
    assert payload["data"] == UsageEvent("PromotionUsageConfirmed", ref, "c1", confirmed).data()
    assert payload["aggregate_id"] == ref and payload["event_type"] == "PromotionUsageConfirmed"

    # A repeat moves nothing, shifts nothing and writes no second event; it answers the same.
    trips.take()
    assert await ConfirmPromotionUsage(uow)(ref) == 2
    assert trips.take() == Trips(statements=2, transactions=1, commits=1)
    for code in codes:
        assert await _counts(engine, code) == (1, 0)
    assert len(await _events(engine, ref)) == 1
    # Confirmed uses are kept by a release.
    assert await ReleasePromotionUsage(uow)(ref) == 0
    assert len(await _events(engine, ref)) == 1


async def test_release_then_confirm_is_refused_and_counts_once(engine: AsyncEngine) -> None:
    uow = SqlUnitOfWork(engine)
    promo = await _create(uow, usage_limit=3)
    ref = unique("ref")
    await ReservePromotionUsage(uow, _now)(reservation_ref=ref, codes=[promo.code], cart=CART, customer_id="c2")
    trips = RoundTrips(engine)
    assert await ReleasePromotionUsage(uow)(ref) == 1
    assert trips.take() == Trips(statements=2, transactions=1, commits=1)
    assert await ReleasePromotionUsage(uow)(ref) == 1  # a repeat
    assert await _counts(engine, promo.code) == (0, 0)
    with pytest.raises(FailedPrecondition) as refused:
        await ConfirmPromotionUsage(uow)(ref)
    assert refused.value.reason == "PROMOTION_INVALID"
    assert await _counts(engine, promo.code) == (0, 0)
    assert [t for t, _ in await _events(engine, ref)] == ["PromotionUsageReleased"]


async def test_per_customer_limit_counted_by_the_take_refuses_and_keeps_nothing(engine: AsyncEngine) -> None:
    """The optimistic evaluation passes (it assumes no uses); the uses the take counts refuse, and the transaction
    rolls the take back: one use per customer, exactly as before."""
    uow = SqlUnitOfWork(engine)
    once = await _create(uow, usage_limit_per_customer=1)
    free = await _create(uow)
    customer = unique("cust")
    await ReservePromotionUsage(uow, _now)(
        reservation_ref=unique("ref"), codes=[once.code], cart=CART, customer_id=customer
    )
    ref = unique("ref")
    trips = RoundTrips(engine)

    with pytest.raises(FailedPrecondition) as refused:
        await ReservePromotionUsage(uow, _now)(
            reservation_ref=ref, codes=[free.code, once.code], cart=CART, customer_id=customer
        )

    assert refused.value.reason == "PROMOTION_EXHAUSTED" and refused.value.metadata == {"code": once.code}
    # Lock, usages, lock promotions, take counting; rolled back.
    assert trips.take() == Trips(statements=4, transactions=1, commits=0)
    assert await _counts(engine, once.code) == (0, 1)
    assert await _counts(engine, free.code) == (0, 0)
    assert await _statuses(engine, ref) == []
    # The same mailbox under another customer id (a guest) is refused too.
    await ReservePromotionUsage(uow, _now)(
        reservation_ref=unique("ref"), codes=[free.code], cart=CART, customer_id=unique("g"), customer_email="a@x.io"
    )
    mailbox_once = await _create(uow, usage_limit_per_customer=1)
    await ReservePromotionUsage(uow, _now)(
        reservation_ref=unique("ref"),
        codes=[mailbox_once.code],
        cart=CART,
        customer_id=unique("g"),
        customer_email="b@x.io",
    )
    with pytest.raises(FailedPrecondition):
        await ReservePromotionUsage(uow, _now)(
            reservation_ref=unique("ref"),
            codes=[mailbox_once.code],
            cart=CART,
            customer_id=unique("g"),
            customer_email="b@x.io",
        )
    assert await _counts(engine, mailbox_once.code) == (0, 1)


async def test_a_refusal_of_the_first_evaluation_is_the_one_the_customers_uses_give(engine: AsyncEngine) -> None:
    """When the evaluation without uses refuses already, the uses are counted and the refusal is theirs: here the
    per-customer limit of the first code, not the combination refusal of the second the first evaluation saw."""
    uow = SqlUnitOfWork(engine)
    first = await _create(uow, "A", usage_limit_per_customer=1, combinable=False)
    second = await _create(uow, "B")
    codes = [first.code, second.code]
    customer = unique("cust")
    await ReservePromotionUsage(uow, _now)(
        reservation_ref=unique("ref"), codes=[first.code], cart=CART, customer_id=customer
    )
    with pytest.raises(FailedPrecondition) as refused:
        await ReservePromotionUsage(uow, _now)(
            reservation_ref=unique("ref"), codes=codes, cart=CART, customer_id=customer
        )
    assert refused.value.reason == "PROMOTION_EXHAUSTED" and refused.value.metadata == {"code": first.code}
    assert await _counts(engine, second.code) == (0, 0)
