"""``python -m bench`` against the running e2e mesh, with tiny numbers: the report is complete and the invariants hold.

The bench runs as a subprocess (``--use-running``, addresses and database from the mesh's ``KASSA_*``
environment), exactly as ``make bench`` would against ``make run``. No timing is asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

REPO = Path(__file__).resolve().parents[2]
REQUIRED_INVARIANTS = {
    "no_oversell_stock",
    "hot_skus_not_oversold",
    "one_order_per_session",
    "captured_payments_equal_confirmed_orders",
}


async def run_bench(mesh: Any, out: Path, *argv: str) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "bench", "--use-running", "--no-progress", "--out", str(out),
        "--skus", "200", "--hot-skus", "2", "--hot-fraction", "0.2", "--procs", "2", "--warmup", "1",
        *argv,
    ]  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run,
        command,
        cwd=REPO,
        env={**os.environ, **mesh.env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"bench exited with {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "result       PASS" in done.stdout
    return dict(json.loads(await asyncio.to_thread(out.read_text)))


def assert_complete(report: dict[str, Any], transport: str) -> None:
    assert report["schema"] == "kassa-bench/1"
    assert report["config"]["transport"] == transport
    assert report["stack"]["self_started"] is False
    assert report["seed"]["products"] == 202
    load = report["load"]
    assert load["completed"] > 0
    assert load["checkouts_per_s"] > 0
    for name in ("confirm", "flow"):
        summary = report["latency_ms"][name]
        assert summary["count"] == load["completed"]
        assert set(summary) == {"count", "mean", "p50", "p95", "p99", "max"}
    assert isinstance(report["errors"], dict)
    # Found in /proc by module and address (with replicas, one process per replica, summed per service).
    assert "checkout" in report["cpu"]["services"]
    checks = report["invariants"]["checks"]
    assert {c["name"] for c in checks} >= REQUIRED_INVARIANTS
    assert all(c["passed"] for c in checks), checks
    assert report["invariants"]["passed"] is True


async def test_bench_closed_loop_over_grpc_with_sql_invariants(mesh: Any, tmp_path: Path) -> None:
    report = await run_bench(
        mesh, tmp_path / "grpc.json", "--transport", "grpc", "--checkouts", "20", "--concurrency", "4"
    )
    assert_complete(report, "grpc")
    assert report["invariants"]["source"] == "read-only SQL"
    assert report["load"]["completed"] + report["load"]["failed"] == 20
    assert report["database"]["transactions_per_checkout"] > 0


async def test_bench_open_loop_over_rest_with_grpc_invariants(mesh: Any, tmp_path: Path) -> None:
    report = await run_bench(
        mesh, tmp_path / "rest.json", "--transport", "rest", "--mode", "open", "--rate", "5", "--duration", "4",
        "--invariants", "grpc",
    )  # fmt: skip
    assert_complete(report, "rest")
    assert report["invariants"]["source"] == "admin/service gRPC APIs"
    open_loop = report["load"]["open_loop"]
    assert open_loop["arrivals"] == 20
    assert set(open_loop) >= {"target_per_s", "offered_per_s", "achieved_per_s", "late_starts", "dropped", "held"}
