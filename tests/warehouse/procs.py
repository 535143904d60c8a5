"""Client processes for the warehouse concurrency tests (imported by spawned children, so no pytest here).

Each client runs in its own process (``multiprocessing`` spawn: no gRPC state inherited from the test
process) with its own channel to the warehouse served by the test process, and returns a plain dict of
what it saw. :func:`run_clients` starts them, waits with a deadline and stops exactly the processes it
started.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import queue
import random
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration

from infra.grpc_errors import error_info
from kassa.warehouse.v1 import inventory_service_pb2 as pb
from kassa.warehouse.v1.inventory_service_pb2_grpc import InventoryServiceStub

__all__ = ["CALL_TIMEOUT", "FlashBuyer", "RandomWalker", "flash_buyer", "outcome", "random_walker", "run_clients"]

# Per call: a client that waits this long has hit a deadlock or a starved pool, and the test fails.
CALL_TIMEOUT = 10.0


def outcome(err: grpc.aio.AioRpcError) -> str:
    """``CODE:REASON`` of a refused call, e.g. ``FAILED_PRECONDITION:OUT_OF_STOCK``."""
    info = error_info(err)
    return f"{err.code().name}:{info.reason if info is not None else '-'}"


def _metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


# --------------------------------------------------------------------------------------------------
# flash sale: many buyers, one sku


@dataclass(frozen=True)
class FlashBuyer:
    """``attempts`` checkouts of one unit of ``sku``, ``concurrency`` at a time; refs ``<prefix>-<i>``."""

    addr: str
    token: str
    sku: str
    prefix: str
    attempts: int
    concurrency: int


async def _flash(job: FlashBuyer) -> dict[str, Any]:
    md = _metadata(job.token)
    sku = job.sku
    outcomes: Counter[str] = Counter()
    sold: list[str] = []
    pending = iter(range(job.attempts))

    async with grpc.aio.insecure_channel(job.addr) as channel:
        stub = InventoryServiceStub(channel)

        async def buyer() -> None:
            for i in pending:
                ref = f"{job.prefix}-{i}"
                try:
                    await stub.ReserveStock(
                        pb.ReserveStockRequest(reservation_ref=ref, lines=[pb.ReserveLine(sku=sku, quantity=1)]),
                        metadata=md,
                        timeout=CALL_TIMEOUT,
                    )
                except grpc.aio.AioRpcError as err:
                    outcomes[f"reserve {outcome(err)}"] += 1
                    continue
                try:
                    await stub.ConfirmReservations(
                        pb.ConfirmReservationsRequest(reservation_ref=ref), metadata=md, timeout=CALL_TIMEOUT
                    )
                except grpc.aio.AioRpcError as err:
                    outcomes[f"confirm {outcome(err)}"] += 1
                    continue
                outcomes["sold"] += 1
                sold.append(ref)

        await asyncio.gather(*(buyer() for _ in range(job.concurrency)))
    return {"outcomes": dict(outcomes), "sold": sold}


def flash_buyer(job: FlashBuyer) -> dict[str, Any]:
    """Each checkout is ReserveStock then ConfirmReservations with its own reservation_ref."""
    return asyncio.run(_flash(job))


# --------------------------------------------------------------------------------------------------
# random walk: reserve / extend / release / confirm in a seeded random order


@dataclass(frozen=True)
class RandomWalker:
    """``steps`` random reservation steps over the shared ``skus``, reproducible from ``seed``."""

    addr: str
    token: str
    skus: tuple[str, ...]
    prefix: str
    seed: int
    steps: int


async def _walk(job: RandomWalker) -> dict[str, Any]:
    rnd = random.Random(job.seed)
    md = _metadata(job.token)
    skus = list(job.skus)
    outcomes: Counter[str] = Counter()
    refs: list[str] = []

    async with grpc.aio.insecure_channel(job.addr) as channel:
        stub = InventoryServiceStub(channel)
        for step in range(job.steps):
            op = rnd.choice(["reserve", "reserve", "extend", "release", "confirm"]) if refs else "reserve"
            try:
                if op == "reserve":
                    ref = f"{job.prefix}-{step}"
                    lines = [
                        pb.ReserveLine(sku=s, quantity=rnd.randint(1, 3)) for s in rnd.sample(skus, rnd.randint(1, 3))
                    ]
                    request = pb.ReserveStockRequest(reservation_ref=ref, lines=lines)
                    # Some reservations lapse during the run, so the sweeper of the test process has work.
                    request.ttl.CopyFrom(Duration(seconds=rnd.choice([1, 600])))
                    await stub.ReserveStock(request, metadata=md, timeout=CALL_TIMEOUT)
                    refs.append(ref)
                elif op == "extend":
                    await stub.ExtendReservations(
                        pb.ExtendReservationsRequest(reservation_ref=rnd.choice(refs)),
                        metadata=md,
                        timeout=CALL_TIMEOUT,
                    )
                elif op == "release":
                    await stub.ReleaseReservations(
                        pb.ReleaseReservationsRequest(reservation_ref=rnd.choice(refs), reason="walk"),
                        metadata=md,
                        timeout=CALL_TIMEOUT,
                    )
                else:
                    await stub.ConfirmReservations(
                        pb.ConfirmReservationsRequest(reservation_ref=rnd.choice(refs)),
                        metadata=md,
                        timeout=CALL_TIMEOUT,
                    )
            except grpc.aio.AioRpcError as err:
                outcomes[f"{op} {outcome(err)}"] += 1
            else:
                outcomes[f"{op} OK"] += 1
    return {"outcomes": dict(outcomes), "refs": refs}


def random_walker(job: RandomWalker) -> dict[str, Any]:
    """Reserve (some with a 1-second TTL), extend, release or confirm, one step at a time."""
    return asyncio.run(_walk(job))


# --------------------------------------------------------------------------------------------------
# parent side


def _child(target: Callable[[Any], dict[str, Any]], job: Any, index: int, results: Any) -> None:
    try:
        results.put((index, target(job), None))
    except BaseException:
        results.put((index, None, traceback.format_exc()))


async def run_clients(
    target: Callable[[Any], dict[str, Any]], jobs: Sequence[Any], *, within_seconds: float
) -> list[dict[str, Any]]:
    """Run ``target(job)`` for each job in its own spawned process, concurrently; their results in order.

    The event loop keeps running while the children work (the server under test lives on it). A child
    that fails re-raises here with its traceback; anything still running after ``within_seconds`` is
    killed.
    """
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(target, job, i, results), daemon=True) for i, job in enumerate(jobs)]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_seconds
    collected: dict[int, dict[str, Any]] = {}
    try:
        for p in procs:
            p.start()
        while len(collected) < len(procs):
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"client processes did not finish within {within_seconds:.0f}s")
            try:
                index, value, error = await asyncio.to_thread(results.get, True, min(left, 1.0))
            except queue.Empty:
                continue
            if error is not None:
                raise RuntimeError(f"client process {index} failed:\n{error}")
            collected[index] = value
    finally:
        for p in procs:
            if p.is_alive():
                p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
        with contextlib.suppress(Exception):
            results.close()
    return [collected[i] for i in range(len(procs))]
