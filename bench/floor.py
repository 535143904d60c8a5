"""``python -m bench.floor``: the CPU floor of one Kassa RPC and one write transaction on this machine.

What it answers: what the plumbing alone costs here, with no business logic at all, so that a checkout's
ceiling on this stack can be stated for any implementation of the design. Two parts, each measured in
``--rounds`` rounds of ``--ops`` operations at ``--concurrency`` in flight (the median round is reported):

- ``rpc``: one unary call with a bearer token through ``infra.server.start_server`` (so through the
  ``KassaInterceptor`` and its JWT check) to a servicer that answers an empty ``GetProductsResponse``.
  The server is a separate process (``python -m bench.floor --serve``, on 127.0.0.1, port reported on
  its stdout), measured from outside; the client is this process (``time.process_time``).
- ``tx``: the smallest write transaction through ``infra.db.create_engine``: ``async with engine.begin()``
  around one ``UPDATE`` of one row (each worker its own row of a scratch table, so no lock waits), i.e.
  BEGIN, UPDATE, COMMIT. Client CPU is this process, Postgres CPU that of the postmaster's process tree.
  Then the same transaction, the same statement text, on bare psycopg connections (one per worker):
  the difference in client CPU is what SQLAlchemy's async layer (its pool, its greenlets, its execution
  context and result) adds to each transaction. The floor is the first: what a Kassa service pays.

The floor of a checkout is ``RPCS`` calls plus ``TXS`` write transactions (counted below), and the
ceiling ``cores * 1000 / floor_ms`` checkouts/s. That is an upper bound: zero business logic, zero reads,
tiny messages, no events, no payment-provider HTTP calls, no Redis, no gateway.

By default a private Postgres (``devstack.localstack.LocalStack`` on free loopback ports, in a temporary
directory) is started and stopped; ``--database-url`` uses a running one instead (loopback only), whose
CPU is then unknown unless ``--postgres-pid`` names its postmaster. Everything started is stopped by pid,
and the scratch schema is dropped, also on Ctrl-C, SIGTERM, errors and ``--time-limit``.

CPU of another process: its process tree comes from ``/proc`` (parent pids), each live process's own time
from the kernel's per-process CPU clock (nanoseconds, all its threads, also those that exited), and the
time of children it reaped from ``/proc/<pid>/stat`` (``cutime + cstime``, clock ticks). Plain
``utime + stime`` is also in clock ticks (10 ms): too coarse for a round of a few hundred operations.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import psycopg
import sqlalchemy as sa
import uvloop

from bench.args import interrupt_on_sigterm, is_loopback_host, positive
from bench.cpu import all_stats, machine_cpu, tree_pids
from bench.report import default_out_path, write_report
from devstack.check import sqlalchemy_to_libpq
from devstack.localstack import LocalStack, free_ports
from devstack.procs import stop_children
from infra.auth import JwtVerifier, mint_token, require_identity
from infra.db import create_engine
from infra.server import Registration, start_server
from kassa.pricing.v1 import pricing_service_pb2 as pricing_pb
from kassa.pricing.v1 import pricing_service_pb2_grpc as pricing_grpc

__all__ = ["RPCS", "SCHEMA", "TXS", "build_parser", "floor_figures", "main", "tree_cpu_seconds_exact"]

SCHEMA = "kassa-bench-floor/1"

# Calls of one checkout of the bench flow (bench/flow.py GrpcCheckout; no promotion code, card "tok_visa",
# so authorized then captured), each costing a client and a server side:
#   8 client -> checkout: CreateCart, AddCartItem x3, StartCheckout, UpdateCheckoutState, PreviewOrder,
#     ConfirmCheckout (PreviewOrder is the bench's choice; a client could take the total from the update);
#   11 checkout -> other services (checkout/biz/cart/manage.py, checkout/biz/checkout/*.py):
#     AddCartItem x3: none, priced from checkout's copy of the catalog (pricing.SyncProducts
#       once a second per checkout replica, not per checkout)                          0
#     StartCheckout: pricing.GetProducts, warehouse.ReserveStock                       2
#     UpdateCheckoutState: pricing.QuoteOrder (the totals preview)                     1
#     PreviewOrder: pricing.QuoteOrder                                                 1
#     ConfirmCheckout: pricing.QuoteOrder (step 3), warehouse.ExtendReservations,
#       payment.AuthorizePayment, order.CreateOrder, payment.CapturePayment,
#       order.RecordPayment, warehouse.ConfirmReservations                             7
# With a promotion code each totals computation is ValidatePromotions + one QuoteOrder with the discounts
# (a QuoteShipping first while the shipment's shipping is unknown; GetProducts + QuoteShipping +
# ValidatePromotions + CalculateTax when pricing's answer differs from what promotion was asked with), and
# confirm adds ReserveUsage and ConfirmUsage.
RPCS = 8 + 11

# Write transactions the design needs at least, one per durable state change, where changes of one
# service with no remote call between them share a transaction (services never share one):
#   checkout (8): create cart; add line x3; session created + cart -> CHECKOUT (after ReserveStock);
#     UpdateCheckoutState stores the fields; ConfirmCheckout's durable guard (OPEN -> CONFIRMING);
#     session finished + cart CONVERTED + CheckoutCompleted/CartConverted in the outbox
#   warehouse (3): ReserveStock, ExtendReservations, ConfirmReservations (stock deducted)
#   payment (2): authorization recorded, capture recorded
#   order (2): CreateOrder (+ OrderCreated outbox), RecordPayment (-> CONFIRMED)
# The code does more than this minimum today, e.g. payment writes PENDING / CAPTURING before each provider
# call and the result after it (4, not 2), checkout persists saga progress before AuthorizePayment and
# CreateOrder, and UpdateCheckoutState stores the preview in a second transaction.
TXS = 8 + 3 + 2 + 2

TARGET_PER_S = 167  # DESIGN.md section 6 and issue 4: 10,000 checkouts per minute
UTILISATION = 0.7  # what an open loop with a short p99 can use of the machine
WARMUP_OPS = 200  # unmeasured operations before the rounds: connections, JWT cache, compiled SQL
CALL_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 60.0
CLEANUP_TIMEOUT_S = 15.0
METHOD = "/kassa.pricing.v1.PricingService/GetProducts"
UPPER_BOUND_NOTE = (
    "an upper bound: zero business logic, zero reads, tiny messages, no events, no Redis, "
    "no payment-provider HTTP calls, no gateway"
)

_SECRET_ENV = "KASSA_FLOOR_JWT_SECRET"
_REPO = Path(__file__).resolve().parents[1]
_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK")


class UsageError(Exception):
    pass


# --------------------------------------------------------------------------------------------------
# CPU of another process tree


def _process_clock_s(pid: int) -> float | None:
    """The kernel's CPU clock of a whole process (Linux MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED))."""
    try:
        return time.clock_gettime(((~pid) << 3) | 2)
    except OSError:
        return None


