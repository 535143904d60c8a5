"""``python -m bench.floor`` for real but tiny, against the test session's Postgres: the report adds up.

The floor runs as a subprocess exactly as ``make bench-floor`` would, with ``--database-url`` (and the
postmaster's pid when this machine runs that Postgres, so its CPU is counted too). No timing is asserted:
only that every figure was measured, that the floor is the documented formula, and that the scratch
schema is gone afterwards.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.cpu import read_proc_stat
from bench.floor import RPCS, TXS
from bench.invariants import sqlalchemy_to_libpq
from devstack.localstack import StackEndpoints

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def postmaster_pid(conninfo: str) -> int | None:
    """The pid of the Postgres serving ``conninfo`` if it runs on this machine (its backend's parent)."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("select pg_backend_pid()").fetchone()
    backend = read_proc_stat(int(row[0])) if row else None
    if backend is None:
        return None
    try:
        comm = Path(f"/proc/{backend.ppid}/comm").read_text().strip()
    except OSError:
        return None
    return backend.ppid if comm.startswith("postgres") else None  # else another pid namespace (a container)


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_floor_measures_both_parts_and_the_floor_is_the_formula(migrated: StackEndpoints, tmp_path: Path) -> None:
    conninfo = sqlalchemy_to_libpq(migrated.database_url)
    pid = postmaster_pid(conninfo)
    out = tmp_path / "floor.json"
    command = [
        sys.executable, "-m", "bench.floor", "--rounds", "2", "--ops", "100", "--concurrency", "4",
        "--database-url", migrated.database_url, "--out", str(out), "--no-progress", "--time-limit", "120",
        *(["--postgres-pid", str(pid)] if pid is not None else []),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, f"floor exited with {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "upper bound" in done.stdout

    report = json.loads(out.read_text())
    assert report["schema"] == "kassa-bench-floor/1"
    assert report["config"] | {"postgres_pid": None} == {
        "rounds": 2, "ops": 100, "concurrency": 4, "warmup_ops": 100, "time_limit_s": 120.0,
        "database": "--database-url", "postgres_pid": None,
    }  # fmt: skip
    rpc, tx, floor = report["rpc"], report["tx"], report["floor"]

    assert all(positive(rpc[k]) for k in ("client_ms", "server_ms", "sum_ms", "ops_per_s")), rpc
    assert rpc["sum_ms"] == pytest.approx(rpc["client_ms"] + rpc["server_ms"], abs=1e-3)
    assert len(rpc["rounds"]) == 2
    assert all(positive(r["client_ms"]) and positive(r["server_ms"]) for r in rpc["rounds"])

    assert all(positive(tx[k]) for k in ("client_ms", "sum_ms", "ops_per_s")), tx
    if pid is not None:
        assert tx["postgres_known"] is True
        assert positive(tx["postgres_ms"])
        assert all(positive(r["postgres_ms"]) for r in tx["rounds"])
        assert tx["sum_ms"] == pytest.approx(tx["client_ms"] + tx["postgres_ms"], abs=1e-3)
    else:
        assert tx["postgres_known"] is False
        assert tx["postgres_ms"] is None
        assert tx["sum_ms"] == tx["client_ms"]
    assert tx["verified"] is True  # the table counts the updates of both ways: each committed its row
    assert tx["scratch_dropped"] is True
    bare = report["tx_psycopg"]
    assert all(positive(bare[k]) for k in ("client_ms", "sum_ms", "ops_per_s")), bare
    assert len(bare["rounds"]) == 2
    assert bare["postgres_known"] is tx["postgres_known"]
    assert report["sqlalchemy_client_ms_per_tx"] == pytest.approx(tx["client_ms"] - bare["client_ms"], abs=1e-3)
    assert "psycopg alone" in done.stdout

    assert (floor["rpcs_per_checkout"], floor["txs_per_checkout"]) == (RPCS, TXS)
    assert floor["floor_ms"] == pytest.approx(RPCS * rpc["sum_ms"] + TXS * tx["sum_ms"], abs=1e-3)
    assert floor["ceiling_per_s"] == pytest.approx(floor["cores"] * 1000 / floor["floor_ms"], abs=0.06)
    assert floor["ceiling_at_70pct_per_s"] == pytest.approx(floor["ceiling_per_s"] * 0.7, abs=0.1)
    assert "upper bound" in floor["note"]

    schema = tx["scratch_schema"]
    assert schema.startswith("bench_floor_")
    with psycopg.connect(conninfo) as conn:
        left = conn.execute(
            "select (select count(*) from pg_namespace where nspname = %(s)s),"
            " (select count(*) from information_schema.tables where table_schema = %(s)s)",
            {"s": schema},
        ).fetchone()
    assert left == (0, 0)
