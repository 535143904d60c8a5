"""The warehouse's metrics over its real /metrics port: stock drift found by the in-service reconciliation
(an audit every KASSA_WAREHOUSE_RECONCILE_SECONDS, repairing nothing) shows in the gauges and goes away when the
row is right again; reservations the sweeper expires are counted."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from e2e.support import eventually
from helpers import unique
from metrics_support import Scrape, scrape

from infra.config import Settings
from infra.runner import running_service
from warehouse.bootstrap import bootstrap
from warehouse.data.tables import stock

pytestmark = pytest.mark.integration


async def _corrupt(engine: Any, sku: str, warehouse_id: str, reserved: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            stock.update().where(stock.c.sku == sku, stock.c.warehouse_id == warehouse_id).values(reserved=reserved)
        )


def _reaches(url: str, check: Callable[[Scrape], bool]) -> Callable[[], Awaitable[Scrape | None]]:
    async def probe() -> Scrape | None:
        now = await scrape([url])
        return now if check(now) else None

    return probe


async def test_drift_found_by_reconciliation_and_expired_reservations_move_the_gauges(
    settings: Settings, seed: Any, inventory: Any, service_token: str, engine: Any
) -> None:
    wh = await seed.warehouse()
    leak, expiring = unique("leak"), unique("expiring")
    await seed.stock([(leak, wh, 10), (expiring, wh, 10)])
    audited = dataclasses.replace(settings, warehouse_reconcile_seconds=1)
    async with running_service(bootstrap, audited, "127.0.0.1:0", metrics_addr="127.0.0.1:0") as server:
        url = f"http://127.0.0.1:{server.metrics_port}/metrics"
        drift = {"problem": "reserved_drift"}
        runs = (await scrape([url])).value("kassa_warehouse_reconcile_runs_total")
        first = await eventually(
            _reaches(url, lambda s: s.value("kassa_warehouse_reconcile_runs_total") > runs), what="an audit"
        )
        rows, units = (
            first.value("kassa_warehouse_stock_drift_rows", **drift),
            first.value("kassa_warehouse_stock_drift_units"),
        )

        await _corrupt(engine, leak, wh, reserved=2)  # nothing reserves it: 2 units held by nobody
        found = await eventually(
            _reaches(url, lambda s: s.value("kassa_warehouse_stock_drift_rows", **drift) == rows + 1),
            what="the drift found",
        )
        assert found.value("kassa_warehouse_stock_drift_units") == units + 2
        assert found.value("kassa_warehouse_reconcile_checked_rows") >= 2
        assert found.value("kassa_warehouse_reconcile_last_run_timestamp_seconds") > 0

        await _corrupt(engine, leak, wh, reserved=0)
        await eventually(
            _reaches(url, lambda s: s.value("kassa_warehouse_stock_drift_rows", **drift) == rows),
            what="the drift gone",
        )

        before = (await scrape([url])).value("kassa_warehouse_reservations_expired_total")
        await inventory.reserve(service_token, unique("ref"), [(expiring, 3)], ttl_seconds=1)
        await eventually(
            _reaches(url, lambda s: s.value("kassa_warehouse_reservations_expired_total") >= before + 1),
            what="the reservation expired by this server's sweeper",
        )
