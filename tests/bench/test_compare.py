"""bench.compare: the interleaved order, the summary's medians and ratios, and whole runs of stand-in benches.

The end-to-end tests give each side a tree of its own whose ``bench/__main__.py`` is a stand-in: it writes a
report with the figures the test chose, so what is checked is the orchestration (each tree runs its own code,
in the alternating order, bounded by the timeout) and the arithmetic, with no stack started.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from bench.compare import (
    Run,
    UsageError,
    bench_arguments,
    format_table,
    main,
    order_of_runs,
    summarize_runs,
    tree_python,
)

pytestmark = pytest.mark.unit


def report(whole: float, checkout: float, *, passed: bool = True, **services: float) -> dict[str, Any]:
    per_service = {"checkout": checkout, **services}
    return {
        "load": {"checkouts_per_s": 10.0},
        "latency_ms": {"confirm": {"p50": 500.0, "p99": 900.0}},
        "database": {"transactions_per_checkout": 37.0},
        "cpu": {
            "stack_total": {"ms_per_checkout": whole},
            "services": {name: {"ms_per_checkout": ms} for name, ms in per_service.items()},
            "machine": {"busy_share": 0.98},
            "load_generators": {"ms_per_checkout": 5.0},
        },
        "invariants": {"passed": passed},
    }


def test_the_sides_alternate_round_by_round() -> None:
    assert order_of_runs(3) == [(1, "before"), (1, "after"), (2, "after"), (2, "before"), (3, "before"), (3, "after")]
    assert order_of_runs(1) == [(1, "before"), (1, "after")]


def test_bench_arguments_refuse_what_the_tool_sets_or_what_would_measure_differently() -> None:
    assert bench_arguments(["--", "--transport", "rest", "--duration", "30"]) == [
        "--transport",
        "rest",
        "--duration",
        "30",
    ]
    assert bench_arguments([]) == []
    for bad in (["--out", "x.json"], ["--", "--out=x.json"], ["--use-running"], ["--gateway-url", "http://h"]):
        with pytest.raises(UsageError, match="is not allowed"):
            bench_arguments(bad)


def test_tree_python_names_the_missing_venv_and_the_flag(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a Kassa tree"):
        tree_python("before", tmp_path, None)
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "__main__.py").write_text("")
    with pytest.raises(UsageError, match="--before-python"):
        tree_python("before", tmp_path, None)
    with pytest.raises(UsageError, match="not an executable"):
        tree_python("after", tmp_path, tmp_path / "nothing")
    assert tree_python("after", tmp_path, Path(sys.executable)) == Path(sys.executable)


def test_summary_gives_medians_their_ratio_and_each_rounds_ratio() -> None:
    runs = [
        Run("before", 1, report(200.0, 50.0, order=20.0), 0),
        Run("after", 1, report(160.0, 40.0, order=20.0), 0),
        Run("after", 2, report(150.0, 45.0, order=18.0), 0),
        Run("before", 2, report(180.0, 60.0, order=22.0), 0),
        Run("before", 3, report(220.0, 55.0, order=21.0), 0),
        Run("after", 3, report(230.0, 44.0, order=19.0), 0),
    ]
    summary = summarize_runs(runs)
    whole = summary["rows"]["whole stack"]
    assert (whole["before"], whole["after"]) == (200.0, 160.0)
    assert whole["ratio"] == pytest.approx(0.8)
    assert whole["round_ratios"] == pytest.approx([0.8, 150 / 180, 230 / 220])
    checkout = summary["rows"]["checkout"]
    assert (checkout["before"], checkout["after"]) == (55.0, 44.0)
    assert summary["cpu_rows"] == ["whole stack", "checkout", "order"]
    assert summary["rows"]["checkouts/s"]["ratio"] == pytest.approx(1.0)
    assert summary["all_passed"] is True

    table = format_table(summary, "abc123", "def456")
    assert "| whole stack, ms/checkout | 200.0 | 160.0 | 0.80 | 0.80, 0.83, 1.05 | — |" in table
    assert "| checkout, ms/checkout | 55.0 | 44.0 | 0.80 | 0.80, 0.75, 0.80 |" in table
    assert "every invariant passed in 6 of 6 runs" in table


def test_against_the_rest_of_the_stack_takes_the_machines_drift_out() -> None:
    # After the change the machine ran 30 % slower in round 1 and 10 % faster in round 2: every process moved with
    # it, and checkout also lost a fifth of its own cost. Its plain ratio says little; against the rest it is 0.8.
    def after(drift: float) -> dict[str, Any]:
        checkout, order, others = 50.0 * 0.8 * drift, 20.0 * drift, 130.0 * drift
        return report(checkout + order + others, checkout, order=order)

    runs = [
        Run("before", 1, report(200.0, 50.0, order=20.0), 0),
        Run("after", 1, after(1.3), 0),
        Run("after", 2, after(0.9), 0),
        Run("before", 2, report(200.0, 50.0, order=20.0), 0),
    ]
    rows = summarize_runs(runs)["rows"]
    assert rows["checkout"]["round_ratios"] == pytest.approx([1.04, 0.72])
    assert rows["checkout"]["round_against_rest"] == pytest.approx([0.8, 0.8])
    assert rows["checkout"]["against_rest"] == pytest.approx(0.8)
    # order did not change, but the rest it is measured against holds checkout's cut (10 of 180 ms): in round 1
    # order 26/20 against the rest 221/180, so it reads 6 % above 1. A change that moves several processes moves
    # each one's yardstick too.
    assert rows["order"]["round_against_rest"] == pytest.approx([(26 / 20) / (221 / 180), (18 / 20) / (153 / 180)])
    assert rows["order"]["against_rest"] == pytest.approx(1.0588, abs=1e-4)
    assert "against_rest" not in rows["whole stack"]
    assert "| checkout, ms/checkout |" in format_table(summarize_runs(runs), "a", "b")
    assert "| 0.80 (0.80, 0.80) |" in format_table(summarize_runs(runs), "a", "b")


def test_a_failed_invariant_a_failed_run_or_a_missing_report_fails_the_comparison() -> None:
    good = report(200.0, 50.0)
    for bad in (
        Run("after", 1, report(150.0, 40.0, passed=False), 1),
        Run("after", 1, good, 1),
        Run("after", 1, None, 0),
    ):
        summary = summarize_runs([Run("before", 1, good, 0), bad])
        assert summary["all_passed"] is False
    # A process only one side has (a new service) is compared where it is present, not invented on the other.
    summary = summarize_runs([Run("before", 1, good, 0), Run("after", 1, report(210.0, 50.0, notification=9.0), 0)])
    assert summary["rows"]["notification"]["before"] is None
    assert summary["rows"]["notification"]["after"] == 9.0
    assert summary["rows"]["notification"]["ratio"] is None
    assert "| notification, ms/checkout | — | 9.0 | — | — | — (—) |" in format_table(summary, "a", "b")


_STAND_IN = textwrap.dedent(
    """
    import json, os, sys, time
    args = sys.argv[1:]
    out = args[args.index("--out") + 1]
    tree = os.path.basename(os.getcwd())
    with open(os.environ["COMPARE_TEST_LOG"], "a") as log:
        log.write(f"{tree} {os.getpid()} {' '.join(args)}\\n")
    figures = json.load(open("figures.json"))
    time.sleep(figures.get("sleep", 0))
    json.dump(figures["report"], open(out, "w"))
    sys.exit(figures.get("exit", 0))
    """
)


def stand_in_tree(root: Path, name: str, figures: dict[str, Any]) -> Path:
    tree = root / name
    (tree / "bench").mkdir(parents=True)
    (tree / "bench" / "__init__.py").write_text("")
    (tree / "bench" / "__main__.py").write_text(_STAND_IN)
    (tree / "figures.json").write_text(json.dumps(figures))
    return tree


def compare(tmp_path: Path, before: Path, after: Path, *extra: str) -> int:
    return main([
        "--before", str(before), "--after", str(after), "--before-python", sys.executable,
        "--after-python", sys.executable, "--out-dir", str(tmp_path / "out"), *extra,
    ])  # fmt: skip


def test_each_tree_runs_its_own_bench_in_the_alternating_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "runs.log"
    monkeypatch.setenv("COMPARE_TEST_LOG", str(log))
    before = stand_in_tree(tmp_path, "tree-before", {"report": report(200.0, 50.0)})
    after = stand_in_tree(tmp_path, "tree-after", {"report": report(150.0, 40.0)})

    code = compare(tmp_path, before, after, "--runs", "2", "--", "--transport", "rest", "--duration", "30")

    assert code == 0
    ran = [line.split() for line in log.read_text().splitlines()]
    assert [r[0] for r in ran] == ["tree-before", "tree-after", "tree-after", "tree-before"]
    for line in ran:
        assert line[2:6] == ["--transport", "rest", "--duration", "30"]
        assert "--no-progress" in line
        assert "--own-stack" in line  # never a running mesh that KASSA_*_ADDR points at
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rows"]["whole stack"]["ratio"] == pytest.approx(0.75)
    assert summary["all_passed"] is True
    assert sorted(p.name for p in (tmp_path / "out").glob("*.json")) == [
        "after.1.json", "after.2.json", "before.1.json", "before.2.json", "summary.json",
    ]  # fmt: skip
    assert "| whole stack, ms/checkout | 200.0 | 150.0 | 0.75 | 0.75, 0.75 | — |" in capsys.readouterr().out


def test_a_run_past_its_bound_is_stopped_and_the_comparison_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "runs.log"
    monkeypatch.setenv("COMPARE_TEST_LOG", str(log))
    before = stand_in_tree(tmp_path, "tree-before", {"report": report(200.0, 50.0)})
    after = stand_in_tree(tmp_path, "tree-after", {"report": report(150.0, 40.0), "sleep": 60})

    code = compare(tmp_path, before, after, "--runs", "1", "--run-timeout", "1")

    assert code == 1
    pid = int(log.read_text().splitlines()[-1].split()[1])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["runs"][1] == {"side": "after", "round": 1, "exit_code": -1, "passed": False}


def test_a_failing_bench_fails_the_comparison(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPARE_TEST_LOG", str(tmp_path / "runs.log"))
    before = stand_in_tree(tmp_path, "tree-before", {"report": report(200.0, 50.0)})
    after = stand_in_tree(tmp_path, "tree-after", {"report": report(150.0, 40.0, passed=False), "exit": 1})
    assert compare(tmp_path, before, after, "--runs", "1") == 1


def test_usage_errors_exit_2_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = stand_in_tree(tmp_path, "tree-before", {"report": report(200.0, 50.0)})
    assert compare(tmp_path, before, tmp_path / "nowhere") == 2
    assert "not a Kassa tree" in capsys.readouterr().err
    assert compare(tmp_path, before, before, "--", "--out", "x.json") == 2
    assert not (tmp_path / "out").exists()