def tree_cpu_seconds_exact(root: int, proc: Path = _PROC) -> float | None:
    """CPU seconds of ``root`` and its live descendants (exact) plus what they reaped (ticks); None if gone."""
    stats = all_stats(proc)
    tree = tree_pids(root, stats)
    if tree is None:
        return None
    total = 0.0
    for pid in tree:
        stat = stats[pid]
        # A process that exited since the scan has no clock: its ticks stand in (its parent reaps it later).
        own = _process_clock_s(pid) if proc == _PROC else None
        total += (own if own is not None else stat.own_ticks / _TICKS) + (stat.cutime + stat.cstime) / _TICKS
    return total


# --------------------------------------------------------------------------------------------------
# the server process (python -m bench.floor --serve)


class _EmptyPricing(pricing_grpc.PricingServiceServicer):
    """GetProducts with no work at all: the caller must be identified (as every servicer checks)."""

    _EMPTY = pricing_pb.GetProductsResponse()

    async def GetProducts(
        self, request: pricing_pb.GetProductsRequest, context: grpc.aio.ServicerContext
    ) -> pricing_pb.GetProductsResponse:
        require_identity()
        return self._EMPTY


async def _serve(secret: str) -> None:
    """Serve until SIGTERM or until stdin closes (the parent is done or went away).

    Ctrl-C is left to the parent (it reaches the whole process group): the server must keep answering
    until the parent has stopped calling, so an interruption reads as one, not as failed calls.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    name = pricing_pb.DESCRIPTOR.services_by_name["PricingService"].full_name
    registration = Registration(pricing_grpc.add_PricingServiceServicer_to_server, _EmptyPricing(), name)
    server = await start_server("127.0.0.1:0", [registration], JwtVerifier(secret))
    print(f"port {server.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    stdin = sys.stdin.fileno()

    def on_stdin() -> None:
        if not os.read(stdin, 4096):
            stop.set()

    loop.add_reader(stdin, on_stdin)
    try:
        await stop.wait()
    finally:
        loop.remove_reader(stdin)
        await server.stop(grace=1)


@contextmanager
def served(secret: str) -> Iterator[tuple[int, int]]:
    """Start the server process; yield (pid, port); stop it by pid at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.floor", "--serve"],
        cwd=_REPO,
        env={**os.environ, _SECRET_ENV: secret},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT_S)
        line = proc.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("port "):
            raise RuntimeError(f"the floor server did not report its port (exit code {proc.poll()}): {line!r}")
        yield proc.pid, int(line.split()[1])
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        stop_children([("floor server", proc, signal.SIGTERM)], 10.0, lambda m: print(m, file=sys.stderr))
        if proc.stdout is not None:
            proc.stdout.close()


