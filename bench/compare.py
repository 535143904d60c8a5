"""``python -m bench.compare``: the same bench run in two trees, interleaved, as a before/after table.

The README's Performance section reports each round of work on cost as medians of at least 3 runs per side,
both sides taken in the same session (issue 11, item 7), because this machine's speed drifts by more than most
changes save. This runs that comparison:

* each round runs ``python -m bench <bench args>`` once in each tree, with that tree's own interpreter
  (``<tree>/.venv/bin/python`` unless given), so each side runs its own code, generated code included;
* the order alternates (before then after, then after then before, ...), so a drift of the machine over the
  session falls on both sides alike;
* each run starts its own private stack (``--use-running`` is refused: both sides must measure the same way)
  and writes its JSON report into ``--out-dir``, with its output beside it.

Reported, per process and for the whole stack: each side's median CPU per checkout, the ratio of the medians,
and the ratio within each round (a change is firm when every round agrees); checkouts/s; ConfirmCheckout p50
and p99; Postgres transactions per checkout; the machine's busy share; whether every invariant passed in every
run. The table is printed and written, with the figures as JSON, into ``--out-dir``.

**Against the rest of the stack.** This machine's speed drifts between runs, and every process moves with it: an
A/A comparison (the same mesh on both sides) read 0.87, 1.34 and 1.22 for the whole stack, round by round, and
every process within a few % of that. So each process is also given its ratio divided by that of the rest of the
stack (the whole less the process) in the same round: the drift cancels, and what remains is how the process
moved against the others. In that A/A comparison the medians of the processes above 10 ms a checkout read
0.98 to 1.02 this way, single rounds 0.97 to 1.04; small processes (the SMTP sink, promotion) stay noisy. It reads a
change confined to some processes; where a change moves several (fewer calls between two services), each is
measured against a rest that moved too.

Example (the tree before in its own worktree and venv)::

    git worktree add ../kassa-before <commit> --detach
    (cd ../kassa-before && python3 -m venv .venv && .venv/bin/pip install -e '.[dev]')
    python -m bench.compare --before ../kassa-before --runs 3 -- --transport rest --mode closed --duration 30

Bounded: at most 10 rounds, each run stopped after ``--run-timeout`` seconds (SIGTERM, then SIGKILL to the run's
own process group). Exit status: 0 when every run finished and passed every invariant, 1 otherwise, 2 on a
usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.args import interrupt_on_sigterm, positive

__all__ = [
    "Run",
    "UsageError",
    "bench_arguments",
    "build_parser",
    "format_table",
    "main",
    "order_of_runs",
    "summarize_runs",
    "tree_python",
]

SIDES = ("before", "after")
# Flags of python -m bench that this tool sets itself, or that would point both sides at one running mesh.
_RESERVED = ("--out", "--use-running", "--gateway-url", "--pids")
_TERM_GRACE_S = 60.0


class UsageError(Exception):
    pass


@dataclass(frozen=True)
class Run:
    """One bench run: its side, its round (from 1), and its JSON report (None: the run left none)."""

    side: str
    round: int
    report: Mapping[str, Any] | None
    exit_code: int


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.compare",
        description="The same bench run in two trees, interleaved: medians and per-round ratios per process.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--before", type=Path, required=True, help="the tree before the change (a worktree with a .venv)")
    p.add_argument("--after", type=Path, default=Path("."), help="the tree after the change")
    p.add_argument("--before-python", type=Path, help="interpreter of the tree before (default: its .venv)")
    p.add_argument("--after-python", type=Path, help="interpreter of the tree after (default: its .venv)")
    p.add_argument("--runs", type=positive(int, 10), default=3, help="rounds: one run per tree each")
    p.add_argument("--run-timeout", type=positive(float, 7200), default=1200.0, help="bound of each run (s)")
    p.add_argument("--out-dir", type=Path, help="reports and logs (default: bench-results/compare-<UTC timestamp>)")
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="after --: the arguments of python -m bench")
    return p


def bench_arguments(raw: Sequence[str]) -> list[str]:
    """The arguments given after ``--`` for ``python -m bench``; refuses the ones this tool sets or forbids."""
    args = list(raw[1:] if raw[:1] == ["--"] else raw)
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in _RESERVED:
            raise UsageError(f"{flag} is not allowed: each run starts a private stack, and this tool sets --out")
    return args


def tree_python(side: str, tree: Path, given: Path | None) -> Path:
    """The interpreter ``side``'s runs use: ``given``, else the tree's own ``.venv``; refused when missing."""
    if not (tree / "bench" / "__main__.py").is_file():
        raise UsageError(f"{tree} is not a Kassa tree (no bench/__main__.py)")
    if given is not None:
        if not os.access(given, os.X_OK):
            raise UsageError(f"--{side}-python {given} is not an executable interpreter")
        return given
    python = tree / ".venv" / "bin" / "python"
    if not os.access(python, os.X_OK):
        raise UsageError(
            f"no interpreter at {python}: create the tree's venv (cd {tree} && python3 -m venv .venv && "
            f".venv/bin/pip install -e '.[dev]'), or name one with --{side}-python"
        )
    return python


def order_of_runs(runs: int) -> list[tuple[int, str]]:
    """(round, side) in the order they run: before then after in odd rounds, after then before in even ones."""
    order: list[tuple[int, str]] = []
    for n in range(1, runs + 1):
        sides = SIDES if n % 2 else tuple(reversed(SIDES))
        order += [(n, side) for side in sides]
    return order


def _run_bench(python: Path, tree: Path, args: Sequence[str], *, out: Path, log: Path, timeout_s: float) -> int:
    """One ``python -m bench`` in ``tree``, in a process group of its own; its exit code (-1: timed out)."""
    with log.open("w") as sink:
        proc = subprocess.Popen(
            # --own-stack: a private stack even where KASSA_*_ADDR points at a running mesh.
            [str(python), "-m", "bench", *args, "--own-stack", "--no-progress", "--out", str(out)],
            cwd=tree,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop(proc)
            return -1
        except BaseException:  # interrupted (Ctrl-C, SIGTERM): the run goes down with this tool
            _stop(proc)
            raise


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the bench then stops its private stack), and SIGKILL to the run's own group if it lingers."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=_TERM_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _load(path: Path) -> Mapping[str, Any] | None:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _ratio(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None or before == 0 else after / before


def _get(report: Mapping[str, Any] | None, *path: str) -> float | None:
    value: Any = report
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# (row label, path into a report): the figures compared besides the processes' CPU.
_FIGURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("checkouts/s", ("load", "checkouts_per_s")),
    ("ConfirmCheckout p50 ms", ("latency_ms", "confirm", "p50")),
    ("ConfirmCheckout p99 ms", ("latency_ms", "confirm", "p99")),
    ("Postgres transactions per checkout", ("database", "transactions_per_checkout")),
    ("machine busy share", ("cpu", "machine", "busy_share")),
    ("load generators, ms/checkout", ("cpu", "load_generators", "ms_per_checkout")),
)
WHOLE = "whole stack"


def _passed(run: Run) -> bool:
    invariants = run.report.get("invariants") if run.report is not None else None
    return run.exit_code == 0 and isinstance(invariants, Mapping) and invariants.get("passed") is True


_Pair = tuple[float | None, float | None]  # (before, after) of one round


def _against_rest(process: Sequence[_Pair], whole: Sequence[_Pair]) -> list[float | None]:
    """Per round, ``(process, whole)`` of (before, after): the process's ratio divided by the ratio of the rest of
    the stack (the whole less the process). See the module's docstring."""
    out: list[float | None] = []
    for (b, a), (wb, wa) in zip(process, whole, strict=True):
        rest = _ratio(None if wa is None or a is None else wa - a, None if wb is None or b is None else wb - b)
        own = _ratio(a, b)
        out.append(None if own is None or rest is None or rest == 0 else own / rest)
    return out


