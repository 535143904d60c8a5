"""Reconciliation of stock.reserved with the active reservations: report, repair, never touch on_hand,
never race with live reservations; and the ``kassa stock check`` command that runs it."""

from __future__ import annotations

import asyncio
import random

import pytest
import sqlalchemy as sa
from helpers import bearer, unique

from devstack.cli import main as kassa
from kassa.warehouse.v1 import inventory_service_pb2 as pb
from warehouse.biz.reconcile_stock import RECONCILE_AGGREGATE, ReconcileStock
from warehouse.data.repositories import SqlUnitOfWork
from warehouse.data.tables import outbox, stock
from warehouse.model.reconciliation import Problem, ReconcileStatus, StockAudit

pytestmark = pytest.mark.integration


async def corrupt(engine, sku: str, warehouse_id: str, **values: int) -> None:
    """Write a stock row behind the service's back (what a bad manual fix or a bug would do)."""
    async with engine.begin() as conn:
        await conn.execute(
            stock.update().where(stock.c.sku == sku, stock.c.warehouse_id == warehouse_id).values(**values)
        )


async def reconciled_events(engine, sku: str) -> list[dict]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(outbox.c.subject, outbox.c.payload).where(
                outbox.c.aggregate_id == RECONCILE_AGGREGATE, outbox.c.event_type == "StockReconciled"
            )
        )
        return [
            {"subject": r.subject, **repair}
            for r in rows
            for repair in r.payload["data"]["repairs"]
            if repair["sku"] == sku
        ]


async def test_check_reports_drift_both_ways_and_writes_nothing(inventory, seed, service_token, engine) -> None:
    wh = await seed.warehouse()
    leak, short, fine = unique("leak"), unique("short"), unique("fine")
    await seed.stock([(leak, wh, 10), (short, wh, 10), (fine, wh, 10)])
    await inventory.reserve(service_token, unique("ref"), [(leak, 3), (short, 4), (fine, 1)])
    await corrupt(engine, leak, wh, reserved=5)
    await corrupt(engine, short, wh, reserved=1)

    report = await ReconcileStock(SqlUnitOfWork(engine))(skus=[leak, short, fine])

    assert report.checked == 3
    assert report.findings == (StockAudit(leak, wh, 10, 5, 3), StockAudit(short, wh, 10, 1, 4))
    assert [f.drift for f in report.findings] == [2, -3]
    assert report.status is ReconcileStatus.DRIFT
    assert report.repaired == ()
    assert await inventory.levels(service_token, leak, short) == {(leak, wh): (10, 5), (short, wh): (10, 1)}


async def test_repair_sets_reserved_from_the_reservations_once(inventory, seed, service_token, engine) -> None:
    w1, w2 = await seed.warehouse(), await seed.warehouse()
    sku = unique("sku")
    await seed.stock([(sku, w1, 6), (sku, w2, 4)])
    await inventory.reserve(service_token, unique("ref"), [(sku, 8)])  # 6 from w1, 2 from w2
    sold = unique("sold")
    await inventory.reserve(service_token, sold, [(sku, 1)])
    await inventory.ConfirmReservations(
        pb.ConfirmReservationsRequest(reservation_ref=sold), metadata=bearer(service_token)
    )
    before = await inventory.levels(service_token, sku)  # the confirmed unit is off on_hand, not reserved
    await corrupt(engine, sku, w1, reserved=0)
    await corrupt(engine, sku, w2, reserved=before[(sku, w2)][1] + 1)
    reconcile_stock = ReconcileStock(SqlUnitOfWork(engine))

    repaired = await reconcile_stock(repair=True, skus=[sku])
    again = await reconcile_stock(repair=True, skus=[sku])

    assert repaired.status is ReconcileStatus.REPAIRED
    assert {(a.warehouse_id, a.reserved, a.active_reserved) for a in repaired.repaired} == {
        (w1, 0, before[(sku, w1)][1]),
        (w2, before[(sku, w2)][1] + 1, before[(sku, w2)][1]),
    }
    assert await inventory.levels(service_token, sku) == before  # on_hand untouched, reserved restored
    assert (again.status, again.findings) == (ReconcileStatus.CLEAN, ())
    events = await reconciled_events(engine, sku)
    assert sorted((e["warehouse_id"], e["reserved_before"], e["reserved_after"]) for e in events) == sorted(
        (a.warehouse_id, a.reserved, a.active_reserved) for a in repaired.repaired
    )
    assert {e["subject"] for e in events} == {"kassa.warehouse.StockReconciled"}