# --------------------------------------------------------------------------------------------------
# measuring


@dataclass(frozen=True)
class Round:
    """One round: milliseconds of CPU per operation, on each side, and the wall clock."""

    ops: int
    wall_s: float
    client_ms: float
    other_ms: float | None  # the server process, or Postgres
    machine_busy_share: float | None

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.wall_s if self.wall_s > 0 else 0.0


async def _drive(op: Callable[[int], Awaitable[None]], ops: int, concurrency: int) -> None:
    """``ops`` operations, ``concurrency`` at a time; ``op`` gets its worker's index."""
    todo = iter(range(ops))

    async def worker(index: int) -> None:
        for _ in todo:
            await op(index)

    await asyncio.gather(*(worker(i) for i in range(min(concurrency, ops))))


async def _measure(op: Callable[[int], Awaitable[None]], ops: int, concurrency: int, other_pid: int | None) -> Round:
    # /proc is read outside the client's window, so reading it is not charged to the client.
    other_before = tree_cpu_seconds_exact(other_pid) if other_pid else None
    machine_before = machine_cpu()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    await _drive(op, ops, concurrency)
    cpu1, wall1 = time.process_time(), time.perf_counter()
    other_after = tree_cpu_seconds_exact(other_pid) if other_pid else None
    machine_after = machine_cpu()
    other = None if other_before is None or other_after is None else max(0.0, other_after - other_before)
    busy = None
    if machine_before and machine_after and machine_after.total_ticks > machine_before.total_ticks:
        busy = (machine_after.busy_ticks - machine_before.busy_ticks) / (
            machine_after.total_ticks - machine_before.total_ticks
        )
    return Round(
        ops=ops,
        wall_s=wall1 - wall0,
        client_ms=(cpu1 - cpu0) * 1000 / ops,
        other_ms=None if other is None else other * 1000 / ops,
        machine_busy_share=busy,
    )


Progress = Callable[[str], None]


