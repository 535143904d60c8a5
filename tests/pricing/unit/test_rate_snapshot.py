"""The rate tables' in-process copy: reused within its TTL, reloaded after it, one reload at a time."""

from __future__ import annotations

import asyncio

import pytest

from pricing.data.snapshot import TtlSnapshot

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Loader:
    def __init__(self) -> None:
        self.calls = 0
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> dict[str, int]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("database down")
        return {"version": self.calls}


async def test_reused_within_the_ttl_and_reloaded_after_it() -> None:
    clock, load = Clock(), Loader()
    snapshot = TtlSnapshot(load, 5.0, clock)
    assert await snapshot.get() == {"version": 1}
    clock.now += 4.9
    assert await snapshot.get() == {"version": 1}
    clock.now += 0.1
    assert await snapshot.get() == {"version": 2}
    assert load.calls == 2


async def test_concurrent_callers_share_one_reload() -> None:
    load = Loader()
    load.gate = asyncio.Event()
    snapshot = TtlSnapshot(load, 5.0, Clock())
    waiting = [asyncio.create_task(snapshot.get()) for _ in range(5)]
    await asyncio.sleep(0)
    load.gate.set()
    assert await asyncio.gather(*waiting) == [{"version": 1}] * 5
    assert load.calls == 1


async def test_a_failed_load_raises_and_keeps_nothing() -> None:
    clock, load = Clock(), Loader()
    snapshot = TtlSnapshot(load, 5.0, clock)
    load.fail = True
    with pytest.raises(ConnectionError):
        await snapshot.get()
    load.fail = False
    assert await snapshot.get() == {"version": 2}


async def test_expired_copy_is_not_served_when_the_reload_fails() -> None:
    clock, load = Clock(), Loader()
    snapshot = TtlSnapshot(load, 5.0, clock)
    await snapshot.get()
    clock.now += 5.0
    load.fail = True
    with pytest.raises(ConnectionError):
        await snapshot.get()


async def test_zero_ttl_loads_every_time() -> None:
    load = Loader()
    snapshot = TtlSnapshot(load, 0, Clock())
    await snapshot.get()
    await snapshot.get()
    assert load.calls == 2
