"""``python -m bench.admission``: does admission control queue before it refuses, and refuse fast when it must?

Two scenarios over REST on a private stack (``bench.stack.own_stack``: Postgres, Redis, NATS and the
mesh on free loopback ports, stopped at the end), each buyer running the full checkout flow of
``bench.flow.RestCheckout`` (guest token, cart, items, start, state, preview, confirm):

* **flash sale**: ``--buyers`` (120) buyers race for one hot product with ``--hot-stock`` (50) units,
  ``--in-flight`` (40) of them at a time. Goal: no 503 at all. Sold-out answers are expected (there are
  more buyers than units) and the invariants must hold (no oversell, one order per session, ...).
* **overload**: the closed-loop maximum first (``--closed-concurrency`` buyers back to back for
  ``--closed-duration`` s; or ``--max-rate``), then open loop at ``--factor`` (10) times that rate for
  ``--overload-duration`` s. Goals: completed checkouts/s at least 90 % of the closed-loop maximum,
  refusals (503) answered with a p99 under 50 ms, every one of them with a Retry-After header.

Every buyer has an aiohttp session of its own, and each exchange is timed (from sending the request to its
response's headers), so a refusal's latency is what a client sees. That client is the load generator,
though: hundreds of buyers on one event loop, which lags at 10x overload, and its lag is in every latency it
measures. So during the overload ``bench.probe`` also asks for guest tokens (``--probe-rate`` a second) from a
process of its own with an idle loop, and the report gives its refusals' latency beside the buyers'. The goal is
still judged by the buyers'. Bounded: counts, durations and a drain bound; loopback only.

Exit status: 0 when every goal was met and every invariant passed, 1 otherwise, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from bench.args import interrupt_on_sigterm, positive
from bench.flow import FlowError, FlowOutcome, HttpExchange, RestCheckout
from bench.invariants import InvariantResult, RunFacts, check_settled, check_sql
from bench.seed import CatalogPlan, plan_catalog, seed_catalog
from bench.stack import Target, own_stack, require_loopback
from bench.stats import summarize

__all__ = ["Exchange", "Recorder", "build_parser", "main", "overload_verdict", "refusals"]

# The goals of issue 11, item 4.
GOAL_SHARE_OF_MAX = 0.90
GOAL_REFUSAL_P99_MS = 50.0
_RATE_LIMIT = "1000000000"  # the gateway's per-subject limit on, but never reached by the bench's guests


@dataclass(frozen=True)
class Exchange:
    """One HTTP request as the client saw it."""

    path: str
    status: int
    seconds: float
    retry_after: str | None
    who: str = ""  # a 503's ErrorInfo: who refused (the gateway or a service) and why


class Recorder:
    """Where every buyer reports its exchanges (``RestCheckout``'s ``on_exchange``); keeps the refused ones
    (status >= 400)."""

    def __init__(self) -> None:
        self.refused: list[Exchange] = []
        self.count = 0

    def record(self, exchange: HttpExchange) -> None:
        self.count += 1
        if exchange.status >= 400:
            who = _who(exchange.body) if exchange.status == 503 else ""
            self.refused.append(Exchange(exchange.path, exchange.status, exchange.seconds, exchange.retry_after, who))


def _who(body: bytes) -> str:
    """ "gateway: queue_delay" or "service: max_wait" from a 503's Status JSON; "" when it says neither."""
    try:
        status = json.loads(body)
        details = status.get("details") or [{}]
        why = details[0].get("metadata", {}).get("why", "")
        where = "gateway" if "gateway" in str(status.get("message", "")) else "service"
    except (ValueError, AttributeError, IndexError):
        return ""
    return f"{where}: {why}" if why else ""


def refusals(exchanges: Sequence[Exchange]) -> dict[str, Any]:
    """The 503s: how many, how fast (ms), how many without a usable Retry-After, and on which paths."""
    refused = [e for e in exchanges if e.status == 503]
    latency = summarize(e.seconds * 1000 for e in refused)
    without = sum(1 for e in refused if not (e.retry_after or "").isdigit())
    paths = Counter(_route(e.path) for e in refused)
    who = Counter(e.who or "other" for e in refused)
    return {
        "count": len(refused),
        "latency_ms": latency.as_dict(),
        "without_retry_after": without,
        "by_route": paths,
        "by_refuser": who,
    }


def _route(path: str) -> str:
    """/v1/carts/abc/items -> /v1/carts/{id}/items: refusals counted by route, not by cart."""
    parts = path.split("/")
    return "/".join("{id}" if i >= 3 and parts[i - 1] in ("carts", "sessions") else p for i, p in enumerate(parts))


def overload_verdict(*, max_rate: float, completed_rate: float, refused: Mapping[str, Any]) -> dict[str, Any]:
    """Whether the overload goals were met: share of the maximum, refusal p99, Retry-After on every refusal."""
    share = completed_rate / max_rate if max_rate > 0 else 0.0
    p99 = refused["latency_ms"]["p99"]
    goals = {
        "share_of_max": share >= GOAL_SHARE_OF_MAX,
        "refusal_p99": p99 is None or p99 < GOAL_REFUSAL_P99_MS,
        "retry_after_on_every_refusal": refused["without_retry_after"] == 0,
    }
    return {"share_of_max": round(share, 3), "goals": goals, "met": all(goals.values())}


@dataclass
class Tally:
    """Outcomes of the buyers of one scenario."""

    started: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    orders: list[tuple[str, str]] = field(default_factory=list)
    hot_units: Counter[str] = field(default_factory=Counter)
    last_finish_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"started": self.started, "completed": self.ok, "errors": dict(self.errors.most_common())}