def summarize_runs(runs: Sequence[Run]) -> dict[str, Any]:
    """Medians per side, their ratio, and each round's ratio: for every service's CPU per checkout (by service,
    replicas summed), the whole stack's, and the figures of ``_FIGURES``. For each service also its ratio against
    the rest of the stack, round by round, and their median."""
    by_side = {side: {r.round: r.report for r in runs if r.side == side} for side in SIDES}
    rounds = sorted({r.round for r in runs})
    services: list[str] = []
    for run in runs:
        for name in (run.report or {}).get("cpu", {}).get("services", {}):
            if name not in services:
                services.append(name)
    rows: dict[str, tuple[str, ...]] = {WHOLE: ("cpu", "stack_total", "ms_per_checkout")}
    rows.update({name: ("cpu", "services", name, "ms_per_checkout") for name in services})
    rows.update(dict(_FIGURES))
    table: dict[str, Any] = {}
    for label, path in rows.items():
        values = {side: [_get(by_side[side].get(n), *path) for n in rounds] for side in SIDES}
        before, after = _median(values["before"]), _median(values["after"])
        pairs = list(zip(values["before"], values["after"], strict=True))
        table[label] = {
            "before": before,
            "after": after,
            "ratio": _ratio(after, before),
            "per_round": {side: values[side] for side in SIDES},
            "round_ratios": [_ratio(a, b) for b, a in pairs],
        }
        if label in services:
            whole = table[WHOLE]["per_round"]
            against = _against_rest(pairs, list(zip(whole["before"], whole["after"], strict=True)))
            table[label]["round_against_rest"] = against
            table[label]["against_rest"] = _median(against)
    return {
        "rounds": len(rounds),
        "cpu_rows": [WHOLE, *services],
        "rows": table,
        "runs": [{"side": r.side, "round": r.round, "exit_code": r.exit_code, "passed": _passed(r)} for r in runs],
        "all_passed": bool(runs) and all(_passed(r) for r in runs),
    }


