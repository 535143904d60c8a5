"""A flash sale: 1,000 checkouts from four client processes for 50 units of one hot sku.

DESIGN.md §4.1 under real contention: separate processes, separate channels, one stock row fought over.
Exactly the stock is sold, every loser is told OUT_OF_STOCK, and nothing else happens (no deadlock,
no timeout, no UNAVAILABLE or INTERNAL).
"""

from __future__ import annotations

from collections import Counter

import pytest
import sqlalchemy as sa
from helpers import unique

from tests.warehouse.procs import FlashBuyer, flash_buyer, run_clients
from warehouse.data.tables import reservations

pytestmark = pytest.mark.integration

PROCESSES = 4
ATTEMPTS_PER_PROCESS = 250
CONCURRENCY_PER_PROCESS = 8


async def test_flash_sale_sells_exactly_the_stock_and_refuses_the_rest(
    inventory, seed, warehouse_addr, service_token, engine
) -> None:
    w1, w2, w3 = await seed.warehouse("US"), await seed.warehouse("DE"), await seed.warehouse("SG")
    sku = unique("hot")
    await seed.stock([(sku, w1, 20), (sku, w2, 20), (sku, w3, 10)])
    run = unique("flash")

    results = await run_clients(
        flash_buyer,
        [
            FlashBuyer(warehouse_addr, service_token, sku, f"{run}-p{p}", ATTEMPTS_PER_PROCESS, CONCURRENCY_PER_PROCESS)
            for p in range(PROCESSES)
        ],
        within_seconds=50,
    )

    outcomes: Counter[str] = Counter()
    for r in results:
        outcomes.update(r["outcomes"])
    sold_refs = {ref for r in results for ref in r["sold"]}
    assert outcomes == {"sold": 50, "reserve FAILED_PRECONDITION:OUT_OF_STOCK": 950}
    assert len(sold_refs) == 50
    levels = await inventory.levels(service_token, sku)
    assert levels == {(sku, w1): (0, 0), (sku, w2): (0, 0), (sku, w3): (0, 0)}
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(reservations.c.reservation_ref, reservations.c.status, reservations.c.quantity).where(
                    reservations.c.sku == sku
                )
            )
        ).all()
    assert {r.reservation_ref for r in rows} == sold_refs
    assert Counter(r.status for r in rows) == {"confirmed": 50}
    assert sum(r.quantity for r in rows) == 50