class Buyers:
    """Runs checkouts, each buyer on a client (and connection) of its own, as real buyers are, and counts what
    became of them. (One client shared by hundreds of buyers in open loop stalled in its connection pool: the
    gateway answered a probe in milliseconds while the buyers' requests never left the pool.)"""

    def __init__(
        self, gateway_url: str, recorder: Recorder, *, timeout: float, plan: CatalogPlan, items: int, rng: random.Random
    ) -> None:
        self.url = gateway_url
        self._recorder = recorder
        self._timeout = timeout
        self._plan = plan
        self._items = items
        self._rng = rng

    def basket(self, *, hot: bool) -> list[str]:
        others = self._rng.sample(self._plan.skus, self._items - 1 if hot else self._items)
        return [self._rng.choice(self._plan.hot_skus), *others] if hot else others

    async def buy(self, tally: Tally, items: list[str], t0: float) -> None:
        tally.started += 1
        outcome = FlowOutcome()
        try:
            async with aiohttp.ClientSession(
                base_url=self.url, timeout=aiohttp.ClientTimeout(total=self._timeout)
            ) as client:
                await RestCheckout(client, timeout=self._timeout, on_exchange=self._recorder.record).run(items, outcome)
        except FlowError as exc:
            tally.errors[exc.key] += 1
        except asyncio.CancelledError:
            # Cut off at the drain bound: where it was waiting says who was slow.
            tally.errors[f"cancelled after: {next(reversed(outcome.steps), 'nothing')}"] += 1
            raise
        except Exception as exc:  # a malformed answer is counted, not fatal to the run
            tally.errors[f"flow: {type(exc).__name__}"] += 1
        else:
            tally.ok += 1
            tally.orders.append((outcome.session_id, outcome.order_id))
            tally.hot_units.update(s for s in items if s in self._plan.hot_skus)
        tally.last_finish_s = max(tally.last_finish_s, time.monotonic() - t0)


async def _bounded(tasks: set[asyncio.Task[None]], drain_s: float) -> int:
    """Wait for ``tasks`` up to ``drain_s``; cancel the rest and return how many were cancelled."""
    if not tasks:
        return 0
    _, pending = await asyncio.wait(tasks, timeout=drain_s)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5.0)
    return len(pending)


