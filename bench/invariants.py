"""DESIGN.md §4 invariants, checked on what the run left behind.

With a database URL (the bench started the stack, or ``--database-url`` was given) the checks are
read-only SQL over the services' schemas and cover every order of the run (an order whose lines hold
a sku of the run's prefix), including ones the clients never heard back about. Without it they go
through the admin/service gRPC APIs and cover what the clients saw: the stock of the run's skus and
the orders the clients were told were confirmed.

A saga the client gave up on may still be running when the load stops, so :func:`check_settled`
repeats the checks for a while until they pass, and reports how long that took.

These are the run's own checks (its hot skus, the orders its clients saw); ``devstack.check`` (``kassa
check``, used by ``make chaos``) proves every §4 invariant over a whole stack and its provider's ledger.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from devstack.check import sqlalchemy_to_libpq
from infra.auth import ROLE_ADMIN, mint_token
from infra.channels import open_channel
from kassa.order.v1 import order_pb2
from kassa.order.v1 import order_service_pb2 as order_pb
from kassa.order.v1 import order_service_pb2_grpc as order_grpc
from kassa.payment.v1 import payment_pb2
from kassa.payment.v1 import payment_service_pb2 as pay_pb
from kassa.payment.v1 import payment_service_pb2_grpc as pay_grpc
from kassa.warehouse.v1 import inventory_service_pb2 as inv_pb
from kassa.warehouse.v1 import inventory_service_pb2_grpc as inv_grpc

if TYPE_CHECKING:
    from bench.seed import CatalogPlan

__all__ = ["InvariantResult", "RunFacts", "check_grpc", "check_settled", "check_sql", "sqlalchemy_to_libpq"]

_TIMEOUT_S = 30.0
_GRPC_PARALLEL = 32
# Statuses an order reaches only after its payment was captured.
_SOLD_STATUSES = ("CONFIRMED", "PACKED", "SHIPPED", "DELIVERED")


@dataclass(frozen=True)
class InvariantResult:
    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass(frozen=True)
class RunFacts:
    """What the invariants are checked against."""

    prefix: str
    skus: Sequence[str]
    hot_skus: Sequence[str]
    hot_stock: int
    orders: Sequence[tuple[str, str]]  # (session_id, order_id) the clients saw confirmed
    hot_units_seen: Mapping[str, int]  # hot units in checkouts the clients saw confirmed

    @staticmethod
    def of(plan: CatalogPlan, runs: Iterable[Confirmed]) -> RunFacts:
        """The facts of a run on ``plan``'s catalog: what every load process (or buyer) saw confirmed."""
        runs = list(runs)
        hot: Counter[str] = Counter()
        for run in runs:
            hot.update(run.hot_units)
        return RunFacts(
            prefix=plan.prefix,
            skus=plan.skus,
            hot_skus=plan.hot_skus,
            hot_stock=plan.hot_stock,
            orders=[pair for run in runs for pair in run.orders],
            hot_units_seen=dict(hot),
        )


class Confirmed(Protocol):
    """What one load process or buyer tallied of the checkouts it saw confirmed."""

    @property
    def orders(self) -> Sequence[tuple[str, str]]: ...

    @property
    def hot_units(self) -> Mapping[str, int]: ...


# --------------------------------------------------------------------------------------------------
# SQL (read-only)

_RUN_ORDERS = """
    SELECT DISTINCT o.order_id, o.checkout_session_id, o.status
    FROM orders.orders o JOIN orders.order_lines l ON l.order_id = o.order_id
    WHERE l.sku LIKE %(pattern)s
"""


