"""``python -m bench.warehouse``: ReserveStock throughput and latency of the warehouse alone, spread vs hot.

What it answers: how many 3-line ReserveStock calls per second one warehouse process sustains, and what
row contention costs. It starts a private local stack (Postgres, Redis, NATS on free loopback ports in a
temporary directory), migrates only the warehouse schema, runs ``python -m warehouse`` as a child on a
free port, seeds 10,000 skus over 3 warehouses plus 10 hot skus with huge stock, and then drives closed
loop load from separate client processes in two scenarios, one after the other:

- ``spread``: each cart takes 3 distinct skus drawn from the 10,000 (little contention): the baseline;
- ``hot``: each cart takes 3 of the 10 hot skus (every call fights over the same few stock rows).

Every successful reservation is released right away (untimed) so stock never runs out; only the
ReserveStock calls are timed. Each scenario has a short unrecorded warm-up. The figures are printed and
written to ``bench-results/warehouse-<timestamp>.json``, with hot/spread ratios measured in the same run
(absolute numbers depend on the machine; the ratios are what compares across machines). Everything it
started is stopped by pid at the end, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import queue
import random
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import uvloop

from bench.args import positive
from bench.stats import summarize
from devstack.localstack import LocalStack, free_ports
from devstack.mesh import Mesh, ProcessSpec, mesh_env
from infra.auth import ROLE_ADMIN, mint_service_token, mint_token
from infra.grpc_errors import error_info
from infra.migrate import migrate
from kassa.common.v1 import address_pb2
from kassa.warehouse.v1 import inventory_pb2
from kassa.warehouse.v1 import inventory_service_pb2 as pb
from kassa.warehouse.v1.inventory_service_pb2_grpc import InventoryServiceStub

__all__ = ["LoadSpec", "ScenarioResult", "main"]

SCENARIOS = ("spread", "hot")
WAREHOUSES = (("bw-us", "US", "Reno"), ("bw-de", "DE", "Leipzig"), ("bw-sg", "SG", "Singapore"))
LINES_PER_CART = 3
SET_STOCK_BATCH = 1000  # the service's limit of items per request
SPREAD_ON_HAND = 10_000
HOT_ON_HAND = 100_000_000
CALL_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 60.0


def spread_sku(i: int) -> str:
    return f"bw-{i:05d}"


def hot_sku(i: int) -> str:
    return f"bw-hot-{i:02d}"


# --------------------------------------------------------------------------------------------------
# seeding


def stock_plan(skus: int, hot_skus: int) -> list[tuple[str, str, int]]:
    """(sku, warehouse_id, on_hand): sku i in warehouse i % 3, every 5th also in the next one (so some
    carts split across warehouses); the hot skus in all three."""
    ids = [w for w, _, _ in WAREHOUSES]
    items = [(spread_sku(i), ids[i % 3], SPREAD_ON_HAND) for i in range(skus)]
    items += [(spread_sku(i), ids[(i + 1) % 3], SPREAD_ON_HAND) for i in range(0, skus, 5)]
    items += [(hot_sku(i), w, HOT_ON_HAND) for i in range(hot_skus) for w in ids]
    return items


async def seed(addr: str, admin_token: str, skus: int, hot_skus: int) -> int:
    """Warehouses and stock through the admin RPCs; returns the number of stock rows written."""
    md = (("authorization", f"Bearer {admin_token}"),)
    items = stock_plan(skus, hot_skus)
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = InventoryServiceStub(channel)
        await stub.UpsertWarehouses(
            pb.UpsertWarehousesRequest(
                warehouses=[
                    inventory_pb2.Warehouse(
                        warehouse_id=w,
                        name=f"Bench {city}",
                        address=address_pb2.Address(name=city, line1="1 Bench Way", city=city, country_code=cc),
                    )
                    for w, cc, city in WAREHOUSES
                ]
            ),
            metadata=md,
            timeout=30,
        )
        for start in range(0, len(items), SET_STOCK_BATCH):
            batch = items[start : start + SET_STOCK_BATCH]
            await stub.SetStock(
                pb.SetStockRequest(items=[pb.StockSetting(sku=s, warehouse_id=w, on_hand=n) for s, w, n in batch]),
                metadata=md,
                timeout=60,
            )
    return len(items)


# --------------------------------------------------------------------------------------------------
# load generator processes


@dataclass(frozen=True)
class LoadSpec:
    """One client process of one scenario."""

    index: int
    scenario: str
    addr: str
    token: str
    skus: int
    hot_skus: int
    concurrency: int
    warmup_s: float
    duration_s: float
    max_calls: int
    seed: int


@dataclass
class ClientResult:
    index: int
    calls: int
    latencies_ms: list[float]
    errors: dict[str, int]
    elapsed_s: float


def _pool(spec: LoadSpec) -> list[str]:
    if spec.scenario == "hot":
        return [hot_sku(i) for i in range(spec.hot_skus)]
    return [spread_sku(i) for i in range(spec.skus)]


async def _client(spec: LoadSpec, ready: Any, go: Any) -> ClientResult:
    rnd = random.Random(spec.seed)
    pool = _pool(spec)
    md = (("authorization", f"Bearer {spec.token}"),)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    run_id = uuid.uuid4().hex[:8]
    async with grpc.aio.insecure_channel(spec.addr) as channel:
        await asyncio.wait_for(channel.channel_ready(), READY_TIMEOUT_S)
        stub = InventoryServiceStub(channel)
        ready.put(("ready", spec.index, None))
        await asyncio.to_thread(go.wait, READY_TIMEOUT_S)
        start = time.monotonic()
        record_from = start + spec.warmup_s
        stop_at = record_from + spec.duration_s
        counter = iter(range(spec.max_calls))

        async def loop(worker: int) -> None:
            for n in counter:
                now = time.monotonic()
                if now >= stop_at:
                    return
                ref = f"bench-{run_id}-{spec.index}-{worker}-{n}"
                lines = [pb.ReserveLine(sku=s, quantity=rnd.randint(1, 3)) for s in rnd.sample(pool, LINES_PER_CART)]
                began = time.perf_counter()
                try:
                    await stub.ReserveStock(
                        pb.ReserveStockRequest(reservation_ref=ref, lines=lines), metadata=md, timeout=CALL_TIMEOUT_S
                    )
                except grpc.aio.AioRpcError as err:
                    took = time.perf_counter() - began
                    if now >= record_from:
                        info = error_info(err)
                        errors[f"{err.code().name}:{info.reason if info else '-'}"] += 1
                        latencies.append(took * 1000)
                    continue
                took = time.perf_counter() - began
                if now >= record_from:
                    latencies.append(took * 1000)
                # Untimed: give the units back so the run never drains the stock.
                try:
                    await stub.ReleaseReservations(
                        pb.ReleaseReservationsRequest(reservation_ref=ref, reason="bench"),
                        metadata=md,
                        timeout=CALL_TIMEOUT_S,
                    )
                except grpc.aio.AioRpcError as err:
                    errors[f"release {err.code().name}"] += 1

        await asyncio.gather(*(loop(w) for w in range(spec.concurrency)))
        elapsed = min(time.monotonic(), stop_at) - record_from
    return ClientResult(spec.index, len(latencies), latencies, dict(errors), max(elapsed, 1e-9))


def client_main(spec: LoadSpec, results: Any, go: Any) -> None:
    """Entry point of a client process: always reports a result or its traceback."""
    try:
        result = uvloop.run(_client(spec, results, go))
    except BaseException:
        results.put(("error", spec.index, traceback.format_exc()))
        raise SystemExit(1) from None
    results.put(("result", spec.index, result))


def run_scenario(specs: Sequence[LoadSpec]) -> list[ClientResult]:
    """Start the client processes, release them together, collect their results; stop them by pid."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    go = ctx.Event()
    procs = [ctx.Process(target=client_main, args=(s, results, go), daemon=True) for s in specs]
    bound = max(s.warmup_s + s.duration_s for s in specs) + CALL_TIMEOUT_S * 2 + 30
    collected: dict[int, ClientResult] = {}
    try:
        for p in procs:
            p.start()
        ready: set[int] = set()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while len(ready) < len(procs) or len(collected) < len(procs):
            if len(ready) == len(procs) and not go.is_set():
                go.set()
                deadline = time.monotonic() + bound
            try:
                kind, index, payload = results.get(timeout=max(0.1, min(1.0, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise TimeoutError("load generators did not finish in time") from None
                continue
            if kind == "error":
                raise RuntimeError(f"load generator {index} failed:\n{payload}")
            if kind == "ready":
                ready.add(index)
            else:
                collected[index] = payload
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
        results.close()
    return [collected[i] for i in sorted(collected)]


# --------------------------------------------------------------------------------------------------
# figures


@dataclass
class ScenarioResult:
    scenario: str
    calls: int
    calls_per_s: float
    latency_ms: dict[str, float | int | None]
    errors: dict[str, int]
    per_process_calls: list[int]


def summarize_scenario(scenario: str, clients: Sequence[ClientResult]) -> ScenarioResult:
    latencies = [ms for c in clients for ms in c.latencies_ms]
    errors: Counter[str] = Counter()
    for c in clients:
        errors.update(c.errors)
    elapsed = max(c.elapsed_s for c in clients)
    return ScenarioResult(
        scenario=scenario,
        calls=len(latencies),
        calls_per_s=round(len(latencies) / elapsed, 1),
        latency_ms=summarize(latencies).as_dict(),
        errors=dict(sorted(errors.items())),
        per_process_calls=[c.calls for c in clients],
    )


def ratios(hot: ScenarioResult, spread: ScenarioResult) -> dict[str, float | None]:
    """hot / spread for throughput and each latency percentile (the spread run is the baseline)."""

    def ratio(a: float | int | None, b: float | int | None) -> float | None:
        return round(a / b, 2) if a is not None and b else None

    out = {"calls_per_s": ratio(hot.calls_per_s, spread.calls_per_s)}
    for p in ("p50", "p95", "p99"):
        out[p] = ratio(hot.latency_ms[p], spread.latency_ms[p])
    return out


def print_report(results: Sequence[ScenarioResult], hot_vs_spread: dict[str, float | None]) -> None:
    print()
    print(f"  {'scenario':<10} {'calls':>8} {'calls/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}  errors")
    for r in results:
        lat = r.latency_ms
        errors = ", ".join(f"{k} x{v}" for k, v in r.errors.items()) or "none"
        print(
            f"  {r.scenario:<10} {r.calls:>8} {r.calls_per_s:>9.1f} {lat['p50'] or 0:>8.2f} {lat['p95'] or 0:>8.2f}"
            f" {lat['p99'] or 0:>8.2f}  {errors}"
        )
    fmt = {k: "n/a" if v is None else f"{v:.2f}" for k, v in hot_vs_spread.items()}
    print(
        f"  {'hot/spread':<10} {'':>8} {fmt['calls_per_s']:>9} {fmt['p50']:>8} {fmt['p95']:>8} {fmt['p99']:>8}"
        "  (ratios against the spread baseline of this run)"
    )
    print()


# --------------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.warehouse", description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=positive(int, 32), default=4, help="client processes (default 4)")
    parser.add_argument("--duration", type=positive(float, 600), default=20.0, help="seconds per scenario (20)")
    parser.add_argument("--warmup", type=positive(float, 60), default=2.0, help="unrecorded seconds first (2)")
    parser.add_argument("--concurrency", type=positive(int, 256), default=8, help="calls in flight per process (8)")
    parser.add_argument("--skus", type=positive(int, 100_000), default=10_000, help="spread skus (10000)")
    parser.add_argument("--hot-skus", type=positive(int, 1000), default=10, help="hot skus (10)")
    parser.add_argument(
        "--max-calls", type=positive(int, 10_000_000), default=1_000_000, help="cap per process and scenario"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of the carts (1)")
    parser.add_argument("--out-dir", default="bench-results", help="where the JSON goes (bench-results)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.hot_skus < LINES_PER_CART or args.skus < LINES_PER_CART:
        print(f"bench.warehouse: --skus and --hot-skus must be at least {LINES_PER_CART}", file=sys.stderr)
        return 2
    data_dir = Path(tempfile.mkdtemp(prefix="kassa-bench-warehouse-"))
    pg_port, redis_port, nats_port, wh_port = free_ports(4)
    stack = LocalStack(data_dir / "stack", pg_port=pg_port, redis_port=redis_port, nats_port=nats_port)
    mesh: Mesh | None = None
    started = datetime.now(UTC)
    try:
        endpoints = stack.start()
        migrate(endpoints.database_url, ["warehouse"])
        env = mesh_env(endpoints, {"warehouse": wh_port})
        addr = env["KASSA_WAREHOUSE_ADDR"]
        spec = ProcessSpec("warehouse", (sys.executable, "-m", "warehouse"), addr)
        mesh = Mesh(env, data_dir / "logs", specs=[spec])
        mesh.start()
        secret = env["KASSA_JWT_SECRET"]
        began = time.monotonic()
        rows = asyncio.run(seed(addr, mint_token(secret, "bench-admin", role=ROLE_ADMIN), args.skus, args.hot_skus))
        print(f"seeded {rows} stock rows ({args.skus} skus + {args.hot_skus} hot) in {time.monotonic() - began:.1f}s")
        token = mint_service_token(env["KASSA_SERVICE_SECRET"], "bench")
        results: list[ScenarioResult] = []
        for n, scenario in enumerate(SCENARIOS):
            print(f"{scenario}: {args.processes} processes x {args.concurrency} in flight for {args.duration:g}s ...")
            specs = [
                LoadSpec(
                    index=i,
                    scenario=scenario,
                    addr=addr,
                    token=token,
                    skus=args.skus,
                    hot_skus=args.hot_skus,
                    concurrency=args.concurrency,
                    warmup_s=args.warmup,
                    duration_s=args.duration,
                    max_calls=args.max_calls,
                    seed=args.seed * 1000 + n * 100 + i,
                )
                for i in range(args.processes)
            ]
            results.append(summarize_scenario(scenario, run_scenario(specs)))
        spread, hot = results
        hot_vs_spread = ratios(hot, spread)
        print_report(results, hot_vs_spread)
        out = write_json(Path(args.out_dir), started, args, results, hot_vs_spread)
        print(f"wrote {out}")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; stopping", file=sys.stderr)
        return 130
    finally:
        if mesh is not None:
            mesh.stop()
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def write_json(
    out_dir: Path,
    started: datetime,
    args: argparse.Namespace,
    results: Sequence[ScenarioResult],
    hot_vs_spread: dict[str, float | None],
) -> Path:
    """bench-results/warehouse-<start timestamp>.json: config, machine, per-scenario figures, ratios."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"warehouse-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    document = {
        "bench": "warehouse",
        "started_at": started.isoformat(),
        "config": {k: v for k, v in vars(args).items() if k != "out_dir"} | {"lines_per_cart": LINES_PER_CART},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "scenarios": {r.scenario: asdict(r) for r in results},
        "ratios": {"hot/spread": hot_vs_spread},
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


if __name__ == "__main__":
    sys.exit(main())
