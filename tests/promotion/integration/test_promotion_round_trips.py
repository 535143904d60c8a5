"""How many statements and transactions promotion's hot calls cost, and that the batched reserve is exact."""

from __future__ import annotations

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
from promotion.biz.settle import ReleasePromotionUsage
from promotion.biz.validate import ValidatePromotions
from promotion.data.repositories import SqlUnitOfWork
from promotion.data.tables import promotion_usages, promotions
from promotion.model.promotion import Cart, CartLine, Promotion, PromotionType

pytestmark = pytest.mark.integration

CART = Cart("USD", (CartLine("KB-001", "keyboards", "Acme", 2, Money("USD", 5000)),), Money("USD", 499))


def _now() -> datetime:
    return datetime.now(UTC)


@pytest_asyncio.fixture(loop_scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(str(settings.database_url), pool_size=2)
    yield engine
    await engine.dispose()


async def _create(uow: SqlUnitOfWork, **fields: Any) -> Promotion:
    values: dict[str, Any] = {"percent_off": 10, "combinable": True}
    values.update(fields)
    stored = await CreatePromotion(uow)(
        Promotion(str(uuid.uuid4()), unique("RT").upper(), "round trips", PromotionType.PERCENTAGE, **values)
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
    # Lock the reference, read its usages, lock the promotions, count the customer's uses, take all uses.
    assert trips.take() == Trips(statements=5, transactions=1, commits=1)
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
