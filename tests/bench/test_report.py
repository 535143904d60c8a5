"""Merging the workers' measurements and rendering the report (pure)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench.dbstats import db_section
from bench.invariants import InvariantResult
from bench.load import WorkerResult
from bench.report import SCHEMA, aggregate, build_report, cpu_section, default_out_path, format_report, write_report

pytestmark = pytest.mark.unit


def worker(index: int, **fields: Any) -> WorkerResult:
    result = WorkerResult(index=index, pid=1000 + index)
    for name, value in fields.items():
        setattr(result, name, value)
    return result


def test_closed_loop_rate_counts_only_checkouts_finished_within_the_duration() -> None:
    results = [
        worker(0, started=3, ok=3, ok_at_s=[1.0, 5.0, 10.5], finished_at_s=[1.0, 5.0, 10.5], confirm_ms=[10, 20, 30]),
        worker(1, started=2, ok=1, failed=1, ok_at_s=[2.0], finished_at_s=[2.0, 3.0], confirm_ms=[40],
               errors=Counter({"start: OUT_OF_STOCK": 1})),
    ]  # fmt: skip
    out = aggregate(results, mode="closed", duration_s=10.0, rate=None, elapsed_s=11.0)
    load = out["load"]
    assert (load["completed"], load["failed"], load["started"]) == (4, 1, 5)
    assert load["completed_in_window"] == 3
    assert load["checkouts_per_s"] == 0.3
    assert load["window_s"] == 10.0
    assert "open_loop" not in load
    assert out["latency_ms"]["confirm"]["count"] == 4
    assert out["latency_ms"]["confirm"]["p50"] == 20.0
    assert out["errors"] == {"start: OUT_OF_STOCK": 1}


def test_a_fixed_number_of_checkouts_is_measured_until_the_last_one_finished() -> None:
    results = [worker(0, ok=4, ok_at_s=[1, 2, 3, 8.0], finished_at_s=[1, 2, 3, 8.0])]
    load = aggregate(results, mode="closed", duration_s=None, rate=None, elapsed_s=9.0)["load"]
    assert load["window_s"] == 8.0
    assert load["checkouts_per_s"] == 0.5


def test_open_loop_section_and_cancelled_checkouts_count_as_errors() -> None:
    results = [
        worker(0, ok=10, arrivals=12, late_starts=1, max_lateness_ms=150.0, dropped=0, cancelled=2,
               ok_at_s=[float(i) for i in range(10)], finished_at_s=[float(i) for i in range(10)]),
        worker(1, ok=12, arrivals=12, max_lateness_ms=20.0,
               ok_at_s=[float(i) for i in range(12)], finished_at_s=[float(i) for i in range(11)] + [12.5]),
    ]  # fmt: skip
    out = aggregate(results, mode="open", duration_s=10.0, rate=2.4, elapsed_s=13.0)
    ol = out["load"]["open_loop"]
    assert ol["arrivals"] == 24
    assert ol["offered_per_s"] == 2.4
    assert ol["achieved_per_s"] == round(22 / 12.5, 2)
    assert ol["finished_per_s"] == ol["achieved_per_s"]
    assert ol["late_starts"] == 1
    assert ol["max_lateness_ms"] == 150.0
    assert ol["held"] is False
    assert out["load"]["window_s"] == 12.5
    assert out["errors"] == {"cancelled at the end of the drain": 2}


def test_step_latencies_keep_the_flow_order() -> None:
    results = [worker(0, step_ms={"confirm": [5.0], "add_item": [1.0, 2.0, 3.0], "create_cart": [1.0]})]
    steps = aggregate(results, mode="closed", duration_s=1.0, rate=None, elapsed_s=1.0)["latency_ms"]["steps"]
    assert list(steps) == ["create_cart", "add_item", "confirm"]
    assert steps["add_item"]["count"] == 3


def test_cpu_section_divides_by_checkouts_and_by_the_window() -> None:
    section = cpu_section(
        {"checkout": 12.0, "postgres": 3.0, "gone": None},
        pids={"checkout": 11, "postgres": 12, "gone": 13},
        checkouts=600,
        elapsed_s=30.0,
        machine_busy_share=0.876,
        cores=2,
        loadgen_cpu_s=6.0,
    )
    assert section["processes"]["checkout"] == {"pid": 11, "cpu_s": 12.0, "ms_per_checkout": 20.0, "core_share": 0.4}
    assert section["processes"]["gone"]["cpu_s"] is None
    assert section["stack_total"]["cpu_s"] == 15.0
    assert section["stack_total"]["ms_per_checkout"] == 25.0
    assert section["load_generators"]["ms_per_checkout"] == 10.0
    assert section["machine"] == {"cores": 2, "busy_share": 0.876}


def test_cpu_section_with_no_checkouts_has_no_per_checkout_figure() -> None:
    section = cpu_section(
        {"checkout": 1.0}, pids={}, checkouts=0, elapsed_s=0.0, machine_busy_share=None, cores=2, loadgen_cpu_s=0.0
    )
    assert section["processes"]["checkout"]["ms_per_checkout"] is None
    assert section["processes"]["checkout"]["core_share"] is None


def test_db_section_per_checkout() -> None:
    delta = {
        "xact_commit": 900, "xact_rollback": 100, "tup_returned": 0, "tup_fetched": 0, "tup_inserted": 300,
        "tup_updated": 150, "tup_deleted": 50, "blks_read": 0, "blks_hit": 0, "conflicts": 0, "deadlocks": 0,
    }  # fmt: skip
    section = db_section(delta, 10)
    assert section is not None
    assert section["transactions_per_checkout"] == 100.0
    assert section["rows_written_per_checkout"] == 50.0
    assert db_section(None, 10) is None


def sample_report(passed: bool = True) -> dict[str, Any]:
    measured = aggregate(
        [worker(0, ok=2, ok_at_s=[1.0, 2.0], finished_at_s=[1.0, 2.0], confirm_ms=[10.0, 12.0], flow_ms=[50.0, 60.0])],
        mode="closed",
        duration_s=2.0,
        rate=None,
        elapsed_s=2.0,
    )
    cpu = cpu_section(
        {"checkout": 0.5}, pids={"checkout": 7}, checkouts=2, elapsed_s=2.0, machine_busy_share=0.5, cores=2,
        loadgen_cpu_s=0.1,
    )  # fmt: skip
    return build_report(
        started_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        finished_at=datetime(2026, 1, 2, 3, 5, 5, tzinfo=UTC),
        config={"mode": "closed", "transport": "grpc", "concurrency": 4, "duration": 2.0, "procs": 1},
        stack={"self_started": True},
        seed={"prefix": "BENCH-X"},
        measured=measured,
        cpu=cpu,
        database=None,
        invariants=[
            InvariantResult("no_oversell_stock", True, "0 of 10 rows"),
            InvariantResult("one_order_per_session", passed, "2 orders for 2 sessions"),
        ],
        settled_after_s=0.0,
        invariant_source="read-only SQL",
    )


def test_build_report_has_every_section_and_survives_json() -> None:
    report = sample_report()
    assert report["schema"] == SCHEMA
    assert set(report) >= {"config", "stack", "seed", "load", "latency_ms", "errors", "cpu", "database", "invariants"}
    assert report["invariants"]["passed"] is True
    assert json.loads(json.dumps(report)) == report


def test_format_report_prints_pass_and_fail_per_invariant() -> None:
    text = format_report(sample_report(passed=False))
    assert "closed loop over grpc, concurrency 4, 2.0 s" in text
    assert "1.0 checkouts/s" in text
    assert "PASS  no_oversell_stock" in text
    assert "FAIL  one_order_per_session" in text
    assert "  errors       none" in text


def test_write_report_creates_the_directory(tmp_path: Path) -> None:
    path = write_report(sample_report(), tmp_path / "bench-results" / "x.json")
    assert json.loads(path.read_text())["schema"] == SCHEMA


def test_default_out_path_is_a_utc_timestamp() -> None:
    assert default_out_path(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == Path("bench-results/20260102T030405Z.json")


def test_cpu_section_sums_each_services_replicas_and_the_text_report_shows_them() -> None:
    section = cpu_section(
        {"checkout.0": 6.0, "checkout.1": 4.0, "sandbox": 1.0, "gateway.0": 2.0, "gateway.1": None},
        pids={"checkout.0": 1, "checkout.1": 2, "sandbox": 3, "gateway.0": 4, "gateway.1": 5},
        checkouts=500,
        elapsed_s=10.0,
        machine_busy_share=0.5,
        cores=2,
        loadgen_cpu_s=1.0,
    )
    assert section["services"]["checkout"] == {"replicas": 2, "cpu_s": 10.0, "ms_per_checkout": 20.0, "core_share": 1.0}
    assert section["services"]["sandbox"]["replicas"] == 1
    # A replica that could not be read leaves its service's total unknown rather than too low.
    assert section["services"]["gateway"]["cpu_s"] is None
    assert section["processes"]["checkout.1"]["pid"] == 2
    assert section["stack_total"]["cpu_s"] == 13.0
    report = sample_report()
    report["cpu"] = section
    text = format_report(report)
    assert "per service" in text
    assert any(line.split()[:4] == ["checkout", "2", "10.0", "20.0"] for line in text.splitlines())
    assert "per service" not in format_report(sample_report())  # one process per service: nothing to sum
