"""bench.probe against a stand-in gateway on loopback: what it sends and times, and how bench.admission reads it."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from bench.admission import Probe, probe_summary
from bench.probe import main, probe

pytestmark = pytest.mark.unit


@dataclass
class StandIn:
    """Answers guest tokens 503, 200, 503, 200, ... (or never, when ``silent``) and cart reads 404."""

    silent: bool = False
    guests: int = 0
    issued: list[str] = field(default_factory=list)
    left_with: list[str] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        if self.silent:
            await asyncio.sleep(3600)
        if head.startswith("POST /v1/auth/guest "):
            await reader.readexactly(2)
            self.guests += 1
            if self.guests % 2:
                status, body = "503 Service Unavailable\r\nRetry-After: 1", b'{"code": 14}'
            else:
                self.issued.append(f"token-{self.guests}")
                status, body = "200 OK", json.dumps({"token": self.issued[-1]}).encode()
        else:
            auth = next(line for line in head.split("\r\n") if line.startswith("Authorization: "))
            self.left_with.append(auth.removeprefix("Authorization: Bearer "))
            status, body = "404 Not Found", b'{"code": 5}'
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()


@asynccontextmanager
async def standing_in(stand_in: StandIn) -> AsyncIterator[str]:
    server = await asyncio.start_server(stand_in.serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


async def test_each_guest_token_is_timed_and_one_given_is_given_back_as_its_holder() -> None:
    stand_in = StandIn()
    async with standing_in(stand_in) as url:
        answers, errors = await probe(url, rate=40, duration=0.25, each_s=5)
    assert sorted(status for status, _ in answers) == [200] * 5 + [503] * 5
    assert all(0 < ms < 5000 for _, ms in answers)
    assert not errors
    # Every token issued is used once, to end its checkout: the probe holds no slot.
    assert sorted(stand_in.left_with) == sorted(stand_in.issued)


async def test_a_gateway_that_never_answers_costs_the_probe_its_bound_not_more() -> None:
    async with standing_in(StandIn(silent=True)) as url:
        answers, errors = await probe(url, rate=20, duration=0.1, each_s=0.2)
    assert answers == []
    assert errors == {"TimeoutError": 2}


async def test_bench_admission_runs_the_probe_in_a_process_of_its_own_and_sums_it_up() -> None:
    stand_in = StandIn()
    args = argparse.Namespace(probe_rate=20.0, overload_duration=0.3, rpc_timeout=5.0)
    async with standing_in(stand_in) as url:
        summary = await (await Probe.start(url, args)).result()
    assert summary["requests"] == 6
    assert (summary["refused_ms"]["count"], summary["admitted_ms"]["count"]) == (3, 3)
    assert summary["refused_ms"]["p99"] > 0
    assert (summary["other_statuses"], summary["errors"]) == ({}, {})
    assert len(stand_in.left_with) == 3


async def test_a_run_cut_short_stops_its_probe_by_pid() -> None:
    args = argparse.Namespace(probe_rate=1.0, overload_duration=600.0, rpc_timeout=5.0)
    async with standing_in(StandIn(silent=True)) as url:
        probe = await Probe.start(url, args)
        os.kill(probe.pid, 0)  # running
        await probe.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(probe.pid, 0)
    await probe.stop()  # again: nothing to do


def test_the_summary_splits_refused_admitted_and_the_rest() -> None:
    report = {"answers": [[503, 10.0], [503, 30.0], [200, 900.0], [429, 2.0], [0, 1.0]], "errors": {"OSError": 2}}
    summary = probe_summary(report)
    assert summary["requests"] == 7
    assert (summary["refused_ms"]["count"], summary["refused_ms"]["max"]) == (2, 30.0)
    assert (summary["admitted_ms"]["count"], summary["admitted_ms"]["p50"]) == (1, 900.0)
    assert summary["other_statuses"] == {429: 1, 0: 1}


def test_only_a_plain_http_loopback_gateway_is_probed() -> None:
    for url in ("http://10.0.0.5:8080", "https://127.0.0.1:8080", "http://example.com"):
        with pytest.raises(SystemExit):
            main([url])
