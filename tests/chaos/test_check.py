"""``devstack.check`` (``kassa check``) on a real stack: clean after real checkouts, and failing by name once corrupted.

One private stack and mesh for the module (``bench.stack.own_stack``: its own Postgres, so corrupting it
touches no other test), a small catalog and a few real checkouts over gRPC and REST. Each corruption is
one a broken service could leave behind; each test undoes its own so the next starts clean.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import psycopg
import pytest

from bench.flow import FlowOutcome, GrpcCheckout, RestCheckout
from bench.seed import plan_catalog, seed_catalog
from bench.stack import Target, own_stack
from devstack.check import Finding, check_stack, main, sqlalchemy_to_libpq

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("chaos-check")]

HOT_STOCK = 10


class Stack:
    def __init__(self, target: Target, initial: dict[tuple[str, str], int], orders: list[FlowOutcome]) -> None:
        self.target = target
        self.initial = initial
        self.orders = orders

    @property
    def database_url(self) -> str:
        assert self.target.database_url
        return self.target.database_url

    @property
    def sandbox_url(self) -> str:
        return self.target.env["KASSA_SANDBOX_URL"]

    def check(self) -> dict[str, Finding]:
        findings = check_stack(
            self.database_url,
            sandbox_url=self.sandbox_url,
            nats_url=self.target.env["KASSA_NATS_URL"],
            initial_stock=self.initial,
        )
        return {f.name: f for f in findings}

    def sql(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(sqlalchemy_to_libpq(self.database_url), autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return list(cur.fetchall()) if cur.description else []


async def _checkouts(target: Target, skus: tuple[str, ...]) -> list[FlowOutcome]:
    done = []
    grpc_flow = GrpcCheckout(target.addr("checkout"), target.jwt_secret, subject_prefix="check", timeout=30)
    async with aiohttp.ClientSession(base_url=target.gateway_url, timeout=aiohttp.ClientTimeout(total=30)) as http:
        flows = [grpc_flow, RestCheckout(http, timeout=30)]
        try:
            for i in range(4):
                done.append(await flows[i % 2].run(skus[i % 3 : i % 3 + 2] + skus[-1:], FlowOutcome()))
        finally:
            await grpc_flow.kassa.close()
    return done


async def _settled(stack: Stack) -> dict[str, Finding]:
    """The checks once the mesh has caught up with the checkouts (outbox published, holds confirmed)."""
    for _ in range(60):
        found = await asyncio.to_thread(stack.check)
        if all(f.passed for f in found.values()):
            return found
        await asyncio.sleep(0.5)
    return found


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with own_stack(extra_env={"KASSA_RATE_LIMIT_PER_MINUTE": "0"}) as target:
        plan = plan_catalog(f"CHECK-{uuid.uuid4().hex[:6].upper()}", 4, 1, on_hand=50, hot_stock=HOT_STOCK)
        seeded = asyncio.run(seed_catalog(target.env, plan, jwt_secret=target.jwt_secret))
        initial = {(sku, wh): plan.on_hand for sku in plan.skus for wh in seeded.warehouses}
        initial[(plan.hot_skus[0], seeded.hot_warehouse)] = HOT_STOCK
        orders = asyncio.run(_checkouts(target, (*plan.skus, plan.hot_skus[0])))
        yield Stack(target, initial, orders)


async def test_a_clean_stack_after_real_checkouts_passes_every_check(stack: Stack) -> None:
    found = await _settled(stack)
    failed = {name: f.offenders for name, f in found.items() if not f.passed}
    assert not failed, failed
    assert found["one_order_per_session"].count >= 4
    assert found["no_capture_without_order"].count >= 4
    assert found["stock_conserved"].count == len(stack.initial) and not found["stock_conserved"].skipped
    assert found["outbox_sent"].count > 0 and "found in JetStream" in found["outbox_sent"].detail


async def test_an_unsent_outbox_row_fails_outbox_sent_naming_the_event(stack: Stack) -> None:
    await _settled(stack)
    # processing under a long lease: the publisher leaves it alone, as it would a row a dead replica holds.
    [(event_id,)] = stack.sql(
        "UPDATE orders.outbox SET status = 'processing', lease_until = now() + interval '1 hour'"
        " WHERE event_id = (SELECT event_id FROM orders.outbox ORDER BY created_at LIMIT 1) RETURNING event_id"
    )
    try:
        found = await asyncio.to_thread(stack.check)
        assert not found["outbox_sent"].passed
        assert any(str(event_id) in o for o in found["outbox_sent"].offenders), found["outbox_sent"].offenders
    finally:
        stack.sql("UPDATE orders.outbox SET status = 'sent', lease_until = NULL WHERE event_id = %s", (event_id,))


async def test_a_second_order_for_a_session_fails_one_order_per_session_naming_it(stack: Stack) -> None:
    await _settled(stack)
    session_id, order_id = stack.orders[0].session_id, stack.orders[0].order_id
    copy = str(uuid.uuid4())
    stack.sql("ALTER TABLE orders.orders DROP CONSTRAINT orders_checkout_session_id_key")
    try:
        columns = [
            name
            for (name,) in stack.sql(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = 'orders' AND table_name = 'orders' ORDER BY ordinal_position"
            )
        ]
        values = ["%s::uuid" if c == "order_id" else "'PAYMENT_FAILED'" if c == "status" else c for c in columns]
        stack.sql(
            f"INSERT INTO orders.orders ({', '.join(columns)}) SELECT {', '.join(values)}"
            " FROM orders.orders WHERE order_id = %s::uuid",
            (copy, order_id),
        )
        found = await asyncio.to_thread(stack.check)
        offenders = found["one_order_per_session"].offenders
        assert not found["one_order_per_session"].passed
        assert any(session_id in o and copy in o and order_id in o for o in offenders), offenders
    finally:
        stack.sql("DELETE FROM orders.orders WHERE order_id = %s::uuid", (copy,))
        stack.sql(
            "ALTER TABLE orders.orders ADD CONSTRAINT orders_checkout_session_id_key UNIQUE (checkout_session_id)"
        )


async def test_oversold_and_leaked_stock_fails_naming_the_sku(stack: Stack) -> None:
    await _settled(stack)
    (sku, wh), start = next((k, n) for k, n in stack.initial.items() if n == HOT_STOCK)
    [(on_hand,)] = stack.sql("SELECT on_hand FROM warehouse.stock WHERE sku = %s AND warehouse_id = %s", (sku, wh))
    stack.sql("ALTER TABLE warehouse.stock DROP CONSTRAINT stock_reserved_within_on_hand")
    try:
        # One unit more reserved than there is, none of it held by a reservation; and one unit gone missing.
        stack.sql(
            "UPDATE warehouse.stock SET on_hand = on_hand - 1, reserved = on_hand WHERE sku = %s AND warehouse_id = %s",
            (sku, wh),
        )
        found = await asyncio.to_thread(stack.check)
        for name in ("stock_in_bounds", "stock_reserved_matches_holds", "stock_conserved"):
            assert not found[name].passed, name
            assert any(sku in o for o in found[name].offenders), (name, found[name].offenders)
        assert f"initial={start}" in found["stock_conserved"].offenders[0]
    finally:
        stack.sql(
            "UPDATE warehouse.stock SET on_hand = %s, reserved = 0 WHERE sku = %s AND warehouse_id = %s",
            (on_hand, sku, wh),
        )
        stack.sql(
            "ALTER TABLE warehouse.stock ADD CONSTRAINT stock_reserved_within_on_hand"
            " CHECK (reserved >= 0 AND reserved <= on_hand)"
        )


async def test_a_second_capture_and_money_without_an_order_fail_naming_the_intents(stack: Stack) -> None:
    await _settled(stack)
    session_id = stack.orders[1].session_id
    async with httpx.AsyncClient(base_url=stack.sandbox_url, timeout=30, trust_env=False) as sandbox:

        async def charge(session: str) -> str:
            created = await sandbox.post(
                "/v1/payment_intents",
                json={"amount": 1234, "currency": "usd", "payment_method": "tok_visa",
                      "metadata": {"kassa_session_id": session}},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )  # fmt: skip
            created.raise_for_status()
            intent = created.json()["id"]
            (await sandbox.post(f"/v1/payment_intents/{intent}/capture", json={},
                                headers={"Idempotency-Key": uuid.uuid4().hex})).raise_for_status()  # fmt: skip
            return str(intent)

        second = await charge(session_id)
        orphan_session = str(uuid.uuid4())
        orphan = await charge(orphan_session)
        try:
            found = await asyncio.to_thread(stack.check)
            doubles = found["one_capture_per_order"].offenders
            assert any(session_id in o and second in o for o in doubles), doubles
            kept = found["no_capture_without_order"].offenders
            assert any(orphan in o and orphan_session in o for o in kept), kept
            # The order paid twice no longer captured exactly its total.
            assert any(stack.orders[1].order_id in o for o in kept), kept
        finally:
            for intent in (second, orphan):
                (await sandbox.post("/v1/refunds", json={"payment_intent": intent},
                                    headers={"Idempotency-Key": uuid.uuid4().hex})).raise_for_status()  # fmt: skip


async def test_main_exits_1_with_the_offending_ids_and_0_when_clean(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    await _settled(stack)
    argv = ["--database-url", stack.database_url, "--sandbox-url", stack.sandbox_url, "--nats-url", "none"]
    assert await asyncio.to_thread(main, argv) == 0
    assert "result: PASS" in capsys.readouterr().out
    [(event_id,)] = stack.sql(
        "UPDATE payment.outbox SET status = 'processing', lease_until = now() + interval '1 hour'"
        " WHERE event_id = (SELECT event_id FROM payment.outbox ORDER BY created_at LIMIT 1) RETURNING event_id"
    )
    try:
        assert await asyncio.to_thread(main, argv) == 1
        out = capsys.readouterr().out
        assert "FAIL" in out and str(event_id) in out and "result: FAIL (outbox_sent)" in out
    finally:
        stack.sql("UPDATE payment.outbox SET status = 'sent', lease_until = NULL WHERE event_id = %s", (event_id,))


def test_main_without_a_database_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--database-url", ""]) == 2
    assert "--database-url" in capsys.readouterr().err