async def _rounds(
    op: Callable[[int], Awaitable[None]],
    args: argparse.Namespace,
    other_pid: int | None,
    progress: Progress,
    *,
    part: str,
    ops: str,
    other: str,
) -> list[Round]:
    """Unmeasured warm-up operations, then ``args.rounds`` measured rounds of ``op``, each reported as it ends."""
    await _drive(op, min(WARMUP_OPS, args.ops), args.concurrency)
    rounds = []
    for n in range(args.rounds):
        r = await _measure(op, args.ops, args.concurrency, other_pid)
        rounds.append(r)
        progress(
            f"floor: {part} round {n + 1}/{args.rounds}: {r.ops} {ops} in {r.wall_s:.2f} s ({r.ops_per_s:.0f}/s), "
            f"{other} {_ms(r.other_ms)} + client {_ms(r.client_ms)} ms each"
        )
    return rounds


async def rpc_rounds(args: argparse.Namespace, progress: Progress) -> list[Round]:
    secret = secrets.token_urlsafe(32)
    token = mint_token(secret, "bench-floor", ttl_seconds=3600)
    metadata = (("authorization", f"Bearer {token}"),)
    request = pricing_pb.GetProductsRequest(skus=["FLOOR-1"], currency_code="USD")
    with served(secret) as (pid, port):
        progress(f"floor: rpc server pid {pid} on 127.0.0.1:{port}")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await asyncio.wait_for(channel.channel_ready(), READY_TIMEOUT_S)
            stub = pricing_grpc.PricingServiceStub(channel)

            async def call(_: int) -> None:
                await stub.GetProducts(request, metadata=metadata, timeout=CALL_TIMEOUT_S)

            rounds = await _rounds(call, args, pid, progress, part="rpc", ops="calls", other="server")
    return rounds


@dataclass(frozen=True)
class TxResult:
    rounds: list[Round]
    schema: str
    verified: bool
    dropped: bool
    driver_rounds: list[Round]  # the same transaction on psycopg alone


async def tx_rounds(args: argparse.Namespace, database_url: str, pg_pid: int | None, progress: Progress) -> TxResult:
    """The write transaction through ``infra.db`` (what a service pays), then the same one on bare psycopg
    connections, one per worker (what SQLAlchemy's async layer adds to it: the difference of the two)."""
    schema = f"bench_floor_{secrets.token_hex(4)}"
    table = sa.Table(
        "scratch",
        sa.MetaData(schema=schema),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
    )
    bump = sa.update(table).where(table.c.id == sa.bindparam("row_id")).values(n=table.c.n + 1)
    workers = min(args.concurrency, args.ops)
    engine = create_engine(database_url, pool_size=workers, application_name="kassa-bench-floor")
    # The same statement, as SQLAlchemy sends it to psycopg: its text and its parameters but the row's id.
    compiled = bump.compile(dialect=engine.dialect)
    bump_sql, bump_params = str(compiled), dict(compiled.params)
    created = dropped = verified = False
    drivers: list[psycopg.AsyncConnection[Any]] = []
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.schema.CreateSchema(schema))
            created = True
            await conn.run_sync(table.metadata.create_all)
            await conn.execute(sa.insert(table), [{"id": i, "n": 0} for i in range(workers)])
        progress(f"floor: scratch table {schema}.scratch with {workers} rows")

        async def update(worker: int) -> None:
            async with engine.begin() as conn:
                result = await conn.execute(bump, {"row_id": worker})
            if result.rowcount != 1:
                raise RuntimeError(f"UPDATE of row {worker} touched {result.rowcount} rows")

        conninfo = sqlalchemy_to_libpq(database_url)
        for _ in range(workers):  # one at a time into the list, so each one opened is closed below
            drivers.append(await psycopg.AsyncConnection.connect(conninfo, application_name="kassa-bench-floor"))

        async def update_on_psycopg(worker: int) -> None:
            conn = drivers[worker]
            async with conn.transaction():
                cursor = await conn.execute(bump_sql, {**bump_params, "row_id": worker})
            if cursor.rowcount != 1:
                raise RuntimeError(f"UPDATE of row {worker} touched {cursor.rowcount} rows")

        warmup = min(WARMUP_OPS, args.ops)
        rounds = await _rounds(update, args, pg_pid, progress, part="tx", ops="transactions", other="postgres")
        driver_rounds = await _rounds(
            update_on_psycopg, args, pg_pid, progress, part="tx on psycopg alone", ops="transactions", other="postgres"
        )
        async with engine.connect() as conn:
            total = (await conn.execute(sa.select(sa.func.sum(table.c.n)))).scalar_one()
        expected = 2 * (warmup + args.rounds * args.ops)
        verified = total == expected
        if not verified:
            raise RuntimeError(f"the scratch table counts {total} updates, expected {expected}")
    finally:
        for driver in drivers:
            await driver.close()
        if created:
            dropped = await _drop_schema(engine, schema)
        await engine.dispose()
    return TxResult(rounds=rounds, schema=schema, verified=verified, dropped=dropped, driver_rounds=driver_rounds)