async def flash_sale(buyers: Buyers, recorder: Recorder, args: argparse.Namespace) -> dict[str, Any]:
    tally = Tally()
    seen = len(recorder.refused)
    gate = asyncio.Semaphore(args.in_flight)
    t0 = time.monotonic()

    async def one() -> None:
        async with gate:
            await buyers.buy(tally, buyers.basket(hot=True), t0)

    cancelled = await _bounded({asyncio.create_task(one()) for _ in range(args.buyers)}, args.time_limit)
    sold_out = sum(n for key, n in tally.errors.items() if "OUT_OF_STOCK" in key)
    refused = refusals(recorder.refused[seen:])
    return {
        "buyers": args.buyers,
        "in_flight": args.in_flight,
        "hot_stock": args.hot_stock,
        **tally.as_dict(),
        "sold_out": sold_out,
        "cancelled": cancelled,
        "seconds": round(time.monotonic() - t0, 2),
        "refusals_503": refused,
        "goal_zero_503": refused["count"] == 0 and cancelled == 0,
        "_tally": tally,
    }


async def closed_max(buyers: Buyers, args: argparse.Namespace) -> dict[str, Any]:
    """Checkouts/s with ``--closed-concurrency`` buyers back to back, after one unmeasured checkout each."""
    warm = Tally()
    await asyncio.gather(
        *(buyers.buy(warm, buyers.basket(hot=False), time.monotonic()) for _ in range(args.closed_concurrency))
    )
    tally = Tally()
    t0 = time.monotonic()
    deadline = t0 + args.closed_duration

    async def loop() -> None:
        while time.monotonic() < deadline:
            await buyers.buy(tally, buyers.basket(hot=False), t0)

    cancelled = await _bounded({asyncio.create_task(loop()) for _ in range(args.closed_concurrency)}, args.time_limit)
    window = max(args.closed_duration, tally.last_finish_s)
    return {
        "concurrency": args.closed_concurrency,
        "duration_s": args.closed_duration,
        **tally.as_dict(),
        "cancelled": cancelled,
        "checkouts_per_s": round(tally.ok / window, 2),
        "_tally": tally,
    }


async def open_overload(buyers: Buyers, recorder: Recorder, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    """Arrivals at ``rate`` per second for the duration, whether earlier ones finished or not; meanwhile
    ``bench.probe`` asks for guest tokens from a process of its own (``--probe-rate``)."""
    tally = Tally()
    seen = len(recorder.refused)
    tasks: set[asyncio.Task[None]] = set()
    dropped = 0
    arrivals = int(rate * args.overload_duration)
    probe = await Probe.start(buyers.url, args)
    try:
        t0 = time.monotonic()
        for j in range(arrivals):
            delay = t0 + j / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks = {t for t in tasks if not t.done()}
            if len(tasks) >= args.max_inflight:
                dropped += 1
                continue
            tasks.add(asyncio.create_task(buyers.buy(tally, buyers.basket(hot=False), t0)))
        offered_s = time.monotonic() - t0
        cancelled = await _bounded(tasks, args.drain)
        window = max(args.overload_duration, tally.last_finish_s)
        probed = await probe.result()
    finally:
        await probe.stop()  # cut short (Ctrl-C, SIGTERM): the probe stops with the run
    return {
        "rate": round(rate, 2),
        "duration_s": args.overload_duration,
        "arrivals": arrivals,
        "offered_per_s": round(arrivals / offered_s, 2) if offered_s > 0 else 0.0,
        "dropped_by_the_load_generator": dropped,
        **tally.as_dict(),
        "cancelled": cancelled,
        "completed_per_s": round(tally.ok / window, 2),
        "refusals_503": refusals(recorder.refused[seen:]),
        "probe": probed,
        "_tally": tally,
    }


class Probe:
    """``python -m bench.probe`` in a process of its own for the overload's duration: how fast new checkouts are
    answered, refused ones above all, when the client's own event loop is idle (the buyers' one lags)."""

    def __init__(self, process: asyncio.subprocess.Process, bound_s: float) -> None:
        self._process = process
        self._bound_s = bound_s

    @classmethod
    async def start(cls, gateway_url: str, args: argparse.Namespace) -> Probe:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.probe",
            gateway_url,
            f"--rate={args.probe_rate:g}",
            f"--duration={args.overload_duration:g}",
            f"--timeout={args.rpc_timeout:g}",
            stdout=asyncio.subprocess.PIPE,
        )
        # Its last request may be sent at the end of the duration and wait out its timeout; then a margin to start.
        return cls(process, args.overload_duration + args.rpc_timeout + 30.0)

    async def result(self) -> dict[str, Any]:
        """What the probe saw: its refusals' and admissions' latency (ms), other answers and errors; or why none."""
        try:
            out, _ = await asyncio.wait_for(self._process.communicate(), self._bound_s)
        except TimeoutError:
            await self.stop()
            return {"failed": f"no answer within {self._bound_s:g} s; killed"}
        if self._process.returncode != 0:
            return {"failed": f"exit status {self._process.returncode}"}
        return probe_summary(json.loads(out))

    @property
    def pid(self) -> int:
        return self._process.pid

    async def stop(self) -> None:
        """Kill the probe (by its own pid) if it is still running; nothing once it has exited."""
        if self._process.returncode is None:
            self._process.kill()
            await self._process.wait()


