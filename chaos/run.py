"""A chaos run: catalog, customers under the fault schedule, the recovery window, the verdict.

``run_chaos`` is what ``python -m chaos`` does once it has a stack: it seeds a small catalog whose hot
skus and coupon are scarce (so an oversell or a double use would show), drives the customers with
``--concurrency`` in flight while the injector fires the plan's actions at their points of progress,
prints progress every few seconds, waits out the recovery window and then checks every invariant of
DESIGN.md §4 (``devstack.check``) plus what the clients were told (an order a customer saw confirmed is
still sold; one Idempotency-Key never made two orders; no process was given up on).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx

from bench.seed import CatalogPlan, plan_catalog, seed_catalog
from chaos.client import Transports
from chaos.customer import Catalog, Customer, Visit, assign
from chaos.faultlog import count_fired
from chaos.inject import Fired, Injector
from chaos.plan import Plan, due
from chaos.recovery import Owed, wait_recovered
from chaos.stack import ChaosStack
from devstack.check import SOLD_STATUSES, Finding, check_stack, sqlalchemy_to_libpq
from infra.auth import ROLE_ADMIN, mint_token
from infra.migrate import SCHEMAS

__all__ = ["CHAOS_ENV", "Options", "Outcome", "run_chaos"]

# The chaos mesh's settings: short windows and thresholds, so what a crash leaves behind is finished
# (or undone) within the run's recovery window rather than in 15 or 30 minutes.
CHAOS_ENV = {
    # A private stack on loopback with the development secrets, as make run and the tests choose explicitly.
    "KASSA_ENV": "development",
    "KASSA_RESERVATION_TTL_SECONDS": "90",
    "KASSA_CHECKOUT_LOCK_TTL_MS": "90000",
    "KASSA_PAYMENT_WINDOW_SECONDS": "20",
    "KASSA_PAYMENT_POLL_AFTER_SECONDS": "3",
    "KASSA_CHECKOUT_RECOVERY_AFTER_SECONDS": "45",
    "KASSA_SANDBOX_TIMEOUT_SECONDS": "8",
    # Every customer comes from 127.0.0.1: a per-caller limit would refuse them as one caller.
    "KASSA_RATE_LIMIT_PER_MINUTE": "1000000000",
}


# A killed process is back within seconds: a client reconnects as fast (gRPC's default backoff grows to 2 min).
_RECONNECT_FAST = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


@dataclass(frozen=True)
class Options:
    checkouts: int
    seed: int
    concurrency: int
    transport: str
    max_seconds: float
    recovery_seconds: float
    rpc_timeout: float = 10.0
    hot_fraction: float = 0.3
    nudge_dlq: bool = True
    progress_every: float = 5.0


@dataclass
class Outcome:
    """Everything a run found; the report is made from it."""

    options: Options
    plan: Plan
    visits: list[Visit] = field(default_factory=list)
    fired: list[Fired] = field(default_factory=list)
    fired_in_process: Counter[tuple[str, str]] = field(default_factory=Counter)
    restarts: dict[str, int] = field(default_factory=dict)
    given_up: dict[str, int] = field(default_factory=dict)
    load_seconds: float = 0.0
    cut_off: int = 0
    recovery: Owed | None = None
    recovery_seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    catalog: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.findings) and all(f.passed for f in self.findings)


async def _make_coupon(stack: ChaosStack, admin: str, limit: int) -> str:
    code = f"CHAOS{secrets.token_hex(4).upper()}"
    promotion = {
        "code": code,
        "name": "chaos: ten percent off, few uses",
        "type": "PROMOTION_TYPE_PERCENTAGE",
        "percentOff": 10,
        "usageLimit": str(limit),
        "currencyCode": "USD",
        "combinable": True,
    }
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30, trust_env=False) as http:
        response = await http.post(
            "/v1/admin/promotions", json={"promotion": promotion}, headers={"Authorization": f"Bearer {admin}"}
        )
        response.raise_for_status()
    return code


async def seed(stack: ChaosStack, options: Options) -> tuple[Catalog, dict[tuple[str, str], int], CatalogPlan]:
    """A few dozen plentiful skus, four scarce hot ones, one coupon with few uses; and the initial stock."""
    n = options.checkouts
    plan = plan_catalog(f"CHAOS-{options.seed}", 40, 4, on_hand=100_000, hot_stock=max(5, n // 40))
    secret = stack.env["KASSA_JWT_SECRET"]
    seeded = await seed_catalog(stack.env, plan, jwt_secret=secret)
    admin = mint_token(secret, "kassa-chaos", role=ROLE_ADMIN, ttl_seconds=7200)
    coupon = await _make_coupon(stack, admin, max(3, n // 40))
    initial = {(sku, wh): plan.on_hand for sku in plan.skus for wh in seeded.warehouses}
    initial.update({(sku, seeded.hot_warehouse): plan.hot_stock for sku in plan.hot_skus})
    return Catalog(plan.skus, plan.hot_skus, options.hot_fraction, coupon), initial, plan


async def drive(
    stack: ChaosStack, catalog: Catalog, plan: Plan, options: Options, log: Callable[[str], object]
) -> Outcome:
    """The customers and the injector, until every customer is done or ``max_seconds`` pass."""
    outcome = Outcome(options, plan)
    started = time.monotonic()
    injector = Injector(stack, started)
    visits: dict[int, Visit] = {}
    finished = 0
    gate = asyncio.Semaphore(options.concurrency)
    transports = Transports(
        grpc.aio.insecure_channel(stack.addr("checkout"), options=_RECONNECT_FAST),
        grpc.aio.insecure_channel(stack.addr("order"), options=_RECONNECT_FAST),
        httpx.AsyncClient(
            base_url=stack.gateway_url,
            timeout=None,
            trust_env=False,
            limits=httpx.Limits(max_connections=options.concurrency * 2),
        ),
        stack.env["KASSA_JWT_SECRET"],
        options.rpc_timeout,
    )
    sandbox = httpx.AsyncClient(base_url=stack.sandbox_url, timeout=10, trust_env=False)

    async def customer(index: int) -> None:
        nonlocal finished
        async with gate:
            rng, persona, transport = assign(options.seed, index, options.transport)
            visit = visits[index] = Visit(index, persona, transport)
            await Customer(transports.api(transport), sandbox, catalog, rng, visit).run()
            finished += 1

    async def inject() -> None:
        fired = 0
        while fired < len(plan.actions):
            for action in due(plan.actions, finished / options.checkouts, fired):
                result = await injector.fire(action)
                fired += 1
                log(
                    f"chaos: [{result.at_s:6.1f}s] {action.describe():<22} "
                    f"{'done' if result.ok else 'FAILED'}: {result.detail}"
                )
            await asyncio.sleep(0.2)

    async def progress() -> None:
        while True:
            await asyncio.sleep(options.progress_every)
            tally = Counter(_short(v.outcome) for v in visits.values() if v.outcome)
            top = ", ".join(f"{name} {n}" for name, n in tally.most_common(6))
            restarts = sum(stack.mesh.restarts.values())
            log(
                f"chaos: [{time.monotonic() - started:6.1f}s] {finished}/{options.checkouts} done | {top} | "
                f"faults {len(injector.fired)}/{len(plan.actions)} fired, {restarts} restarts"
            )

    tasks = [asyncio.create_task(customer(i)) for i in range(options.checkouts)]
    helpers = [asyncio.create_task(inject()), asyncio.create_task(progress())]
    try:
        _, pending = await asyncio.wait(tasks, timeout=options.max_seconds)
        for task in pending:
            task.cancel()
        outcome.cut_off = len(pending)
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        await transports.aclose()
        await sandbox.aclose()
    for visit in visits.values():
        if not visit.outcome:
            visit.outcome = "cut off by --max-seconds"
    outcome.visits = [visits[i] for i in sorted(visits)]
    outcome.fired = injector.fired
    outcome.load_seconds = time.monotonic() - started
    return outcome


def _short(text: str) -> str:
    return text.split(";", 1)[0].split(" after retries", 1)[0]


def _client_findings(stack: ChaosStack, outcome: Outcome) -> list[Finding]:
    """What the customers were told, against what the stack holds now."""
    import psycopg

    told = {v.order_id: v for v in outcome.visits if v.order_id}
    with psycopg.connect(sqlalchemy_to_libpq(stack.endpoints.database_url), connect_timeout=10) as conn:
        statuses: dict[str, str] = dict(
            conn.execute(
                f"SELECT order_id::text, status FROM {SCHEMAS['order']}.orders WHERE order_id = ANY(%s::uuid[])",
                (list(told),),
            ).fetchall()
        )
    broken = []
    for order_id, visit in sorted(told.items()):
        now = statuses.get(order_id)
        if visit.cancelled and now != "CANCELLED":
            broken.append(f"order {order_id}: cancelled for the customer, now {now}")
        elif (
            not visit.cancelled
            and visit.told.removeprefix("ORDER_STATUS_") in SOLD_STATUSES
            and now not in SOLD_STATUSES
        ):
            broken.append(f"order {order_id}: the customer was told {visit.told}, now {now}")
    anomalies = [f"customer {v.index} (session {v.session_id}): {a}" for v in outcome.visits for a in v.anomalies]
    return [
        Finding(
            "client_answers_kept",
            not broken,
            len(told),
            f"{len(told)} orders the customers were told about, each still as they were told",
            tuple(broken),
        ),
        Finding(
            "one_answer_per_key",
            not anomalies,
            sum(1 for v in outcome.visits if v.persona == "double_click"),
            "double-clicked Confirms (one Idempotency-Key, two calls at once) got one order",
            tuple(anomalies),
        ),
        Finding(
            "mesh_recovered",
            not outcome.given_up,
            len(stack.mesh.pids),
            "processes all running after the run (none given up on after a crash loop)",
            tuple(f"{name} given up on (last exit code {code})" for name, code in outcome.given_up.items()),
        ),
    ]


async def verdict(
    stack: ChaosStack, outcome: Outcome, initial: dict[tuple[str, str], int], log: Callable[[str], object]
) -> None:
    """The recovery window, then the invariants (re-read a few times while something may still settle)."""
    outcome.recovery, outcome.recovery_seconds = await wait_recovered(
        stack, seconds=outcome.options.recovery_seconds, nudge_dlq=outcome.options.nudge_dlq, log=log
    )
    log(f"chaos: recovery window: {outcome.recovery.describe()} after {outcome.recovery_seconds:.0f}s; checking ...")
    outcome.restarts = dict(stack.mesh.restarts)
    outcome.given_up = dict(stack.mesh.given_up)
    for attempt in range(3):
        findings = await asyncio.to_thread(
            check_stack,
            stack.endpoints.database_url,
            sandbox_url=stack.sandbox_url,
            nats_url=stack.endpoints.nats_url,
            initial_stock=initial,
        )
        findings += await asyncio.to_thread(_client_findings, stack, outcome)
        outcome.findings = findings
        if outcome.passed or attempt == 2:
            break
        await asyncio.sleep(10)
    outcome.fired_in_process = count_fired(stack.log_dirs)


async def run_chaos(stack: ChaosStack, options: Options, plan: Plan, log: Callable[[str], object]) -> Outcome:
    catalog, initial, seeded = await seed(stack, options)
    log(
        f"chaos: catalog {len(seeded.skus)} skus, hot {', '.join(seeded.hot_skus)} with {seeded.hot_stock} units "
        f"each, coupon {catalog.coupon}; {options.checkouts} customers, {options.concurrency} at a time"
    )
    outcome = await drive(stack, catalog, plan, options, log)
    outcome.catalog = {
        "skus": len(seeded.skus),
        "hot_skus": list(seeded.hot_skus),
        "hot_stock": seeded.hot_stock,
        "coupon": catalog.coupon,
    }
    await verdict(stack, outcome, initial, log)
    return outcome
