"""Random reservation histories against the real warehouse, with DESIGN.md §4.1 and §4.4 checked after
every step: 0 <= reserved <= on_hand, reserved == the units of the active reservations, and stock is
conserved (initial on_hand == on_hand now + units confirmed sold).

The Hypothesis machine runs in a worker thread and reaches the service (served on the test's event loop)
and the database through that loop. The model predicts every answer: whether a reservation fits (total
available per sku, whatever the warehouse split) and which refusals (SESSION_EXPIRED) each state earns.
A second test replays random histories from three client processes at once, with the sweeper running.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf.duration_pb2 import Duration
from helpers import bearer, unique
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.grpc_errors import error_info
from kassa.warehouse.v1 import inventory_pb2
from kassa.warehouse.v1 import inventory_service_pb2 as pb
from tests.warehouse.procs import RandomWalker, random_walker, run_clients
from warehouse.biz.expire_reservations import ExpireReservations
from warehouse.biz.return_order_stock import ReturnOrderStock
from warehouse.data.repositories import SqlUnitOfWork
from warehouse.data.tables import reservations, stock

pytestmark = pytest.mark.integration

T = TypeVar("T")
SKUS = 3
ACTIVE, LAPSED, CONFIRMED, RELEASED, EXPIRED = "active", "lapsed", "confirmed", "released", "expired"
RESTOCKED = "restocked"
PB_STATUS = {
    ACTIVE: inventory_pb2.RESERVATION_STATUS_ACTIVE,
    LAPSED: inventory_pb2.RESERVATION_STATUS_ACTIVE,  # past expires_at but not swept yet
    CONFIRMED: inventory_pb2.RESERVATION_STATUS_CONFIRMED,
    RELEASED: inventory_pb2.RESERVATION_STATUS_RELEASED,
    EXPIRED: inventory_pb2.RESERVATION_STATUS_EXPIRED,
    RESTOCKED: inventory_pb2.RESERVATION_STATUS_RELEASED,  # the proto has no RESTOCKED
}


@dataclass(frozen=True)
class Harness:
    """What the machine (in its thread) uses: the service, the database, and the loop they live on."""

    loop: asyncio.AbstractEventLoop
    inventory: Any
    seed: Any
    engine: AsyncEngine
    service_token: str

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)


async def stock_report(engine: AsyncEngine, skus: Sequence[str]) -> list[Any]:
    """Per stock row of ``skus``: on_hand, reserved, and the units of its active and confirmed rows."""

    def units(status: str) -> sa.ScalarSelect[Any]:
        return (
            sa.select(sa.func.coalesce(sa.func.sum(reservations.c.quantity), 0))
            .where(
                reservations.c.sku == stock.c.sku,
                reservations.c.warehouse_id == stock.c.warehouse_id,
                reservations.c.status == status,
            )
            .scalar_subquery()
        )

    query = sa.select(
        stock.c.sku,
        stock.c.warehouse_id,
        stock.c.on_hand,
        stock.c.reserved,
        units("active").label("active"),
        units("confirmed").label("confirmed"),
    ).where(stock.c.sku.in_(list(skus)))
    async with engine.connect() as conn:
        return list(await conn.execute(query))


def assert_conserved(rows: Sequence[Any], initial: dict[tuple[str, str], int]) -> None:
    assert {(r.sku, r.warehouse_id) for r in rows} == set(initial)
    for r in rows:
        assert 0 <= r.reserved <= r.on_hand, r
        assert r.reserved == r.active, r
        assert initial[(r.sku, r.warehouse_id)] == r.on_hand + r.confirmed, r


async def sweep_all(engine: AsyncEngine) -> None:
    expire_due_reservations = ExpireReservations(SqlUnitOfWork(engine))
    for _ in range(100):
        if not await expire_due_reservations():
            return
    raise AssertionError("the sweeper did not drain")


class WarehouseMachine(RuleBasedStateMachine):
    """Reserve, reserve again, extend, release, confirm, lapse (expires_at in the past), sweep, and the
    order ending (OrderCancelled / OrderPaymentFailed, delivered once or twice)."""

    harness: Harness
    refs = Bundle("refs")

    def __init__(self) -> None:
        super().__init__()
        self.skus: list[str] = []
        self.initial: dict[tuple[str, str], int] = {}
        self.on_hand: dict[str, int] = {}
        self.reserved: dict[str, int] = {}
        self.state: dict[str, str] = {}
        self.held: dict[str, dict[str, int]] = {}

    # -- helpers -----------------------------------------------------------------------------------

    def call(self, make: Callable[[], Awaitable[T]]) -> T | str:
        """The response, or ``CODE:REASON`` when refused."""

        async def attempt() -> T | str:
            try:
                return await make()
            except grpc.aio.AioRpcError as err:
                info = error_info(err)
                return f"{err.code().name}:{info.reason if info is not None else '-'}"

        return self.harness.run(attempt())

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        return bearer(self.harness.service_token)

    def fits(self, lines: dict[str, int]) -> bool:
        return all(self.on_hand[s] - self.reserved[s] >= q for s, q in lines.items())

    def give_back(self, ref: str, *, sold: bool) -> None:
        for sku, qty in self.held[ref].items():
            self.reserved[sku] -= qty
            if sold:
                self.on_hand[sku] -= qty

    def assert_rows(self, ref: str, rows: Sequence[inventory_pb2.Reservation]) -> None:
        """The service's rows of ``ref`` hold what the model holds, in the status the model expects."""
        units: dict[str, int] = defaultdict(int)
        for r in rows:
            units[r.sku] += r.quantity
            assert r.status == PB_STATUS[self.state[ref]], (ref, self.state[ref], r)
        assert dict(units) == self.held[ref]

    def attempt_reserve(self, ref: str, lines: list[tuple[int, int]]) -> pb.ReserveStockResponse | str:
        wanted = {self.skus[i]: q for i, q in lines}
        request = pb.ReserveStockRequest(
            reservation_ref=ref,
            lines=[pb.ReserveLine(sku=s, quantity=q) for s, q in wanted.items()],
            ttl=Duration(seconds=600),
        )
        got = self.call(lambda: self.harness.inventory.ReserveStock(request, metadata=self.md))
        if not self.fits(wanted):
            assert got == "FAILED_PRECONDITION:OUT_OF_STOCK"
            return got
        assert not isinstance(got, str), got
        self.state[ref] = ACTIVE
        self.held[ref] = wanted
        for sku, qty in wanted.items():
            self.reserved[sku] += qty
        self.assert_rows(ref, got.reservations)
        return got

    # -- rules -------------------------------------------------------------------------------------

    @initialize(levels=st.lists(st.integers(0, 8), min_size=2 * SKUS, max_size=2 * SKUS))
    def stock_up(self, levels: list[int]) -> None:
        seed = self.harness.seed
        warehouses = [self.harness.run(seed.warehouse("US")), self.harness.run(seed.warehouse("DE"))]
        self.skus = [unique(f"sm{i}") for i in range(SKUS)]
        items = [(s, w, levels[i * 2 + j]) for i, s in enumerate(self.skus) for j, w in enumerate(warehouses)]
        self.harness.run(seed.stock(items))
        self.initial = {(s, w): n for s, w, n in items}
        self.on_hand = {s: sum(n for s2, _, n in items if s2 == s) for s in self.skus}
        self.reserved = dict.fromkeys(self.skus, 0)

    lines = st.lists(
        st.tuples(st.integers(0, SKUS - 1), st.integers(1, 3)), min_size=1, max_size=3, unique_by=lambda t: t[0]
    )

    @rule(target=refs, lines=lines)
    def reserve(self, lines: list[tuple[int, int]]) -> Any:
        ref = unique("sm-ref")
        got = self.attempt_reserve(ref, lines)
        return multiple() if isinstance(got, str) else ref

    @rule(ref=refs, lines=lines)
    def reserve_again(self, ref: str, lines: list[tuple[int, int]]) -> None:
        """A retry returns the live rows unchanged; a released or expired ref reserves anew."""
        if self.state[ref] in (RELEASED, EXPIRED):
            self.attempt_reserve(ref, lines)
            return
        if self.state[ref] == RESTOCKED:
            request = pb.ReserveStockRequest(
                reservation_ref=ref, lines=[pb.ReserveLine(sku=self.skus[i], quantity=q) for i, q in lines]
            )
            got = self.call(lambda: self.harness.inventory.ReserveStock(request, metadata=self.md))
            assert got == "FAILED_PRECONDITION:SESSION_NOT_OPEN"
            return
        request = pb.ReserveStockRequest(
            reservation_ref=ref, lines=[pb.ReserveLine(sku=self.skus[i], quantity=q) for i, q in lines]
        )
        got = self.call(lambda: self.harness.inventory.ReserveStock(request, metadata=self.md))
        assert not isinstance(got, str), got
        self.assert_rows(ref, got.reservations)

    @rule(ref=refs)
    def extend(self, ref: str) -> None:
        request = pb.ExtendReservationsRequest(reservation_ref=ref, ttl=Duration(seconds=900))
        got = self.call(lambda: self.harness.inventory.ExtendReservations(request, metadata=self.md))
        if self.state[ref] == ACTIVE:
            assert not isinstance(got, str), got
            self.assert_rows(ref, got.reservations)
        else:
            assert got == "FAILED_PRECONDITION:SESSION_EXPIRED"

    @rule(ref=refs)
    def release(self, ref: str) -> None:
        request = pb.ReleaseReservationsRequest(reservation_ref=ref, reason="stateful")
        got = self.call(lambda: self.harness.inventory.ReleaseReservations(request, metadata=self.md))
        assert not isinstance(got, str), got
        if self.state[ref] in (ACTIVE, LAPSED):
            self.give_back(ref, sold=False)
            self.state[ref] = RELEASED
        self.assert_rows(ref, got.reservations)

    @rule(ref=refs)
    def confirm(self, ref: str) -> None:
        request = pb.ConfirmReservationsRequest(reservation_ref=ref)
        got = self.call(lambda: self.harness.inventory.ConfirmReservations(request, metadata=self.md))
        if self.state[ref] in (ACTIVE, CONFIRMED):
            assert not isinstance(got, str), got
            if self.state[ref] == ACTIVE:
                self.give_back(ref, sold=True)
                self.state[ref] = CONFIRMED
            self.assert_rows(ref, got.reservations)
        else:
            assert got == "FAILED_PRECONDITION:SESSION_EXPIRED"

    @rule(ref=refs)
    def lapse(self, ref: str) -> None:
        """The TTL runs out (expires_at moved into the past); the units stay held until swept or released."""

        async def past_expiry() -> None:
            async with self.harness.engine.begin() as conn:
                await conn.execute(
                    reservations.update()
                    .where(reservations.c.reservation_ref == ref, reservations.c.status == "active")
                    .values(expires_at=sa.func.now() - sa.text("interval '1 second'"))
                )

        self.harness.run(past_expiry())
        if self.state[ref] == ACTIVE:
            self.state[ref] = LAPSED

    @rule(ref=refs, deliveries=st.integers(1, 2))
    def order_ended(self, ref: str, deliveries: int) -> None:
        """The order of ``ref`` was cancelled or its payment failed: held units back, sold units restocked."""
        return_order_stock = ReturnOrderStock(SqlUnitOfWork(self.harness.engine))
        event_id = unique("evt")
        for _ in range(deliveries):
            self.harness.run(return_order_stock(event_id=event_id, reservation_ref=ref))
        if self.state[ref] in (ACTIVE, LAPSED):
            self.give_back(ref, sold=False)
            self.state[ref] = RELEASED
        elif self.state[ref] == CONFIRMED:
            for sku, qty in self.held[ref].items():
                self.on_hand[sku] += qty
            self.state[ref] = RESTOCKED

    @rule()
    def sweep(self) -> None:
        self.harness.run(sweep_all(self.harness.engine))
        for ref, state in self.state.items():
            if state == LAPSED:
                self.give_back(ref, sold=False)
                self.state[ref] = EXPIRED

    # -- invariants --------------------------------------------------------------------------------

    @invariant()
    def stock_is_conserved_and_never_oversold(self) -> None:
        if not self.skus:
            return
        rows = self.harness.run(stock_report(self.harness.engine, self.skus))
        assert_conserved(rows, self.initial)
        for sku in self.skus:
            assert sum(r.on_hand for r in rows if r.sku == sku) == self.on_hand[sku]
            assert sum(r.reserved for r in rows if r.sku == sku) == self.reserved[sku]