async def test_an_oversell_is_reported_and_on_hand_left_alone(inventory, seed, service_token, engine) -> None:
    wh = await seed.warehouse()
    oversold, leak = unique("oversold"), unique("leak")
    await seed.stock([(oversold, wh, 5), (leak, wh, 5)])
    await inventory.reserve(service_token, unique("ref"), [(oversold, 4), (leak, 1)])
    await corrupt(engine, oversold, wh, on_hand=2, reserved=0)  # 4 units held, 2 on the shelf
    await corrupt(engine, leak, wh, reserved=3)
    try:
        report = await ReconcileStock(SqlUnitOfWork(engine))(repair=True, skus=[oversold, leak])

        assert report.status is ReconcileStatus.OVERSOLD
        assert report.unrepairable == (StockAudit(oversold, wh, 2, 0, 4),)
        assert Problem.OVERSOLD in report.unrepairable[0].problems
        assert report.repaired == (StockAudit(leak, wh, 5, 3, 1),)
        assert await inventory.levels(service_token, oversold, leak) == {(oversold, wh): (2, 0), (leak, wh): (5, 1)}
    finally:
        await corrupt(engine, oversold, wh, on_hand=5, reserved=4)


async def test_repair_never_races_with_live_reservations(inventory, seed, service_token, engine) -> None:
    w1, w2 = await seed.warehouse(), await seed.warehouse()
    skus = [unique("race") for _ in range(3)]
    await seed.stock([(s, w, 30) for s in skus for w in (w1, w2)])
    for s in skus:
        await inventory.reserve(service_token, unique("ref"), [(s, 2)])
    held = await inventory.levels(service_token, *skus)
    for (s, w), (_, reserved) in held.items():
        await corrupt(engine, s, w, reserved=reserved + 3)  # leaked units: always repairable
    reconcile_stock = ReconcileStock(SqlUnitOfWork(engine))
    rnd = random.Random(7)
    md = bearer(service_token)

    async def shopper(i: int) -> None:
        ref = f"{unique('live')}-{i}"
        await inventory.reserve(service_token, ref, [(s, rnd.randint(1, 3)) for s in rnd.sample(skus, 2)])
        if i % 2:
            await inventory.ConfirmReservations(pb.ConfirmReservationsRequest(reservation_ref=ref), metadata=md)
        else:
            await inventory.ReleaseReservations(pb.ReleaseReservationsRequest(reservation_ref=ref), metadata=md)

    async def repairs() -> list[ReconcileStatus]:
        return [(await reconcile_stock(repair=True, skus=skus)).status for _ in range(5)]

    *_, statuses = await asyncio.gather(*(shopper(i) for i in range(24)), repairs())

    final = await reconcile_stock(skus=skus)
    assert ReconcileStatus.REPAIRED in statuses
    assert ReconcileStatus.OVERSOLD not in statuses
    assert (final.status, final.findings, final.checked) == (ReconcileStatus.CLEAN, (), 6)


async def test_kassa_stock_check_runs_the_warehouse_reconciliation(
    inventory, seed, service_token, engine, capfd
) -> None:
    wh = await seed.warehouse()
    drifted, oversold = unique("drifted"), unique("oversold")
    await seed.stock([(drifted, wh, 9), (oversold, wh, 3)])
    await inventory.reserve(service_token, unique("ref"), [(drifted, 2), (oversold, 3)])
    await corrupt(engine, drifted, wh, reserved=7)
    url = ["--database-url", engine.url.render_as_string(hide_password=False)]

    async def check(*argv: str) -> tuple[int, str]:
        code = await asyncio.to_thread(kassa, ["stock", "check", *argv])
        return code, capfd.readouterr().out

    try:
        found = await check("--sku", drifted, *url)
        everything = await check(*url)
        fixed = await check("--repair", "--sku", drifted, *url)
        clean = await check("--sku", drifted, *url)
        await corrupt(engine, oversold, wh, on_hand=1, reserved=1)
        refused = await check("--repair", "--sku", oversold, *url)
    finally:
        await corrupt(engine, oversold, wh, on_hand=3, reserved=3)

    assert found[0] == 1
    assert drifted in found[1] and "reserved_drift" in found[1] and "+5" in found[1]
    assert "checked 1 stock row(s): 1 row(s) drifted, not repaired" in found[1]
    assert everything[0] != 0 and drifted in everything[1]
    assert fixed[0] == 0 and "repaired: reserved 7 -> 2" in fixed[1]
    assert clean == (0, "checked 1 stock row(s): no drift\n")
    assert refused[0] == 2 and "oversold" in refused[1] and "needs an operator" in refused[1]
    assert await inventory.levels(service_token, drifted) == {(drifted, wh): (9, 2)}
