"""``python -m bench``: seed a large catalog, drive full checkouts, report throughput, latency, CPU and invariants.

Examples::

    python -m bench                                            # private stack, closed loop, 16 x gRPC, 30 s
    python -m bench --transport rest --mode open --rate 167 --duration 30
    python -m bench --use-running --checkout-addr 127.0.0.1:50051 --gateway-url http://127.0.0.1:8080 \\
        --checkouts 2000 --pids checkout=1234,order=1235

Exit status: 0 when checkouts completed and every invariant passed, 1 otherwise, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import sys
from contextlib import ExitStack
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench.args import interrupt_on_sigterm
from bench.cpu import CpuMeter
from bench.dbstats import DbStatsMeter, db_section
from bench.invariants import InvariantResult, RunFacts, check_grpc, check_settled, check_sql
from bench.load import LoadError, LoadRun, MeterGroup, WorkerSpec, run_load
from bench.report import aggregate, build_report, cpu_section, default_out_path, format_report, write_report
from bench.schedule import split_evenly, total_arrivals
from bench.seed import CatalogPlan, SeedResult, plan_catalog, seed_catalog
from bench.stack import Target, own_stack, require_loopback, running_target

_ADDR_FLAGS = ("checkout", "order", "payment", "warehouse", "pricing", "promotion")
_DEFAULT_DURATION_S = 30.0
_MAX_DURATION_S = 3600.0


class UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Full checkouts per second, latency and invariants of the Kassa mesh.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    where = p.add_argument_group("which stack (default: start a private one on free ports, stop it at the end)")
    where.add_argument(
        "--use-running", action="store_true", help="use a running mesh (addresses from flags or KASSA_*_ADDR)"
    )
    where.add_argument("--own-stack", action="store_true", help="start a private stack even when KASSA_*_ADDR is set")
    where.add_argument("--gateway-url", help="REST gateway of a running mesh, e.g. http://127.0.0.1:8080")
    for name in _ADDR_FLAGS:
        where.add_argument(f"--{name}-addr", metavar="HOST:PORT", help=f"{name} gRPC address of a running mesh")
    where.add_argument(
        "--jwt-secret", help="HS256 secret of a running mesh (default: $KASSA_JWT_SECRET or the dev secret)"
    )
    where.add_argument(
        "--database-url", help="read-only SQL for the invariants on a running mesh (default: $KASSA_DATABASE_URL)"
    )
    where.add_argument("--pids", metavar="NAME=PID,...", help="processes to account CPU to (default: found in /proc)")
    where.add_argument("--keep-stack-dir", action="store_true", help="keep the private stack's files and logs")
    where.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="private stack: processes of each gRPC service and of the gateway (CPU is summed per service)",
    )
    where.add_argument(
        "--trace-ratio",
        type=_ratio,
        default=1.0,
        help="share of checkouts a private mesh traces: 1 records every span, as `kassa up` does (default); "
        "0.1 is the production sampling README suggests; 0 records none",
    )
    where.add_argument(
        "--gateway-rate-limit",
        type=int,
        default=1_000_000_000,
        help="KASSA_RATE_LIMIT_PER_MINUTE of a private gateway: high, so guest tokens from one IP are not "
        "refused, but on, so its per-request Redis round trip is measured",
    )

    load = p.add_argument_group("load")
    load.add_argument("--transport", choices=("grpc", "rest"), default="grpc")
    load.add_argument("--mode", choices=("closed", "open"), default="closed")
    load.add_argument("--concurrency", type=int, default=16, help="closed loop: checkouts in flight")
    load.add_argument("--duration", type=float, help=f"seconds of load (default {_DEFAULT_DURATION_S:g})")
    load.add_argument("--checkouts", type=int, help="closed loop: stop after this many checkouts instead")
    load.add_argument("--rate", type=float, help="open loop: checkouts started per second")
    load.add_argument("--procs", type=int, default=min(2, os.cpu_count() or 1), help="load generator processes")
    load.add_argument("--items", type=int, default=3, help="distinct skus per checkout")
    load.add_argument("--warmup", type=int, default=5, help="unmeasured checkouts per process before the clock starts")
    load.add_argument("--rpc-timeout", type=float, default=30.0, help="deadline of each call (s)")
    load.add_argument(
        "--drain", type=float, default=60.0, help="wait at most this long for checkouts in flight at the end (s)"
    )
    load.add_argument("--time-limit", type=float, default=600.0, help="bound of a --checkouts run (s)")
    load.add_argument(
        "--max-inflight", type=int, default=1000, help="open loop: per process; arrivals beyond are dropped"
    )
    load.add_argument("--random-seed", type=int, help="seed of the item choice (default: random, recorded)")

    cat = p.add_argument_group("catalog")
    cat.add_argument("--skus", type=int, default=10_000, help="products to seed")
    cat.add_argument("--on-hand", type=int, default=1_000_000, help="stock of each sku in each warehouse")
    cat.add_argument("--hot-skus", type=int, default=5, help="skus with little stock that checkouts contend for")
    cat.add_argument("--hot-stock", type=int, default=50, help="stock of each hot sku")
    cat.add_argument("--hot-fraction", type=float, default=0.05, help="share of checkouts that include a hot sku")
    cat.add_argument("--seed-batch", type=int, default=500, help="products per UpsertProducts call")

    out = p.add_argument_group("report")
    out.add_argument("--out", type=Path, help="JSON report path (default: bench-results/<UTC timestamp>.json)")
    out.add_argument(
        "--invariants",
        choices=("auto", "sql", "grpc"),
        default="auto",
        help="how to check them: read-only SQL (needs a database URL), the admin gRPC APIs, or SQL when possible",
    )
    out.add_argument("--settle", type=float, default=30.0, help="retry failing invariants for up to this long (s)")
    out.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def validate(args: argparse.Namespace) -> None:
    """Refuse contradictory or unbounded options; fill in the defaults that depend on the mode."""
    if args.mode == "open":
        if args.rate is None or args.rate <= 0:
            raise UsageError("--mode open needs --rate > 0")
        if args.checkouts is not None:
            raise UsageError("--checkouts is for the closed loop; the open loop runs --rate for --duration")
    else:
        if args.rate is not None:
            raise UsageError("--rate is for --mode open")
        if args.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if args.checkouts is not None and args.duration is not None:
            raise UsageError("give --duration or --checkouts, not both")
        if args.checkouts is not None and args.checkouts < 1:
            raise UsageError("--checkouts must be at least 1")
    if args.duration is None and args.checkouts is None:
        args.duration = _DEFAULT_DURATION_S
    if args.duration is not None and not 0 < args.duration <= _MAX_DURATION_S:
        raise UsageError(f"--duration must be within (0, {_MAX_DURATION_S:g}] seconds")
    if not 0 < args.time_limit <= _MAX_DURATION_S:
        raise UsageError(f"--time-limit must be within (0, {_MAX_DURATION_S:g}] seconds")
    if not 1 <= args.procs <= 64:
        raise UsageError("--procs must be within 1..64")
    if args.items < 1 or args.skus < max(3, args.items):
        raise UsageError("--skus must be at least 3 and at least --items")
    if args.hot_skus < 0 or args.hot_stock < 0 or not 0 <= args.hot_fraction <= 1:
        raise UsageError("--hot-skus and --hot-stock must not be negative, --hot-fraction within 0..1")
    if not 1 <= args.replicas <= 8:
        raise UsageError("--replicas must be within 1..8")
    if args.replicas > 1 and _wants_running(args):
        raise UsageError("--replicas is for the private stack; a running mesh has the replicas it was started with")
    if args.warmup < 0 or args.drain < 0 or args.rpc_timeout <= 0 or args.max_inflight < 1:
        raise UsageError("--warmup and --drain must not be negative, --rpc-timeout and --max-inflight positive")


def worker_specs(
    args: argparse.Namespace, target: Target, plan: CatalogPlan, run_id: str, seed: int
) -> list[WorkerSpec]:
    procs = args.procs if args.mode == "open" else min(args.procs, args.concurrency)
    if args.checkouts is not None:
        procs = min(procs, args.checkouts)
    concurrency = split_evenly(args.concurrency, procs)
    checkouts = split_evenly(args.checkouts, procs) if args.checkouts is not None else [None] * procs
    return [
        WorkerSpec(
            index=i,
            procs=procs,
            mode=args.mode,
            transport=args.transport,
            checkout_addr=target.addr("checkout"),
            gateway_url=target.gateway_url,
            jwt_secret=target.jwt_secret,
            run_id=run_id,
            skus=plan.skus,
            hot_skus=plan.hot_skus,
            hot_fraction=args.hot_fraction,
            items=args.items,
            concurrency=concurrency[i],
            checkouts=checkouts[i],
            duration_s=args.duration,
            rate=args.rate,
            time_limit_s=args.time_limit,
            drain_s=args.drain,
            rpc_timeout_s=args.rpc_timeout,
            max_inflight=args.max_inflight,
            warmup=args.warmup,
            seed=seed,
        )
        for i in range(procs)
    ]


def _wants_running(args: argparse.Namespace) -> bool:
    if args.own_stack:
        return False
    flags = args.use_running or args.gateway_url or any(getattr(args, f"{n}_addr") for n in _ADDR_FLAGS)
    return bool(flags or os.environ.get("KASSA_CHECKOUT_ADDR") or os.environ.get("KASSA_GATEWAY_ADDR"))


def _log(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def _expected_checkouts(args: argparse.Namespace) -> int | None:
    if args.mode == "open":
        return total_arrivals(args.rate, args.duration)
    return args.checkouts


def _config(args: argparse.Namespace, seed: int, procs: int) -> dict[str, Any]:
    hidden = {"jwt_secret", "database_url", "out", "no_progress", "own_stack"}
    config = {k: v for k, v in vars(args).items() if k not in hidden}
    config.update(random_seed=seed, procs=procs)
    return config


def _ratio(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be within 0..1")
    return value


def _sampling(ratio: float) -> dict[str, str]:
    """The OpenTelemetry settings (infra.tracing) that trace ``ratio`` of the checkouts, whole."""
    if ratio == 0:
        return {"OTEL_TRACES_EXPORTER": "none"}
    if ratio == 1:
        return {}
    return {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": repr(ratio)}


def _target(args: argparse.Namespace, cleanup: ExitStack) -> Target:
    """The running mesh the options name, or a private stack that ``cleanup`` stops."""
    if not _wants_running(args):
        replicas = f", {args.replicas} replicas of each service" if args.replicas > 1 else ""
        _log(f"bench: starting a private stack (Postgres, Redis, NATS, the mesh{replicas}) on free ports ...")
        return cleanup.enter_context(
            own_stack(
                log=_log,
                extra_env={"KASSA_RATE_LIMIT_PER_MINUTE": str(args.gateway_rate_limit), **_sampling(args.trace_ratio)},
                keep_dir=args.keep_stack_dir,
                replicas=args.replicas,
            )
        )
    try:
        target = running_target(
            os.environ,
            addrs={n: getattr(args, f"{n}_addr") for n in _ADDR_FLAGS},
            gateway_url=args.gateway_url,
            jwt_secret=args.jwt_secret,
            database_url=args.database_url,
            pids=args.pids,
        )
        require_loopback(target)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.invariants == "sql" and not target.database_url:
        raise UsageError("--invariants sql needs --database-url (or $KASSA_DATABASE_URL)")
    _log(f"bench: using the running mesh (checkout {target.addr('checkout')}, gateway {target.gateway_url})")
    return target


def _seed(args: argparse.Namespace, target: Target, plan: CatalogPlan) -> SeedResult:
    bar = tqdm(total=None, desc="seeding", unit="row", disable=args.no_progress, file=sys.stderr)

    def seeded(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    with bar:
        result = asyncio.run(
            seed_catalog(target.env, plan, jwt_secret=target.jwt_secret, batch=args.seed_batch, on_progress=seeded)
        )
    _log(
        f"bench: seeded {result.products} products and {result.stock_rows} stock rows "
        f"(prefix {plan.prefix}) in {result.seconds:.1f} s"
    )
    return result


def _drive(args: argparse.Namespace, specs: list[WorkerSpec], meters: MeterGroup) -> LoadRun:
    bar = tqdm(total=_expected_checkouts(args), desc="checkouts", unit="chk", disable=args.no_progress, file=sys.stderr)

    def ready() -> None:
        _log(f"bench: {len(specs)} load processes ready; {args.mode} loop over {args.transport} starts")

    def advance(ok: int, failed: int) -> None:
        bar.n = ok
        bar.set_postfix(failed=failed, refresh=False)
        bar.refresh()

    with bar:
        return run_load(specs, meter=meters, on_ready=ready, on_progress=advance)


def _check(args: argparse.Namespace, target: Target, facts: RunFacts) -> tuple[list[InvariantResult], float, str]:
    """The invariants (retried while they settle), and how they were checked."""
    _log("bench: checking invariants ...")
    database_url = target.database_url if args.invariants != "grpc" else None

    async def check() -> list[InvariantResult]:
        if database_url:
            return await asyncio.to_thread(check_sql, database_url, facts)
        return await check_grpc(target.env, target.jwt_secret, facts)

    results, settled = asyncio.run(check_settled(check, settle_s=args.settle))
    return results, settled, "read-only SQL" if database_url else "admin/service gRPC APIs"


def _stack_info(target: Target) -> dict[str, Any]:
    return {
        "self_started": target.self_started,
        "addresses": {k: v for k, v in sorted(target.env.items()) if k.endswith("_ADDR")},
        "gateway_url": target.gateway_url,
        "pids": target.pids,
        "notes": target.notes,
        "host": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_at_end": list(os.getloadavg()),
        },
    }


def run(args: argparse.Namespace) -> int:
    """Stack, catalog, load, measurements, invariants, report; the private stack is stopped on the way out."""
    started_at = datetime.now(UTC)
    run_id = f"{started_at:%H%M%S}{secrets.token_hex(2)}".upper()
    seed = args.random_seed if args.random_seed is not None else secrets.randbelow(2**31)
    with ExitStack() as cleanup:
        target = _target(args, cleanup)
        plan = plan_catalog(f"BENCH-{run_id}", args.skus, args.hot_skus, on_hand=args.on_hand, hot_stock=args.hot_stock)
        seeded = _seed(args, target, plan)

        specs = worker_specs(args, target, plan, run_id, seed)
        cpu_meter = CpuMeter(target.pids)
        db_meter = DbStatsMeter(target.database_url) if target.database_url else None
        loaded = _drive(args, specs, MeterGroup(cpu_meter, *([db_meter] if db_meter else [])))
        measured = aggregate(
            loaded.results, mode=args.mode, duration_s=args.duration, rate=args.rate, elapsed_s=loaded.elapsed_s
        )
        completed = measured["load"]["completed"]
        cpu = cpu_section(
            cpu_meter.seconds(),
            pids=target.pids,
            checkouts=completed,
            elapsed_s=loaded.elapsed_s,
            machine_busy_share=cpu_meter.machine_busy_share(),
            cores=os.cpu_count() or 1,
            loadgen_cpu_s=measured["load"]["loadgen_cpu_s"],
        )
        invariants, settled, source = _check(args, target, RunFacts.of(plan, loaded.results))

        report = build_report(
            started_at=started_at,
            finished_at=datetime.now(UTC),
            config=_config(args, seed, len(specs)),
            stack=_stack_info(target),
            seed={**asdict(seeded), **asdict(plan), "skus": len(plan.skus), "hot_skus": list(plan.hot_skus)},
            measured=measured,
            cpu=cpu,
            database=db_section(db_meter.delta(), completed) if db_meter else None,
            invariants=invariants,
            settled_after_s=settled,
            invariant_source=source,
        )
        path = write_report(report, args.out or default_out_path(started_at))
        passed = report["invariants"]["passed"] and completed > 0
        print(format_report(report))
        print(f"  result       {'PASS' if passed else 'FAIL'}   report written to {path}")
        if target.self_started:
            _log("bench: stopping the private stack ...")
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A plain `kill` must stop the private stack too: SIGTERM unwinds like Ctrl-C, through every cleanup.
    interrupt_on_sigterm()
    try:
        validate(args)
        return run(args)
    except KeyboardInterrupt:
        print("bench: interrupted; everything it started has been stopped", file=sys.stderr)
        return 130
    except UsageError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except LoadError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