def probe_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """``bench.probe``'s answers summed up: refused (503) and admitted (200) latency, other statuses, errors."""
    answers = [(int(status), float(ms)) for status, ms in report["answers"]]
    return {
        "requests": len(answers) + sum(report["errors"].values()),
        "refused_ms": summarize(ms for status, ms in answers if status == 503).as_dict(),
        "admitted_ms": summarize(ms for status, ms in answers if status == 200).as_dict(),
        "other_statuses": dict(Counter(status for status, _ in answers if status not in {200, 503})),
        "errors": dict(report["errors"]),
    }


class LoopLag:
    """How late the load generator's own event loop runs (a ticker every 50 ms): when it lags, the client, not
    the mesh, is the bottleneck, and the latencies it measures include that lag."""

    def __init__(self, every_s: float = 0.05) -> None:
        self._every = every_s
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            planned = time.monotonic() + self._every
            await asyncio.sleep(self._every)
            self.samples.append(max(0.0, time.monotonic() - planned))

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()

    def summary(self) -> dict[str, float | int | None]:
        return summarize(s * 1000 for s in self.samples).as_dict()


async def _scenarios(
    target: Target, plan: CatalogPlan, args: argparse.Namespace, log: Callable[[str], object]
) -> dict[str, Any]:
    recorder = Recorder()
    rng = random.Random(args.random_seed)
    buyers = Buyers(target.gateway_url, recorder, timeout=args.rpc_timeout, plan=plan, items=args.items, rng=rng)
    out: dict[str, Any] = {}
    if "flash" in args.scenario:
        log(
            f"bench.admission: flash sale: {args.buyers} buyers, {args.in_flight} in flight, {args.hot_stock} units ..."
        )
        out["flash_sale"] = await flash_sale(buyers, recorder, args)
    if "overload" in args.scenario:
        if args.max_rate is None:
            log(
                f"bench.admission: closed-loop maximum: {args.closed_concurrency} buyers "
                f"for {args.closed_duration:g} s ..."
            )
            out["closed_loop"] = await closed_max(buyers, args)
            max_rate = float(out["closed_loop"]["checkouts_per_s"])
        else:
            max_rate = args.max_rate
        rate = max_rate * args.factor
        log(
            f"bench.admission: overload: open loop at {rate:.1f}/s ({args.factor:g} x {max_rate:.2f}) "
            f"for {args.overload_duration:g} s ..."
        )
        with LoopLag() as lag:
            overload = await open_overload(buyers, recorder, rate, args) if max_rate > 0 else {}
        if overload:
            overload["load_generator_lag_ms"] = lag.summary()
            overload["max_rate"] = max_rate
            overload["verdict"] = overload_verdict(
                max_rate=max_rate, completed_rate=overload["completed_per_s"], refused=overload["refusals_503"]
            )
        out["overload"] = overload
    return out