def check_sql(database_url: str, facts: RunFacts) -> list[InvariantResult]:
    """Every invariant over every row of the run, in one read-only transaction."""
    import psycopg

    pattern = facts.prefix + "-%"
    results: list[InvariantResult] = []
    with psycopg.connect(
        sqlalchemy_to_libpq(database_url),
        options="-c default_transaction_read_only=on",
        connect_timeout=10,
        application_name="kassa-bench-invariants",
    ) as conn:
        bad, rows = conn.execute(
            "SELECT count(*) FILTER (WHERE NOT (on_hand >= 0 AND reserved >= 0 AND reserved <= on_hand)),"
            " count(*) FROM warehouse.stock"
        ).fetchone() or (0, 0)
        results.append(
            InvariantResult(
                "no_oversell_stock",
                bad == 0,
                f"{bad} of {rows} sku/warehouse rows outside 0 <= reserved <= on_hand",
            )
        )

        sold: dict[str, Any] = dict(
            conn.execute(
                "SELECT l.sku, sum(l.quantity) FROM orders.order_lines l JOIN orders.orders o USING (order_id)"
                " WHERE l.sku = ANY(%(skus)s) AND o.status = ANY(%(statuses)s) GROUP BY l.sku",
                {"skus": list(facts.hot_skus), "statuses": list(_SOLD_STATUSES)},
            ).fetchall()
        )
        on_hand: dict[str, Any] = dict(
            conn.execute(
                "SELECT sku, sum(on_hand) FROM warehouse.stock WHERE sku = ANY(%(skus)s) GROUP BY sku",
                {"skus": list(facts.hot_skus)},
            ).fetchall()
        )
        results.extend(_hot_results(facts, {s: int(sold.get(s, 0)) for s in facts.hot_skus}, on_hand))

        orders, sessions = conn.execute(
            f"SELECT count(*), count(DISTINCT checkout_session_id) FROM ({_RUN_ORDERS}) r", {"pattern": pattern}
        ).fetchone() or (0, 0)
        results.append(
            InvariantResult(
                "one_order_per_session",
                orders == sessions,
                f"{orders} orders of the run for {sessions} distinct checkout sessions",
            )
        )

        confirmed, captured = conn.execute(
            f"""
            WITH run AS ({_RUN_ORDERS})
            SELECT (SELECT count(*) FROM run WHERE status = 'CONFIRMED'),
                   (SELECT count(*) FROM payment.payments p
                     WHERE p.status = 'CAPTURED' AND p.order_id IN (SELECT order_id::text FROM run))
            """,
            {"pattern": pattern},
        ).fetchone() or (0, 0)
        results.append(
            InvariantResult(
                "captured_payments_equal_confirmed_orders",
                confirmed == captured,
                f"{captured} CAPTURED payments for {confirmed} CONFIRMED orders of the run",
            )
        )

        seen = [order_id for _, order_id in facts.orders]
        recorded = (
            conn.execute(
                "SELECT count(*) FROM orders.orders WHERE order_id = ANY(%(ids)s::uuid[]) AND status = 'CONFIRMED'",
                {"ids": seen},
            ).fetchone()
            or (0,)
        )[0]
        results.append(
            InvariantResult(
                "client_confirmations_recorded",
                recorded == len(set(seen)),
                f"{recorded} of {len(set(seen))} orders the clients saw confirmed are CONFIRMED in the database",
            )
        )
    return results


def _hot_results(facts: RunFacts, sold: Mapping[str, int], on_hand: Mapping[str, Any]) -> list[InvariantResult]:
    over = {s: n for s, n in sold.items() if n > facts.hot_stock}
    unseen = {s: (facts.hot_units_seen.get(s, 0), n) for s, n in sold.items() if facts.hot_units_seen.get(s, 0) > n}
    sold_text = ", ".join(f"{s.removeprefix(facts.prefix + '-')}={n}" for s, n in sold.items())
    results = [
        InvariantResult(
            "hot_skus_not_oversold",
            not over and not unseen,
            f"units sold per hot sku (initial {facts.hot_stock} each): {sold_text or 'none'}"
            + (f"; OVERSOLD {over}" if over else "")
            + (f"; clients saw more than sold (seen, sold): {unseen}" if unseen else ""),
        )
    ]
    leaks = {s: (int(on_hand.get(s, 0)), sold[s]) for s in sold if int(on_hand.get(s, 0)) + sold[s] != facts.hot_stock}
    results.append(
        InvariantResult(
            "hot_stock_conserved",
            not leaks,
            f"initial on_hand = on_hand now + units sold for every hot sku (initial {facts.hot_stock})"
            + (f"; MISMATCH (on_hand, sold): {leaks}" if leaks else ""),
        )
    )
    return results


# --------------------------------------------------------------------------------------------------
# gRPC (admin/service APIs)