async def _drop_schema(engine: Any, schema: str) -> bool:
    """Drop the scratch schema, not waiting forever on a lock an interrupted transaction may still hold."""
    try:
        async with asyncio.timeout(CLEANUP_TIMEOUT_S), engine.begin() as conn:
            await conn.execute(sa.text("SET LOCAL lock_timeout = '10s'"))
            await conn.execute(sa.schema.DropSchema(schema, cascade=True))
    except Exception as exc:
        print(f"floor: could not drop schema {schema} ({exc!r}); drop it by hand", file=sys.stderr)
        return False
    return True


# --------------------------------------------------------------------------------------------------
# figures


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known and len(known) == len(values) else None


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def part_summary(rounds: Sequence[Round], other: str) -> dict[str, Any]:
    """Medians over rounds (ms per operation); ``sum_ms`` is client + other (client alone when other is unknown)."""
    client = _r(_median([r.client_ms for r in rounds]))
    other_ms = _r(_median([r.other_ms for r in rounds]))
    assert client is not None
    return {
        "client_ms": client,
        f"{other}_ms": other_ms,
        "sum_ms": _r(client + (other_ms or 0.0)),
        f"{other}_known": other_ms is not None,
        "ops_per_s": _r(_median([r.ops_per_s for r in rounds]), 1),
        "machine_busy_share": _r(_median([r.machine_busy_share for r in rounds]), 3),
        "rounds": [
            {
                "ops": r.ops,
                "wall_s": _r(r.wall_s, 3),
                "ops_per_s": _r(r.ops_per_s, 1),
                "client_ms": _r(r.client_ms),
                f"{other}_ms": _r(r.other_ms),
                "machine_busy_share": _r(r.machine_busy_share, 3),
            }
            for r in rounds
        ],
    }


def floor_figures(rpc_sum_ms: float, tx_sum_ms: float, cores: int) -> dict[str, Any]:
    """floor_ms = RPCS * rpc_sum + TXS * tx_sum; the checkouts/s that many cores could do at that cost."""
    floor_ms = round(RPCS * rpc_sum_ms + TXS * tx_sum_ms, 4)
    ceiling = cores * 1000 / floor_ms if floor_ms > 0 else None
    return {
        "rpcs_per_checkout": RPCS,
        "txs_per_checkout": TXS,
        "floor_ms": floor_ms,
        "cores": cores,
        "ceiling_per_s": _r(ceiling, 1),
        "ceiling_at_70pct_per_s": _r(None if ceiling is None else ceiling * UTILISATION, 1),
        "target_per_s": TARGET_PER_S,
        "cores_for_target": round(TARGET_PER_S * floor_ms / 1000, 3),
        "note": UPPER_BOUND_NOTE,
    }


def _ms(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.3f}"