async def test_random_histories_keep_the_stock_invariants(inventory, seed, engine, service_token) -> None:
    harness = Harness(asyncio.get_running_loop(), inventory, seed, engine, service_token)

    class Machine(WarehouseMachine):
        pass

    Machine.harness = harness
    config = settings(
        max_examples=15,
        stateful_step_count=25,
        deadline=None,
        database=None,
        # No shrinking: against a real service it may take Hypothesis' full five minutes of a shared CPU;
        # a failure prints its whole (at most 25-step) history instead.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow],
    )
    await asyncio.to_thread(run_state_machine_as_test, Machine, settings=config)


async def test_random_histories_from_three_processes_conserve_stock(
    seed, warehouse_addr, service_token, engine
) -> None:
    w1, w2 = await seed.warehouse("US"), await seed.warehouse("FR")
    skus = [unique(f"mp{i}") for i in range(4)]
    items = [(s, w, 6) for s in skus for w in (w1, w2)]
    await seed.stock(items)
    run = unique("walk")
    stop = asyncio.Event()

    async def sweeper() -> None:
        """Expires the 1-second reservations while the clients work, as the real worker would."""
        while not stop.is_set():
            await sweep_all(engine)
            await asyncio.sleep(0.2)

    sweeping = asyncio.create_task(sweeper())
    try:
        results = await run_clients(
            random_walker,
            [RandomWalker(warehouse_addr, service_token, tuple(skus), f"{run}-p{p}", 1000 + p, 60) for p in range(3)],
            within_seconds=50,
        )
    finally:
        stop.set()
        await sweeping

    outcomes: Counter[str] = Counter()
    for r in results:
        outcomes.update(r["outcomes"])
    allowed = {
        "reserve OK",
        "reserve FAILED_PRECONDITION:OUT_OF_STOCK",
        "extend OK",
        "extend FAILED_PRECONDITION:SESSION_EXPIRED",
        "release OK",
        "confirm OK",
        "confirm FAILED_PRECONDITION:SESSION_EXPIRED",
    }
    assert set(outcomes) <= allowed, outcomes
    assert sum(outcomes.values()) == 3 * 60
    assert outcomes["reserve OK"] > 0 and outcomes["confirm OK"] > 0
    assert_conserved(await stock_report(engine, skus), {(s, w): n for s, w, n in items})
