"""The bench report: merge what the workers measured, render it as text, write it as JSON (pure but for the file)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.flow import STEPS
from bench.invariants import InvariantResult
from bench.load import WorkerResult
from bench.schedule import LATE_THRESHOLD_S, judge_open_loop
from bench.stats import summarize
from devstack.mesh import service_of

__all__ = ["SCHEMA", "aggregate", "build_report", "cpu_section", "default_out_path", "format_report", "write_report"]

SCHEMA = "kassa-bench/1"


def default_out_path(now: datetime, directory: Path = Path("bench-results")) -> Path:
    """``bench-results/20260101T120000Z.json`` (UTC)."""
    return directory / f"{now.strftime('%Y%m%dT%H%M%SZ')}.json"


def aggregate(
    results: Sequence[WorkerResult],
    *,
    mode: str,
    duration_s: float | None,
    rate: float | None,
    elapsed_s: float,
) -> dict[str, Any]:
    """Throughput, latency percentiles, errors and the open-loop verdict over all workers.

    Throughput is successful checkouts per second of a window: the duration in a closed loop with
    ``--duration`` (checkouts still in flight at its end finish but are not counted in the rate),
    the time of the last finished checkout with ``--checkouts``, and in an open loop the duration or,
    if later, the time the last checkout finished (so a backlog drained after the arrivals stopped
    stretches the window instead of being counted as throughput).
    """
    ok = sum(r.ok for r in results)
    failed = sum(r.failed for r in results)
    cancelled = sum(r.cancelled for r in results)
    finished_at = [t for r in results for t in r.finished_at_s]
    ok_at = [t for r in results for t in r.ok_at_s]
    last_finish = max(finished_at, default=0.0)
    if mode == "closed" and duration_s is not None:
        window = duration_s
        in_window = sum(1 for t in ok_at if t <= duration_s)
    elif mode == "open" and duration_s is not None:
        window = max(duration_s, last_finish)
        in_window = ok
    else:
        window = last_finish or elapsed_s
        in_window = ok
    errors: Counter[str] = Counter()
    warmup_errors: Counter[str] = Counter()
    steps: dict[str, list[float]] = {}
    for r in results:
        errors.update(r.errors)
        warmup_errors.update(r.warmup_errors)
        for step, values in r.step_ms.items():
            steps.setdefault(step, []).extend(values)
    if cancelled:
        errors["cancelled at the end of the drain"] += cancelled
    load: dict[str, Any] = {
        "started": sum(r.started for r in results),
        "completed": ok,
        "failed": failed,
        "cancelled": cancelled,
        "window_s": round(window, 3),
        "completed_in_window": in_window,
        "checkouts_per_s": round(in_window / window, 2) if window > 0 else 0.0,
        "elapsed_s": round(elapsed_s, 3),
        "loadgen_cpu_s": round(sum(r.cpu_s for r in results), 3),
    }
    if mode == "open" and rate is not None and duration_s is not None:
        verdict = judge_open_loop(
            rate=rate,
            duration=duration_s,
            arrivals=sum(r.arrivals for r in results),
            completed=ok,
            finished=ok + failed,
            last_finish_s=last_finish,
            late_starts=sum(r.late_starts for r in results),
            dropped=sum(r.dropped for r in results),
        )
        load["open_loop"] = {
            "target_per_s": verdict.target_per_s,
            "offered_per_s": round(verdict.offered_per_s, 2),
            "achieved_per_s": round(verdict.achieved_per_s, 2),
            "finished_per_s": round(verdict.finished_per_s, 2),
            "arrivals": verdict.arrivals,
            "late_starts": verdict.late_starts,
            "late_threshold_ms": LATE_THRESHOLD_S * 1000,
            "max_lateness_ms": round(max((r.max_lateness_ms for r in results), default=0.0), 2),
            "dropped": verdict.dropped,
            "held": verdict.held,
        }
    ordered_steps = [s for s in STEPS if s in steps] + sorted(s for s in steps if s not in STEPS)
    return {
        "load": load,
        "latency_ms": {
            "confirm": summarize(v for r in results for v in r.confirm_ms).as_dict(),
            "flow": summarize(v for r in results for v in r.flow_ms).as_dict(),
            "steps": {step: summarize(steps[step]).as_dict() for step in ordered_steps},
        },
        "errors": dict(errors.most_common()),
        "warmup_errors": dict(warmup_errors.most_common()),
    }


def cpu_section(
    seconds: Mapping[str, float | None],
    *,
    pids: Mapping[str, int],
    checkouts: int,
    elapsed_s: float,
    machine_busy_share: float | None,
    cores: int,
    loadgen_cpu_s: float,
) -> dict[str, Any]:
    """CPU seconds, milliseconds per checkout and share of one core, per process of the stack, and per service
    (its replicas summed: ``checkout.0`` + ``checkout.1`` is ``checkout``; a process without replicas is its own)."""

    def row(cpu: float | None) -> dict[str, float | None]:
        if cpu is None:
            return {"cpu_s": None, "ms_per_checkout": None, "core_share": None}
        return {
            "cpu_s": round(cpu, 3),
            "ms_per_checkout": round(cpu * 1000 / checkouts, 3) if checkouts else None,
            "core_share": round(cpu / elapsed_s, 3) if elapsed_s > 0 else None,
        }

    processes = {name: {"pid": pids.get(name), **row(cpu)} for name, cpu in seconds.items()}
    known = [v for v in seconds.values() if v is not None]
    replicas: dict[str, list[str]] = {}
    for name in seconds:
        replicas.setdefault(service_of(name), []).append(name)
    services = {}
    for service, names in replicas.items():
        cpus = [seconds[name] for name in names]
        total = None if any(cpu is None for cpu in cpus) else sum(cpu for cpu in cpus if cpu is not None)
        services[service] = {"replicas": len(names), **row(total)}
    return {
        "processes": processes,
        "services": services,
        "stack_total": row(sum(known)) if known else row(None),
        "load_generators": row(loadgen_cpu_s),
        "machine": {
            "cores": cores,
            "busy_share": round(machine_busy_share, 3) if machine_busy_share is not None else None,
        },
    }


def build_report(
    *,
    started_at: datetime,
    finished_at: datetime,
    config: Mapping[str, Any],
    stack: Mapping[str, Any],
    seed: Mapping[str, Any],
    measured: Mapping[str, Any],
    cpu: Mapping[str, Any],
    database: Mapping[str, Any] | None,
    invariants: Sequence[InvariantResult],
    settled_after_s: float,
    invariant_source: str,
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "config": dict(config),
        "stack": dict(stack),
        "seed": dict(seed),
        **measured,
        "cpu": dict(cpu),
        "database": dict(database) if database is not None else None,
        "invariants": {
            "source": invariant_source,
            "settled_after_s": round(settled_after_s, 2),
            "passed": all(r.passed for r in invariants),
            "checks": [r.as_dict() for r in invariants],
        },
    }


def write_report(report: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    return path


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_report(report: Mapping[str, Any]) -> str:
    """The report as a page of text for the terminal."""
    cfg, load = report["config"], report["load"]
    lines: list[str] = []
    shape = f"concurrency {cfg.get('concurrency')}" if cfg.get("mode") == "closed" else f"rate {cfg.get('rate')}/s"
    bound = f"{cfg['duration']} s" if cfg.get("duration") else f"{cfg.get('checkouts')} checkouts"
    where = "private stack" if report["stack"].get("self_started") else "running stack"
    if (cfg.get("replicas") or 1) > 1:
        where += f" with {cfg['replicas']} replicas of each service"
    lines.append(
        f"Kassa bench: {cfg.get('mode')} loop over {cfg.get('transport')}, {shape}, {bound}, "
        f"{cfg.get('procs')} load processes, {where}"
    )
    lines.append(
        f"  checkouts    {load['completed']} completed, {load['failed']} failed, {load['cancelled']} cancelled"
        f"  ->  {load['checkouts_per_s']:.1f} checkouts/s  (window {load['window_s']:.1f} s)"
    )
    if "open_loop" in load:
        ol = load["open_loop"]
        lines.append(
            f"  open loop    target {ol['target_per_s']:g}/s, offered {ol['offered_per_s']:.1f}/s, "
            f"completed {ol['achieved_per_s']:.1f}/s (finished incl. errors {ol['finished_per_s']:.1f}/s); "
            f"{ol['late_starts']} of {ol['arrivals']} arrivals started "
            f"> {ol['late_threshold_ms']:.0f} ms late (max {ol['max_lateness_ms']:.0f} ms), {ol['dropped']} dropped"
            f"  ->  rate {'HELD' if ol['held'] else 'NOT HELD'}"
        )
    lat = report["latency_ms"]
    lines.append(f"  {'latency ms':<14}{'n':>7}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}")
    rows = [("confirm", lat["confirm"]), ("whole flow", lat["flow"])]
    rows += [(f"  {step}", summary) for step, summary in lat.get("steps", {}).items() if step != "confirm"]
    for label, s in rows:
        lines.append(
            f"  {label:<14}{s['count']:>7}{_ms(s['p50']):>9}{_ms(s['p95']):>9}{_ms(s['p99']):>9}{_ms(s['max']):>9}"
        )
    errors = report.get("errors") or {}
    lines.append("  errors" + ("       none" if not errors else ""))
    for reason, count in errors.items():
        lines.append(f"    {count:>7}  {reason}")
    cpu = report["cpu"]
    lines.append(f"  {'cpu':<14}{'pid':>8}{'cpu s':>9}{'ms/chk':>9}{'cores':>7}")
    for name, row in [
        *cpu["processes"].items(),
        ("stack total", cpu["stack_total"]),
        ("load gens", cpu["load_generators"]),
    ]:
        pid = row.get("pid") or ""
        share = "-" if row["core_share"] is None else f"{row['core_share']:.2f}"
        lines.append(f"  {name:<14}{pid:>8}{_ms(row['cpu_s']):>9}{_ms(row['ms_per_checkout']):>9}{share:>7}")
    services = cpu.get("services") or {}
    if any(row["replicas"] > 1 for row in services.values()):
        lines.append(f"  {'per service':<14}{'procs':>8}{'cpu s':>9}{'ms/chk':>9}{'cores':>7}")
        for name, row in services.items():
            share = "-" if row["core_share"] is None else f"{row['core_share']:.2f}"
            lines.append(
                f"  {name:<14}{row['replicas']:>8}{_ms(row['cpu_s']):>9}{_ms(row['ms_per_checkout']):>9}{share:>7}"
            )
    machine = cpu["machine"]
    if machine.get("busy_share") is not None:
        lines.append(f"  machine      {machine['busy_share'] * 100:.0f}% busy of {machine['cores']} cores")
    db = report.get("database")
    if db:
        lines.append(
            f"  database     {db['transactions_per_checkout']} transactions and {db['rows_written_per_checkout']} rows "
            f"written per checkout; {db['blks_read']} blocks read, {db['deadlocks']} deadlocks"
        )
    inv = report["invariants"]
    lines.append(f"  invariants   ({inv['source']}, settled after {inv['settled_after_s']:.1f} s)")
    for check in inv["checks"]:
        lines.append(f"    {'PASS' if check['passed'] else 'FAIL'}  {check['name']}: {check['detail']}")
    return "\n".join(lines)