def format_table(report: dict[str, Any]) -> str:
    cfg, rpc, tx, pg, fl = report["config"], report["rpc"], report["tx"], report["tx_psycopg"], report["floor"]
    pg_note = "" if tx["postgres_known"] else "  (postgres unknown: not included)"
    lines = [
        "",
        f"  Kassa floor on this machine: {fl['cores']} cores, median of {cfg['rounds']} rounds x {cfg['ops']} ops"
        f" at concurrency {cfg['concurrency']} (machine busy {_pct(rpc['machine_busy_share'])} / "
        f"{_pct(tx['machine_busy_share'])} during rpc / tx rounds)",
        "",
        f"  {'CPU ms per operation':<34} {'client':>8} {'server':>8} {'sum':>8} {'wall ops/s':>11}",
        f"  {'rpc  unary + JWT, start_server':<34} {_ms(rpc['client_ms']):>8} {_ms(rpc['server_ms']):>8}"
        f" {_ms(rpc['sum_ms']):>8} {rpc['ops_per_s']:>11.0f}",
        f"  {'tx   BEGIN, UPDATE 1 row, COMMIT':<34} {_ms(tx['client_ms']):>8} {_ms(tx['postgres_ms']):>8}"
        f" {_ms(tx['sum_ms']):>8} {tx['ops_per_s']:>11.0f}{pg_note}",
        f"  {'     the same on psycopg alone':<34} {_ms(pg['client_ms']):>8} {_ms(pg['postgres_ms']):>8}"
        f" {_ms(pg['sum_ms']):>8} {pg['ops_per_s']:>11.0f}",
        f"  SQLAlchemy's async layer: {report['sqlalchemy_client_ms_per_tx']:.3f} ms of the transaction's"
        f" {tx['client_ms']:.3f} ms of client CPU",
        "",
        f"  floor per checkout   {RPCS} rpc x {rpc['sum_ms']:.3f} + {TXS} tx x {tx['sum_ms']:.3f}"
        f" = {fl['floor_ms']:.1f} ms of CPU",
        f"  ceiling              {fl['cores']} cores x 1000 / {fl['floor_ms']:.1f} = {fl['ceiling_per_s']:.0f}"
        f" checkouts/s at 100% CPU, {fl['ceiling_at_70pct_per_s']:.0f}/s at {UTILISATION:.0%}",
        f"  at {TARGET_PER_S} checkouts/s   the floor alone takes {fl['cores_for_target']:.2f} of {fl['cores']} cores",
        f"  this is {UPPER_BOUND_NOTE}",
        "",
    ]
    return "\n".join(lines)


def _pct(share: float | None) -> str:
    return "?" if share is None else f"{share:.0%}"


# --------------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.floor",
        description="CPU floor of one Kassa RPC and one write transaction, and the checkout ceiling it implies.",
    )
    p.add_argument("--rounds", type=positive(int, 100), default=5, help="rounds per part; the median is reported (5)")
    p.add_argument("--ops", type=positive(int, 1_000_000), default=3000, help="operations per round (3000)")
    p.add_argument("--concurrency", type=positive(int, 256), default=8, help="operations in flight (8)")
    p.add_argument("--database-url", help="a running Postgres on loopback (default: start a private one)")
    p.add_argument("--postgres-pid", type=int, help="with --database-url: its postmaster, to count Postgres CPU")
    p.add_argument("--out", type=Path, help="JSON report (default: bench-results/floor-<UTC timestamp>.json)")
    p.add_argument("--time-limit", type=positive(float, 3600), default=300.0, help="bound of the whole run, s (300)")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    return p


def _require_loopback(url: str) -> None:
    if not is_loopback_host(urlsplit(url).hostname or "127.0.0.1"):
        raise UsageError("--database-url must point at this machine (a loopback address)")


def validate(args: argparse.Namespace) -> None:
    if args.postgres_pid is not None:
        if args.database_url is None:
            raise UsageError("--postgres-pid goes with --database-url (a private stack's pid is known)")
        try:
            comm = (_PROC / str(args.postgres_pid) / "comm").read_text().strip()
        except OSError:
            raise UsageError(f"--postgres-pid {args.postgres_pid}: no such process") from None
        if not comm.startswith("postgres"):
            raise UsageError(f"--postgres-pid {args.postgres_pid} is {comm!r}, not postgres")
    if args.database_url is not None:
        _require_loopback(args.database_url)