def _num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def format_table(summary: Mapping[str, Any], before: str, after: str) -> str:
    """The summary as a markdown table: CPU per checkout by process first (ms), then the other figures."""
    rows: Mapping[str, Mapping[str, Any]] = summary["rows"]
    lines = [
        f"| medians of {summary['rounds']} rounds | before ({before}) | after ({after}) | ratio | ratio per round "
        "| against the rest of the stack (per round) |",
        "|---|---|---|---|---|---|",
    ]
    for label, row in rows.items():
        digits = 2 if label == "machine busy share" else 1
        name = f"{label}, ms/checkout" if label in summary["cpu_rows"] else label
        per_round = ", ".join(_num(r, 2) for r in row["round_ratios"])
        against = "—"
        if "against_rest" in row:
            each = ", ".join(_num(r, 2) for r in row["round_against_rest"])
            against = f"{_num(row['against_rest'], 2)} ({each})"
        lines.append(
            f"| {name} | {_num(row['before'], digits)} | {_num(row['after'], digits)} | {_num(row['ratio'], 2)} "
            f"| {per_round} | {against} |"
        )
    passed = sum(1 for r in summary["runs"] if r["passed"])
    lines.append("")
    lines.append(f"every invariant passed in {passed} of {len(summary['runs'])} runs")
    return "\n".join(lines)


def run(
    args: argparse.Namespace, bench_args: Sequence[str], progress: Callable[[str], None] = print
) -> tuple[dict[str, Any], str]:
    """Every run of the plan, then the summary (written into the output directory) and its table."""
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    pythons = {
        "before": tree_python("before", trees["before"], args.before_python),
        "after": tree_python("after", trees["after"], args.after_python),
    }
    out_dir = args.out_dir or Path("bench-results") / f"compare-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    out_dir.mkdir(parents=True, exist_ok=True)
    out_dir = out_dir.resolve()
    runs: list[Run] = []
    plan = order_of_runs(args.runs)
    for index, (n, side) in enumerate(plan, start=1):
        report_path, log_path = out_dir / f"{side}.{n}.json", out_dir / f"{side}.{n}.log"
        report_path.unlink(missing_ok=True)  # an earlier comparison's report is not this run's
        progress(f"compare: run {index}/{len(plan)}: {side} (round {n}) in {trees[side]} ...")
        code = _run_bench(
            pythons[side], trees[side], bench_args, out=report_path, log=log_path, timeout_s=args.run_timeout
        )
        result = Run(side, n, _load(report_path), code)
        runs.append(result)
        whole = _get(result.report, "cpu", "stack_total", "ms_per_checkout")
        verdict = "PASS" if _passed(result) else f"FAIL (exit code {code}, see {log_path})"
        progress(f"compare: {side} (round {n}): whole stack {_num(whole)} ms/checkout, {verdict}")
    summary = summarize_runs(runs)
    summary["trees"] = {side: str(path) for side, path in trees.items()}
    summary["bench_args"] = list(bench_args)
    table = format_table(summary, str(args.before), str(args.after))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "summary.md").write_text(table + "\n")
    progress(f"compare: reports, logs and summary in {out_dir}")
    return summary, table


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        bench_args = bench_arguments(args.bench_args)
        interrupt_on_sigterm()
        summary, table = run(args, bench_args, progress=lambda m: print(m, file=sys.stderr, flush=True))
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"python -m bench.compare: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("python -m bench.compare: interrupted", file=sys.stderr)
        return 1
    print(table)
    return 0 if summary["all_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