async def _bounded(calls: Iterable[Callable[[], Awaitable[Any]]], parallel: int = _GRPC_PARALLEL) -> list[Any]:
    gate = asyncio.Semaphore(parallel)

    async def run(call: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await call()

    return await asyncio.gather(*(run(c) for c in calls))


async def check_grpc(env: Mapping[str, str], jwt_secret: str, facts: RunFacts) -> list[InvariantResult]:
    """The invariants through the warehouse, order and payment APIs, with an admin token."""
    md = (("authorization", f"Bearer {mint_token(jwt_secret, 'kassa-bench-check', role=ROLE_ADMIN)}"),)
    results: list[InvariantResult] = []
    async with (
        open_channel(env["KASSA_WAREHOUSE_ADDR"]) as wch,
        open_channel(env["KASSA_ORDER_ADDR"]) as och,
        open_channel(env["KASSA_PAYMENT_ADDR"]) as pch,
    ):
        inventory, orders, payments = (
            inv_grpc.InventoryServiceStub(wch),
            order_grpc.OrderServiceStub(och),
            pay_grpc.PaymentServiceStub(pch),
        )
        skus = [*facts.skus, *facts.hot_skus]
        chunks = [skus[i : i + 1000] for i in range(0, len(skus), 1000)]

        # Defs bound by partial, not lambdas with a default (mypy cannot type those).
        def check_stock(c: list[str]) -> Awaitable[Any]:
            return inventory.CheckStock(
                inv_pb.CheckStockRequest(items=[inv_pb.StockQuery(sku=s, quantity=1) for s in c]),
                metadata=md,
                timeout=_TIMEOUT_S,
            )

        replies = await _bounded([partial(check_stock, chunk) for chunk in chunks], parallel=4)
        levels = [level for reply in replies for level in reply.levels]
        bad = [f"{lv.sku}@{lv.warehouse_id}" for lv in levels if not 0 <= lv.reserved <= lv.on_hand]
        results.append(
            InvariantResult(
                "no_oversell_stock",
                not bad,
                f"{len(bad)} of {len(levels)} sku/warehouse rows of the run outside 0 <= reserved <= on_hand"
                + (f": {bad[:5]}" if bad else ""),
            )
        )
        on_hand: dict[str, int] = {}
        for lv in levels:
            if lv.sku in facts.hot_skus:
                on_hand[lv.sku] = on_hand.get(lv.sku, 0) + lv.on_hand
        # What the warehouse confirmed as sold is what left on_hand.
        sold = {s: facts.hot_stock - on_hand.get(s, 0) for s in facts.hot_skus}
        hot = _hot_results(facts, sold, on_hand)
        results.append(hot[0])  # conservation is true by construction of ``sold`` here

        order_ids = [order_id for _, order_id in facts.orders]

        def get_order(o: str) -> Awaitable[Any]:
            return orders.GetOrder(order_pb.GetOrderRequest(order_id=o), metadata=md, timeout=_TIMEOUT_S)

        fetched = await _bounded([partial(get_order, order_id) for order_id in order_ids])
        by_id = {reply.order.order_id: reply.order for reply in fetched}
        wrong_session = [o for s, o in facts.orders if by_id[o].checkout_session_id != s]
        distinct = len(set(order_ids)) == len(order_ids) and len({s for s, _ in facts.orders}) == len(facts.orders)
        results.append(
            InvariantResult(
                "one_order_per_session",
                distinct and not wrong_session,
                f"{len(order_ids)} confirmed orders seen by the clients, {len(set(order_ids))} distinct, for "
                f"{len({s for s, _ in facts.orders})} distinct sessions; {len(wrong_session)} with another session",
            )
        )
        confirmed = [o for o in by_id.values() if o.status == order_pb2.ORDER_STATUS_CONFIRMED]

        def get_payment(p: str) -> Awaitable[Any]:
            return payments.GetPayment(pay_pb.GetPaymentRequest(payment_id=p), metadata=md, timeout=_TIMEOUT_S)

        paid = await _bounded([partial(get_payment, o.payment_id) for o in confirmed if o.payment_id])
        captured = sum(1 for reply in paid if reply.payment.status == payment_pb2.PAYMENT_STATUS_CAPTURED)
        results.append(
            InvariantResult(
                "captured_payments_equal_confirmed_orders",
                captured == len(confirmed),
                f"{captured} CAPTURED payments for {len(confirmed)} CONFIRMED orders (of those the clients saw)",
            )
        )
        results.append(
            InvariantResult(
                "client_confirmations_recorded",
                len(confirmed) == len(set(order_ids)),
                f"{len(confirmed)} of {len(set(order_ids))} orders the clients saw confirmed are CONFIRMED",
            )
        )
    return results


# --------------------------------------------------------------------------------------------------


async def check_settled(
    check: Callable[[], Awaitable[list[InvariantResult]]],
    *,
    settle_s: float,
    interval_s: float = 1.0,
) -> tuple[list[InvariantResult], float]:
    """Run ``check`` until everything passes or ``settle_s`` is over; the last results and the time taken."""
    started = time.monotonic()
    while True:
        results = await check()
        elapsed = time.monotonic() - started
        if all(r.passed for r in results) or elapsed >= settle_s:
            return results, elapsed
        await asyncio.sleep(interval_s)
