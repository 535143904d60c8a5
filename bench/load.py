"""The load generator: worker processes apart from the mesh, each an asyncio (uvloop) loop.

Parent side: :func:`run_load` spawns one process per :class:`WorkerSpec`, waits until every one has
its channel (or aiohttp session) open and its warm-up checkouts done, then gives all of them the same
start time on the system-wide monotonic clock, feeds a progress callback from shared counters and
collects one :class:`WorkerResult` per process. It never waits unboundedly: a worker that does not
get ready, or does not report within the run's time bound, is terminated (by its own Process handle).

Worker side, two modes:

* closed loop: ``concurrency`` tasks, each running checkouts back to back until the duration is
  over or the worker's share of ``--checkouts`` is used up: the maximum the mesh sustains;
* open loop: checkouts start at the scheduled times of :func:`bench.schedule.arrival_times`,
  whether or not earlier ones finished; latency is measured from the scheduled start, so queueing
  in the load generator or the mesh shows in it, and lateness of the start itself is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import queue
import random
import resource
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from typing import Any, Literal, Protocol

import aiohttp
import uvloop

from bench.flow import CheckoutFlow, FlowError, FlowOutcome, GrpcCheckout, RestCheckout
from bench.schedule import LATE_THRESHOLD_S, arrival_times

__all__ = ["LoadError", "LoadRun", "Meter", "MeterGroup", "WorkerResult", "WorkerSpec", "run_load"]

Mode = Literal["closed", "open"]
Transport = Literal["grpc", "rest"]

_READY_TIMEOUT_S = 120.0
_START_DELAY_S = 0.25
_PROGRESS_EVERY_S = 0.2


class LoadError(RuntimeError):
    """A load generator process could not start or did not report."""


@dataclass(frozen=True)
class WorkerSpec:
    """Everything one load generator process needs; pickled to it."""

    index: int
    procs: int
    mode: Mode
    transport: Transport
    checkout_addr: str
    gateway_url: str
    jwt_secret: str
    run_id: str
    skus: tuple[str, ...]
    hot_skus: tuple[str, ...] = ()
    hot_fraction: float = 0.0
    items: int = 3
    concurrency: int = 1
    checkouts: int | None = None
    duration_s: float | None = None
    rate: float | None = None
    time_limit_s: float = 600.0
    drain_s: float = 60.0
    rpc_timeout_s: float = 30.0
    max_inflight: int = 1000
    warmup: int = 0
    seed: int = 0


@dataclass
class WorkerResult:
    """What one process measured. Times are seconds from the common start; latencies in ms."""

    index: int
    pid: int
    started: int = 0
    ok: int = 0
    failed: int = 0
    cancelled: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    confirm_ms: list[float] = field(default_factory=list)
    flow_ms: list[float] = field(default_factory=list)
    step_ms: dict[str, list[float]] = field(default_factory=dict)
    ok_at_s: list[float] = field(default_factory=list)
    finished_at_s: list[float] = field(default_factory=list)
    orders: list[tuple[str, str]] = field(default_factory=list)  # (session_id, order_id) of confirmed checkouts
    hot_units: Counter[str] = field(default_factory=Counter)  # units of hot skus in confirmed checkouts
    arrivals: int = 0
    late_starts: int = 0
    max_lateness_ms: float = 0.0
    dropped: int = 0
    cpu_s: float = 0.0
    warmup_errors: Counter[str] = field(default_factory=Counter)


class Meter(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


class MeterGroup:
    """Several meters started and stopped together, at the common start and after the last report."""

    def __init__(self, *meters: Meter) -> None:
        self.meters = meters

    def start(self) -> None:
        for meter in self.meters:
            meter.start()

    def stop(self) -> None:
        for meter in self.meters:
            meter.stop()


@dataclass(frozen=True)
class LoadRun:
    results: list[WorkerResult]
    elapsed_s: float  # from the common start until the last worker reported


# --------------------------------------------------------------------------------------------------
# worker side


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Worker:
    def __init__(
        self,
        spec: WorkerSpec,
        flow: CheckoutFlow,
        ok_count: Synchronized[int],
        fail_count: Synchronized[int],
    ) -> None:
        self.spec = spec
        self.flow = flow
        self.rng = random.Random(spec.seed * 1009 + spec.index)
        self.result = WorkerResult(index=spec.index, pid=0)
        self._ok_count = ok_count
        self._fail_count = fail_count
        self._t0 = 0.0
        self._inflight = 0
        self._tickets = spec.checkouts

    def pick_items(self, *, allow_hot: bool = True) -> list[str]:
        spec = self.spec
        if allow_hot and spec.hot_skus and self.rng.random() < spec.hot_fraction:
            return [self.rng.choice(spec.hot_skus), *self.rng.sample(spec.skus, spec.items - 1)]
        return self.rng.sample(spec.skus, spec.items)

    async def warm_up(self) -> None:
        """A few checkouts before the clock starts, so connection pools are open on every hop."""
        for _ in range(self.spec.warmup):
            try:
                await self.flow.run(self.pick_items(allow_hot=False), FlowOutcome())
            except FlowError as exc:
                self.result.warmup_errors[exc.key] += 1

    async def one(self, scheduled: float | None) -> None:
        res = self.result
        begun = time.monotonic()
        if scheduled is not None:
            lateness = begun - scheduled
            res.max_lateness_ms = max(res.max_lateness_ms, lateness * 1000)
            if lateness > LATE_THRESHOLD_S:
                res.late_starts += 1
        base = begun if scheduled is None else scheduled
        items = self.pick_items()
        outcome = FlowOutcome()
        res.started += 1
        self._inflight += 1
        try:
            await self.flow.run(items, outcome)
        except FlowError as exc:
            res.errors[exc.key] += 1
            self._failed()
        except Exception as exc:  # a malformed answer must not end the loop: count it and go on
            res.errors[f"flow: {type(exc).__name__}"] += 1
            self._failed()
        else:
            end = time.monotonic()
            res.ok += 1
            res.flow_ms.append((end - base) * 1000)
            res.confirm_ms.append(outcome.confirm_s * 1000)
            res.ok_at_s.append(end - self._t0)
            res.finished_at_s.append(end - self._t0)
            res.orders.append((outcome.session_id, outcome.order_id))
            for sku in items:
                if sku in self.spec.hot_skus:
                    res.hot_units[sku] += 1
            with self._ok_count.get_lock():
                self._ok_count.value += 1
        finally:
            self._inflight -= 1
            for step, seconds in outcome.steps.items():
                res.step_ms.setdefault(step, []).extend(s * 1000 for s in seconds)

    def _failed(self) -> None:
        self.result.failed += 1
        self.result.finished_at_s.append(time.monotonic() - self._t0)
        with self._fail_count.get_lock():
            self._fail_count.value += 1

    def _take_ticket(self) -> bool:
        if self._tickets is None:
            return True
        if self._tickets <= 0:
            return False
        self._tickets -= 1
        return True

    async def _drain(self, tasks: set[asyncio.Task[None]]) -> None:
        """Wait for in-flight checkouts up to the drain bound; cancel and count whatever is left."""
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=self.spec.drain_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)
        self.result.cancelled += len(pending)

    async def closed_loop(self, t0: float) -> None:
        spec = self.spec
        deadline = t0 + (spec.duration_s if spec.duration_s is not None else spec.time_limit_s)

        async def loop() -> None:
            while time.monotonic() < deadline and self._take_ticket():
                await self.one(None)

        tasks = {asyncio.create_task(loop()) for _ in range(spec.concurrency)}
        await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
        await self._drain({t for t in tasks if not t.done()})

    async def open_loop(self, t0: float) -> None:
        spec = self.spec
        assert spec.rate is not None and spec.duration_s is not None
        tasks: set[asyncio.Task[None]] = set()
        for offset in arrival_times(spec.rate, spec.duration_s, spec.procs, spec.index):
            scheduled = t0 + offset
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.result.arrivals += 1
            if self._inflight >= spec.max_inflight:
                self.result.dropped += 1
                continue
            task = asyncio.create_task(self.one(scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await self._drain(set(tasks))

    async def measure(self, t0: float) -> None:
        self._t0 = t0
        delay = t0 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        cpu_before = _cpu_seconds()
        if self.spec.mode == "open":
            await self.open_loop(t0)
        else:
            await self.closed_loop(t0)
        self.result.cpu_s = _cpu_seconds() - cpu_before


@dataclass(frozen=True)
class _Shared:
    """What the parent and every worker share: the result queue, progress counters and the start signal."""

    results: multiprocessing.Queue[tuple[Any, ...]]
    ok_count: Synchronized[int]
    fail_count: Synchronized[int]
    go: Any  # multiprocessing.Event
    go_at: Synchronized[float]


async def _worker_async(spec: WorkerSpec, shared: _Shared) -> WorkerResult:
    async with contextlib.AsyncExitStack() as stack:
        flow: CheckoutFlow
        if spec.transport == "grpc":
            # Checkout's replicas (a list of addresses) share the calls, as they share the mesh's own.
            grpc_flow = GrpcCheckout(
                spec.checkout_addr, spec.jwt_secret, subject_prefix=f"bench-{spec.run_id}", timeout=spec.rpc_timeout_s
            )
            stack.push_async_callback(grpc_flow.kassa.close)
            flow = grpc_flow
        else:
            connections = spec.concurrency if spec.mode == "closed" else min(spec.max_inflight, 256)
            client = aiohttp.ClientSession(
                base_url=spec.gateway_url,
                timeout=aiohttp.ClientTimeout(total=spec.rpc_timeout_s),
                connector=aiohttp.TCPConnector(limit=connections),
            )
            stack.push_async_callback(client.close)
            flow = RestCheckout(client, timeout=spec.rpc_timeout_s)
        worker = _Worker(spec, flow, shared.ok_count, shared.fail_count)
        worker.result.pid = multiprocessing.current_process().pid or 0
        await worker.warm_up()
        shared.results.put(("ready", spec.index))
        started = await asyncio.get_running_loop().run_in_executor(None, shared.go.wait, _READY_TIMEOUT_S + 30)
        if not started:
            raise LoadError("no start signal from the parent")
        await worker.measure(shared.go_at.value)
        return worker.result


def worker_main(spec: WorkerSpec, shared: _Shared) -> None:
    """Entry point of a load generator process: always reports a result or an error."""
    try:
        result = uvloop.run(_worker_async(spec, shared))
    except BaseException as exc:
        shared.results.put(("error", spec.index, "".join(traceback.format_exception(exc))))
        raise SystemExit(1) from None
    shared.results.put(("result", spec.index, result))


# --------------------------------------------------------------------------------------------------
# parent side


def run_load(
    specs: Sequence[WorkerSpec],
    *,
    meter: Meter | None = None,
    on_ready: Callable[[], object] | None = None,
    on_progress: Callable[[int, int], object] | None = None,
) -> LoadRun:
    """Run the workers, return their results. ``on_progress(ok, failed)`` is called a few times a second.

    Processes are spawned (not forked: the parent has gRPC state a fork must not inherit).
    """
    if not specs:
        raise LoadError("no load generator processes to run")
    ctx = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[tuple[Any, ...]] = ctx.Queue()
    ok_count = ctx.Value("q", 0)
    fail_count = ctx.Value("q", 0)
    go = ctx.Event()
    go_at = ctx.Value("d", 0.0)
    shared = _Shared(results, ok_count, fail_count, go, go_at)
    procs = [
        ctx.Process(
            target=worker_main,
            args=(spec, shared),
            name=f"bench-load-{spec.index}",
            daemon=True,
        )
        for spec in specs
    ]
    run_bound = max(_bound_s(spec) for spec in specs)
    collected: dict[int, WorkerResult] = {}
    try:
        for proc in procs:
            proc.start()
        ready: set[int] = set()
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while len(ready) < len(procs):
            # Its own name: the run loop's message below may be None.
            hello = _next_message(results, procs, deadline, "getting ready")
            if hello[0] == "ready":
                ready.add(hello[1])
            elif hello[0] == "error":
                raise LoadError(f"load generator {hello[1]} failed while starting:\n{hello[2]}")
        if on_ready is not None:
            on_ready()
        start = time.monotonic() + _START_DELAY_S
        go_at.value = start
        if meter is not None:
            meter.start()
        go.set()
        deadline = start + run_bound
        last_progress = 0.0
        while len(collected) < len(procs):
            try:
                message = results.get(timeout=_PROGRESS_EVERY_S)
            except queue.Empty:
                message = None
            if message is not None:
                if message[0] == "result":
                    collected[message[1]] = message[2]
                elif message[0] == "error":
                    raise LoadError(f"load generator {message[1]} failed:\n{message[2]}")
            now = time.monotonic()
            if on_progress is not None and (now - last_progress >= _PROGRESS_EVERY_S or len(collected) == len(procs)):
                on_progress(int(ok_count.value), int(fail_count.value))
                last_progress = now
            if now > deadline:
                raise LoadError(f"load generators did not report within {run_bound:.0f}s")
            dead = [p.name for p in procs if p.exitcode not in (None, 0)]
            if dead and message is None:
                raise LoadError(f"load generator process(es) died: {', '.join(dead)}")
        elapsed = time.monotonic() - start
        if meter is not None:
            meter.stop()
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        results.close()
    return LoadRun(results=[collected[i] for i in sorted(collected)], elapsed_s=elapsed)


def _bound_s(spec: WorkerSpec) -> float:
    """How long a worker may take after the start: its own bound, the drain and a margin."""
    run = spec.duration_s if spec.duration_s is not None else spec.time_limit_s
    return run + spec.drain_s + 30.0


def _next_message(
    results: multiprocessing.Queue[tuple[Any, ...]],
    procs: Sequence[multiprocessing.process.BaseProcess],
    deadline: float,
    what: str,
) -> tuple[Any, ...]:
    while True:
        try:
            return results.get(timeout=0.5)
        except queue.Empty:
            pass
        dead = [p.name for p in procs if p.exitcode is not None]
        if dead:
            # a dying worker reports its traceback first; give the queue a last chance
            try:
                return results.get(timeout=2.0)
            except queue.Empty:
                raise LoadError(f"load generator process(es) exited while {what}: {', '.join(dead)}") from None
        if time.monotonic() > deadline:
            raise LoadError(f"load generators were not ready within {_READY_TIMEOUT_S:.0f}s")
