"""``kassa check`` reads each service's tables where that service keeps them: its own database when
KASSA_<SERVICE>_DATABASE_URL (or ``--service-database-url``) names one, as the services themselves do
(infra.config), and the shared ``--database-url`` otherwise. Two scratch databases on the real test Postgres."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import scratch_database, unique

from devstack.check import main
from devstack.localstack import StackEndpoints
from infra.config import Settings
from infra.db import create_engine
from infra.migrate import migrate
from kernel.money import Money
from order.data.repositories import SqlUnitOfWork
from order.model.order import Address, NewOrder, OrderLine, Totals

pytestmark = pytest.mark.integration

CHECKED = ("checkout", "order", "payment", "warehouse", "promotion")


def _order() -> NewOrder:
    price = Money("USD", 1200)
    zero = Money.zero("USD")
    return NewOrder(
        checkout_session_id=unique("sess"),
        customer_id=unique("cust"),
        email="",
        lines=(OrderLine("fig", "Fig", 1, price, price, "w1", ""),),
        discounts=(),
        totals=Totals(price, zero, zero, zero, price),
        shipping_address=Address(name="Ada", line1="1 Main St", city="Springfield", country_code="US"),
        billing_address=None,
        shipping_method="standard",
        payment_id=unique("pay"),
        payment_method="tok_visa",
        notes="",
        authorized_amount=price,
    )


def _orders_counted(tmp_path: Path, *argv: str) -> int:
    out = tmp_path / f"{unique('findings')}.json"
    assert main([*argv, "--sandbox-url", "none", "--nats-url", "none", "--json", str(out)], out=lambda _: None) in (
        0,
        1,
    )
    [found] = [f for f in json.loads(out.read_text()) if f["name"] == "one_order_per_session"]
    return int(found["count"])


async def test_each_service_is_read_from_its_own_database(
    stack: StackEndpoints, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KASSA_DATABASE_URL", raising=False)
    for svc in CHECKED:
        monkeypatch.delenv(f"KASSA_{svc.upper()}_DATABASE_URL", raising=False)
    with scratch_database(stack.database_url) as shared, scratch_database(stack.database_url) as own:
        migrate(shared, list(CHECKED))
        migrate(own, ["order"])
        engine = create_engine(own, pool_size=1)
        try:
            async with SqlUnitOfWork(engine, settings.pii_cipher()).transaction() as tx:
                await tx.orders.create(_order(), "placed")
        finally:
            await engine.dispose()

        # The order lives only in the order service's own database.
        assert _orders_counted(tmp_path, "--database-url", shared) == 0
        assert _orders_counted(tmp_path, "--database-url", shared, "--service-database-url", f"order={own}") == 1
        monkeypatch.setenv("KASSA_ORDER_DATABASE_URL", own)
        assert _orders_counted(tmp_path, "--database-url", shared) == 1
        # Every service with a database of its own: no shared URL needed.
        for svc in CHECKED:
            if svc != "order":
                monkeypatch.setenv(f"KASSA_{svc.upper()}_DATABASE_URL", shared)
        assert _orders_counted(tmp_path) == 1


def test_a_service_left_without_a_database_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KASSA_DATABASE_URL", raising=False)
    for svc in CHECKED:
        monkeypatch.delenv(f"KASSA_{svc.upper()}_DATABASE_URL", raising=False)
    monkeypatch.setenv("KASSA_ORDER_DATABASE_URL", "postgresql://127.0.0.1:1/x")
    assert main(["--sandbox-url", "none", "--nats-url", "none"]) == 2
    assert main(["--service-database-url", "nonsense", "--database-url", "postgresql://127.0.0.1:1/x"]) == 2
