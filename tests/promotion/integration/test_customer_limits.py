"""Per-customer limits count a mailbox too: a guest gets a new subject each time, not a new mailbox.

Against real Postgres through the use cases (the RPCs pass the email once the proto carries it).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from helpers import unique
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
from promotion.model.promotion import Cart, CartLine, Promotion, PromotionType

pytestmark = pytest.mark.integration

CART = Cart("USD", (CartLine("KB-001", "keyboards", "Acme", 2, Money("USD", 5000)),), Money("USD", 499))


def _now() -> datetime:
    return datetime.now(UTC)


@pytest_asyncio.fixture(loop_scope="session")
async def uow(settings: Settings) -> AsyncIterator[SqlUnitOfWork]:
    engine: AsyncEngine = create_engine(str(settings.database_url), pool_size=2)
    yield SqlUnitOfWork(engine)
    await engine.dispose()


async def _once_per_customer(uow: SqlUnitOfWork, **fields: Any) -> Promotion:
    values: dict[str, Any] = {"percent_off": 10, "combinable": True, "usage_limit_per_customer": 1}
    values.update(fields)
    stored = await CreatePromotion(uow)(
        Promotion(str(uuid.uuid4()), unique("ONCE").upper(), "once per customer", PromotionType.PERCENTAGE, **values)
    )
    assert stored is not None
    return stored


async def _reserve(uow: SqlUnitOfWork, code: str, customer_id: str, email: str = "", ref: str = "") -> None:
    await ReservePromotionUsage(uow, _now)(
        reservation_ref=ref or unique("ref"),
        codes=[code],
        cart=CART,
        customer_id=customer_id,
        customer_email=email,
    )


async def test_a_fresh_guest_with_the_same_mailbox_is_the_same_customer(uow: SqlUnitOfWork) -> None:
    promo = await _once_per_customer(uow)
    mailbox = f"{unique('ann')}@example.com"
    await _reserve(uow, promo.code, unique("guest"), mailbox)

    for spelling in (mailbox, mailbox.upper(), mailbox.replace("@", "+again@")):
        with pytest.raises(FailedPrecondition) as err:
            await _reserve(uow, promo.code, unique("guest"), spelling)
        assert err.value.reason == "PROMOTION_EXHAUSTED"


async def test_the_preview_counts_the_mailbox_too(uow: SqlUnitOfWork) -> None:
    promo = await _once_per_customer(uow)
    mailbox = f"{unique('ann')}@example.com"
    await _reserve(uow, promo.code, unique("guest"), mailbox)

    preview = await ValidatePromotions(uow, _now)(
        codes=[promo.code], cart=CART, customer_id=unique("guest"), customer_email=mailbox
    )
    fresh = await ValidatePromotions(uow, _now)(
        codes=[promo.code], cart=CART, customer_id=unique("guest"), customer_email="bob@example.com"
    )
    assert [r.reason for r in preview.rejected] == ["PROMOTION_EXHAUSTED"]
    assert [a.code for a in fresh.applied] == [promo.code]


async def test_a_customer_is_still_counted_by_subject_whatever_mailbox_it_gives(uow: SqlUnitOfWork) -> None:
    promo = await _once_per_customer(uow)
    customer = unique("cust")
    await _reserve(uow, promo.code, customer, f"{unique('a')}@example.com")
    with pytest.raises(FailedPrecondition):
        await _reserve(uow, promo.code, customer, f"{unique('b')}@example.com")
    with pytest.raises(FailedPrecondition):
        await _reserve(uow, promo.code, customer)


async def test_other_mailboxes_and_no_mailbox_are_other_customers(uow: SqlUnitOfWork) -> None:
    promo = await _once_per_customer(uow)
    await _reserve(uow, promo.code, unique("guest"), f"{unique('ann')}@example.com")
    await _reserve(uow, promo.code, unique("guest"), f"{unique('bob')}@example.com")
    # Two callers that gave no mailbox are told apart by subject alone (no empty mailbox is shared).
    await _reserve(uow, promo.code, unique("guest"))
    await _reserve(uow, promo.code, unique("guest"))


async def test_a_released_use_no_longer_counts_for_the_mailbox(uow: SqlUnitOfWork) -> None:
    promo = await _once_per_customer(uow)
    mailbox = f"{unique('ann')}@example.com"
    ref = unique("ref")
    await _reserve(uow, promo.code, unique("guest"), mailbox, ref)
    await ReleasePromotionUsage(uow)(ref)
    await _reserve(uow, promo.code, unique("guest"), mailbox)


async def test_a_limit_of_two_counts_subject_and_mailbox_uses_together(uow: SqlUnitOfWork) -> None:
    promo = await _once_per_customer(uow, usage_limit_per_customer=2)
    customer, mailbox = unique("cust"), f"{unique('ann')}@example.com"
    await _reserve(uow, promo.code, customer)  # by subject only
    await _reserve(uow, promo.code, unique("guest"), mailbox)  # by mailbox only
    # One use of each kind: this caller is both, so it has used the promotion twice.
    with pytest.raises(FailedPrecondition):
        await _reserve(uow, promo.code, customer, mailbox)


async def test_concurrent_guests_with_one_mailbox_get_one_use(uow: SqlUnitOfWork) -> None:
    promo = await _once_per_customer(uow)
    mailbox = f"{unique('ann')}@example.com"

    async def attempt() -> bool:
        try:
            await _reserve(uow, promo.code, unique("guest"), mailbox)
        except FailedPrecondition:
            return False
        return True

    outcomes = await asyncio.gather(*(attempt() for _ in range(6)))
    assert sorted(outcomes) == [False] * 5 + [True]