@contextmanager
def _database(args: argparse.Namespace, progress: Progress) -> Iterator[tuple[str, int | None, str]]:
    """(database URL, postmaster pid or None, description): the given one, or a private stack stopped after."""
    if args.database_url is not None:
        yield args.database_url, args.postgres_pid, "--database-url"
        return
    data_dir = Path(tempfile.mkdtemp(prefix="kassa-bench-floor-"))
    pg_port, redis_port, nats_port = free_ports(3)
    stack = LocalStack(data_dir, pg_port=pg_port, redis_port=redis_port, nats_port=nats_port, log=progress)
    try:
        progress("floor: starting a private stack on free loopback ports (only its Postgres is used) ...")
        endpoints = stack.start()
        yield endpoints.database_url, stack.pids["postgres"], "private stack"
    finally:
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def _run(
    args: argparse.Namespace, database_url: str, pg_pid: int | None, progress: Progress, *, deadline: float
) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM unwinds like Ctrl-C: the task is cancelled, so every finally (server, scratch schema) runs.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    async with asyncio.timeout(deadline - time.monotonic()):
        rpc = await rpc_rounds(args, progress)
        tx = await tx_rounds(args, database_url, pg_pid, progress)
    return {"rpc": rpc, "tx": tx}


def build_report(
    args: argparse.Namespace, *, started_at: datetime, where: str, pg_pid: int | None, rpc: list[Round], tx: TxResult
) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    rpc_part = {"method": METHOD, **part_summary(rpc, "server")}
    tx_part = {
        "statement": "BEGIN; UPDATE scratch SET n = n + 1 WHERE id = :id; COMMIT",
        **part_summary(tx.rounds, "postgres"),
        "scratch_schema": tx.schema,
        "verified": tx.verified,
        "scratch_dropped": tx.dropped,
    }
    driver_part = {
        "statement": "the same transaction on bare psycopg connections, one per worker (no SQLAlchemy)",
        **part_summary(tx.driver_rounds, "postgres"),
    }
    return {
        "schema": SCHEMA,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "config": {
            "rounds": args.rounds,
            "ops": args.ops,
            "concurrency": args.concurrency,
            "warmup_ops": min(WARMUP_OPS, args.ops),
            "time_limit_s": args.time_limit,
            "database": where,
            "postgres_pid": pg_pid,
        },
        "host": {
            "cores": cores,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_at_end": list(os.getloadavg()),
        },
        "rpc": rpc_part,
        "tx": tx_part,
        "tx_psycopg": driver_part,
        "sqlalchemy_client_ms_per_tx": _r(tx_part["client_ms"] - driver_part["client_ms"]),
        "floor": floor_figures(rpc_part["sum_ms"], tx_part["sum_ms"], cores),
    }


def run(args: argparse.Namespace) -> int:
    started_at = datetime.now(UTC)
    deadline = time.monotonic() + args.time_limit  # the private stack's start counts too

    def progress(message: str) -> None:
        if not args.no_progress:
            print(message, file=sys.stderr, flush=True)

    with _database(args, progress) as (database_url, pg_pid, where):
        measured = uvloop.run(_run(args, database_url, pg_pid, progress, deadline=deadline))
        # The loop closed its SIGTERM handler; plain SIGTERM must still unwind through the stack's cleanup.
        interrupt_on_sigterm()
    report = build_report(
        args, started_at=started_at, where=where, pg_pid=pg_pid, rpc=measured["rpc"], tx=measured["tx"]
    )
    default = default_out_path(started_at)
    path = write_report(report, args.out or default.with_name(f"floor-{default.name}"))
    print(format_table(report))
    print(f"  report written to {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.serve:
        uvloop.run(_serve(os.environ[_SECRET_ENV]))
        return 0
    interrupt_on_sigterm()
    try:
        validate(args)
        return run(args)
    except UsageError as exc:
        print(f"floor: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("floor: interrupted; everything it started has been stopped", file=sys.stderr)
        return 130
    except TimeoutError:
        print(f"floor: --time-limit {args.time_limit:g} s reached; everything it started has been stopped",
              file=sys.stderr)  # fmt: skip
        return 1


if __name__ == "__main__":
    sys.exit(main())
