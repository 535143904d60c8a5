"""infra.heap: a settled process freezes what startup built, keeps CPython's thresholds and still frees new cycles;
the runner settles a service once it is serving."""

from __future__ import annotations

import json
import subprocess
import sys

import grpc
import pytest

from infra import heap, runner
from infra.config import Settings
from pricing.bootstrap import bootstrap as pricing_bootstrap

# Run in a process of its own: freezing the test runner's heap would change every later test's collections.
_SETTLED = """
import gc, json, weakref
from infra import heap

class Node:
    pass

before = gc.get_threshold()
startup = [Node() for _ in range(1000)]
heap.settle()
frozen = gc.get_freeze_count()

a, b = Node(), Node()
a.other, b.other = b, a  # a cycle made after settling: garbage once dropped
gone = weakref.ref(a)
del a, b
gc.collect()
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": frozen, "cycle_freed": gone() is None}))
"""


@pytest.mark.unit
def test_settle_freezes_startup_and_still_frees_new_cycles() -> None:
    out = subprocess.run([sys.executable, "-c", _SETTLED], capture_output=True, text=True, check=True, timeout=60)
    got = json.loads(out.stdout)
    assert got["after"] == got["before"]
    assert got["frozen"] >= 1000  # the startup objects, and the modules imported before
    assert got["cycle_freed"]


async def test_the_runner_settles_a_service_once_it_is_serving(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settled: list[int] = []
    address: list[str] = []

    def settle() -> None:
        settled.append(len(settled))

    async def until_signalled() -> None:
        # Served before settling, and settled once: the health check answers on the address it logged.
        assert settled == [0]
        async with grpc.aio.insecure_channel(address[0]) as channel:
            await channel.channel_ready()

    def listening(_fmt: str, _service: str, addr: str, _metrics: str) -> None:
        address.append(addr)

    monkeypatch.setattr(heap, "settle", settle)
    monkeypatch.setattr(runner, "run_until_signalled", until_signalled)
    monkeypatch.setattr(runner.log, "info", lambda fmt, *args: listening(fmt, *args) if len(args) == 3 else None)
    await runner._serve("pricing", pricing_bootstrap, settings, "127.0.0.1:0", "127.0.0.1:0")
    assert settled == [0]
    assert address and not address[0].endswith(":0")