async def _invariants(target: Target, facts: RunFacts, settle_s: float) -> tuple[list[InvariantResult], float]:
    assert target.database_url is not None
    url = target.database_url

    async def check() -> list[InvariantResult]:
        return await asyncio.to_thread(check_sql, url, facts)

    return await check_settled(check, settle_s=settle_s)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.admission",
        description="Admission control under a flash sale and a 10x overload, over REST on a private stack.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--scenario", choices=("both", "flash", "overload"), default="both")
    p.add_argument("--buyers", type=positive(int, 10_000), default=120, help="flash sale: buyers")
    p.add_argument("--in-flight", type=positive(int, 1000), default=40, help="flash sale: buyers at a time")
    p.add_argument(
        "--hot-stock", type=positive(int, 1_000_000), default=50, help="flash sale: units of the hot product"
    )
    p.add_argument("--closed-concurrency", type=positive(int, 1000), default=16, help="overload: closed-loop buyers")
    p.add_argument("--closed-duration", type=positive(float, 600), default=20.0, help="overload: closed-loop seconds")
    p.add_argument("--max-rate", type=positive(float, 10_000), help="overload: checkouts/s to take as the maximum")
    p.add_argument("--factor", type=positive(float, 100), default=10.0, help="overload: times the maximum offered")
    p.add_argument("--overload-duration", type=positive(float, 600), default=20.0, help="overload: open-loop seconds")
    p.add_argument("--max-inflight", type=positive(int, 10_000), default=1000, help="overload: checkouts at once")
    p.add_argument(
        "--probe-rate",
        type=positive(float, 100),
        default=4.0,
        help="overload: guest tokens/s asked for by bench.probe, a client apart with an idle event loop",
    )
    p.add_argument("--drain", type=positive(float, 600), default=60.0, help="overload: wait for stragglers (s)")
    p.add_argument("--time-limit", type=positive(float, 3600), default=300.0, help="bound of a closed loop (s)")
    p.add_argument("--items", type=positive(int, 10), default=3, help="distinct skus per checkout")
    p.add_argument("--skus", type=positive(int, 100_000), default=1000, help="products to seed")
    p.add_argument("--rpc-timeout", type=positive(float, 600), default=30.0, help="bound of each request (s)")
    p.add_argument("--settle", type=positive(float, 600), default=30.0, help="retry failing invariants this long (s)")
    p.add_argument("--random-seed", type=int, help="seed of the item choice (default: random, recorded)")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KASSA_X=VALUE",
        help="extra environment of the mesh, e.g. KASSA_MAX_IN_FLIGHT=24 (repeatable)",
    )
    p.add_argument("--out", type=Path, help="JSON report (default: bench-results/admission-<UTC timestamp>.json)")
    p.add_argument("--keep-stack-dir", action="store_true", help="keep the private stack's files and logs")
    return p


def _extra_env(pairs: Sequence[str]) -> dict[str, str]:
    env = {"KASSA_RATE_LIMIT_PER_MINUTE": _RATE_LIMIT}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.startswith("KASSA_"):
            raise ValueError(f"--env wants KASSA_NAME=VALUE, got {pair!r}")
        env[name] = value
    return env


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _public(section: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if not k.startswith("_")}


def _summary(report: Mapping[str, Any]) -> str:
    lines = ["", "admission bench (REST, private stack; a shared machine: figures are noisy)"]
    flash = report.get("flash_sale")
    if flash:
        r = flash["refusals_503"]
        lines.append(
            f"  flash sale   {flash['buyers']} buyers, {flash['in_flight']} in flight, {flash['hot_stock']} units: "
            f"{flash['completed']} bought, {flash['sold_out']} sold out, 503s {r['count']} "
            f"({'goal met' if flash['goal_zero_503'] else 'GOAL MISSED'}), {flash['seconds']} s"
        )
        other = {k: v for k, v in flash["errors"].items() if "OUT_OF_STOCK" not in k}
        if other:
            lines.append(f"               other errors: {other}; 503s by refuser {dict(r['by_refuser'])}")
    closed = report.get("closed_loop")
    if closed:
        lines.append(f"  closed loop  {closed['concurrency']} buyers: {closed['checkouts_per_s']} checkouts/s")
    over = report.get("overload")
    if over:
        r = over["refusals_503"]
        lat = r["latency_ms"]
        v = over["verdict"]
        lines.append(
            f"  overload     {over['rate']}/s offered for {over['duration_s']:g} s: "
            f"{over['completed_per_s']} completed/s = "
            f"{v['share_of_max'] * 100:.0f} % of {over['max_rate']} (goal >= {GOAL_SHARE_OF_MAX * 100:.0f} %)"
        )
        lines.append(
            f"               503s {r['count']}: p50 {lat['p50']} ms, p99 {lat['p99']} ms "
            f"(goal < {GOAL_REFUSAL_P99_MS:g}), "
            f"without Retry-After {r['without_retry_after']}; by route {dict(r['by_route'])}, "
            f"by refuser {dict(r['by_refuser'])}"
        )
        lines.append(f"               goals {v['goals']}; errors {dict(list(over['errors'].items())[:6])}")
        lag = over["load_generator_lag_ms"]
        lines.append(
            f"               {over['started']} started, {over['cancelled']} cancelled at the drain bound; "
            f"load generator loop lag p50 {lag['p50']} ms, p99 {lag['p99']} ms"
        )
        lines.append(f"               {_probe_line(over.get('probe') or {})}")
    inv = report.get("invariants", [])
    lines.append(f"  invariants   {'all passed' if all(i['passed'] for i in inv) else 'FAILED'} ({len(inv)} checked)")
    for i in inv:
        if not i["passed"]:
            lines.append(f"               FAILED {i['name']}: {i['detail']}")
    lines.append(f"  result       {'PASS' if report['passed'] else 'FAIL'}")
    return "\n".join(lines)


def _probe_line(probe: Mapping[str, Any]) -> str:
    if "failed" in probe or not probe:
        return f"probe: {probe.get('failed', 'not run')}"
    refused, admitted = probe["refused_ms"], probe["admitted_ms"]
    return (
        f"probe (a client apart, idle loop): {probe['requests']} guest tokens asked, "
        f"{refused['count']} refused in p50 {refused['p50']} ms, p99 {refused['p99']} ms; "
        f"{admitted['count']} admitted in p50 {admitted['p50']} ms; other {probe['other_statuses']}, "
        f"errors {probe['errors']}"
    )


def run(args: argparse.Namespace) -> int:
    started_at = datetime.now(UTC)
    run_id = f"{started_at:%H%M%S}{secrets.token_hex(2)}".upper()
    if args.random_seed is None:
        args.random_seed = secrets.randbelow(2**31)
    with own_stack(log=_log, extra_env=_extra_env(args.env), keep_dir=args.keep_stack_dir) as target:
        require_loopback(target)
        plan = plan_catalog(f"ADM-{run_id}", args.skus, 1, hot_stock=args.hot_stock)
        seeded = uvloop.run(seed_catalog(target.env, plan, jwt_secret=target.jwt_secret))
        _log(f"bench.admission: seeded {seeded.products} products in {seeded.seconds:.1f} s")
        results = uvloop.run(_scenarios(target, plan, args, _log))
        tallies = [s["_tally"] for s in results.values() if s]
        _log("bench.admission: checking invariants ...")
        invariants, settled = uvloop.run(_invariants(target, RunFacts.of(plan, tallies), args.settle))
        _log("bench.admission: stopping the private stack ...")
    report: dict[str, Any] = {k: _public(v) for k, v in results.items()}
    report["invariants"] = [asdict(i) for i in invariants]
    report["invariants_settled_after_s"] = round(settled, 1)
    goals = [report["flash_sale"]["goal_zero_503"]] if "flash_sale" in report else []
    if report.get("overload"):
        goals.append(report["overload"]["verdict"]["met"])
    report["passed"] = all(goals) and all(i.passed for i in invariants)
    report["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report["started_at"] = started_at.isoformat()
    out = args.out or Path("bench-results") / f"admission-{started_at:%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(_summary(report))
    print(f"  report       {out}")
    return 0 if report["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.scenario = ("flash", "overload") if args.scenario == "both" else (args.scenario,)
    try:
        _extra_env(args.env)
    except ValueError as exc:
        parser.error(str(exc))
    # A plain `kill` must stop the private stack too: SIGTERM unwinds like Ctrl-C, through every cleanup.
    interrupt_on_sigterm()
    try:
        return run(args)
    except KeyboardInterrupt:
        print("bench.admission: interrupted; everything it started has been stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
