"""The end of a run, for a person and for a file: faults by kind, checkouts by outcome, each invariant.

Outcomes are grouped as a reader asks about them: confirmed (by card, cash on delivery, 3-D Secure
completed), declined, 3-D Secure failed or abandoned, cancelled, abandoned before confirming, refused
(by reason: OUT_OF_STOCK, PROMOTION_EXHAUSTED, …), failed (a transient error outlasted the retries) and
unknown (Confirm never answered and the session was still not finished); plus how many customers had
to retry, and how often.
"""

from __future__ import annotations

import json
import shlex
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaos.run import Outcome
from devstack.check import format_findings

__all__ = ["as_json", "format_report", "record_failure", "replay_command", "write_json"]


def replay_command(argv: Sequence[str], seed: int) -> str:
    """The command line that replays this run: its own arguments, with the seed pinned."""
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == "--seed" and i + 1 < len(args):
            del args[i : i + 2]
            break
        if arg.startswith("--seed="):
            del args[i]
            break
    return shlex.join(["python", "-m", "chaos", "--seed", str(seed), *args])


def _group(outcome: str) -> str:
    """``unknown: X after retries; session CONFIRMING`` counts as ``unknown: X after retries``."""
    return outcome.split(";", 1)[0]


def _faults(outcome: Outcome) -> list[str]:
    lines = []
    by_kind: dict[str, Counter[str]] = {}
    failed = 0
    for fired in outcome.fired:
        by_kind.setdefault(fired.action.kind, Counter())[fired.action.target or "-"] += 1
        failed += not fired.ok
    planned = Counter(a.kind for a in outcome.plan.actions)
    for kind, targets in sorted(by_kind.items()):
        detail = ", ".join(f"{t} {n}" for t, n in sorted(targets.items()) if t != "-")
        lines.append(
            f"    {kind:<14} {sum(targets.values()):>4} of {planned[kind]} planned"
            + (f"  ({detail})" if detail else "")
        )
    for kind in sorted(set(planned) - set(by_kind)):
        lines.append(f"    {kind:<14}    0 of {planned[kind]} planned (the run ended before their point)")
    if failed:
        lines.append(f"    {failed} of them could not be done (see the log above)")
    fired_kinds: dict[str, Counter[str]] = {}
    for (kind, point), n in outcome.fired_in_process.items():
        fired_kinds.setdefault(kind, Counter())[point] = n
    lines.append(f"  in-process (KASSA_FAULTS, seed {outcome.plan.seed}): {len(outcome.plan.rules())} rules")
    for kind, points in sorted(fired_kinds.items()):
        detail = ", ".join(f"{p} {n}" for p, n in points.most_common())
        lines.append(f"    {kind:<14} {sum(points.values()):>4} fired  ({detail})")
    if not fired_kinds:
        lines.append("    none fired (no process logged a fault)")
    restarts = ", ".join(f"{name} {n}" for name, n in sorted(outcome.restarts.items()) if n)
    lines.append(
        f"  process restarts by the supervisor: {sum(outcome.restarts.values())}"
        + (f" ({restarts})" if restarts else "")
    )
    return lines


def format_report(outcome: Outcome, argv: Sequence[str]) -> str:
    o = outcome.options
    visits = outcome.visits
    lines = [
        "",
        f"chaos run: seed {o.seed}, {len(visits)} of {o.checkouts} checkouts over {o.transport}, "
        f"{o.concurrency} at a time, {outcome.load_seconds:.0f}s of load"
        + (f", {outcome.cut_off} cut off by --max-seconds" if outcome.cut_off else ""),
        "faults injected",
        "  from outside (by the run's schedule):",
        *_faults(outcome),
        "checkouts by outcome",
    ]
    tally = Counter(_group(v.outcome) for v in visits)
    for name, n in tally.most_common():
        lines.append(f"  {n:>6}  {name}")
    retried = [v for v in visits if v.retries]
    lines.append(f"  {len(retried):>6}  retried at least once ({sum(v.retries for v in visits)} retries in all)")
    by_transport = Counter(v.transport for v in visits)
    lines.append("  " + ", ".join(f"{t}: {n}" for t, n in sorted(by_transport.items())))
    if outcome.recovery is not None:
        state = "settled" if outcome.recovery.settled else "NOT settled"
        lines.append(f"recovery window: {state} after {outcome.recovery_seconds:.0f}s ({outcome.recovery.describe()})")
    lines.append("invariants (DESIGN.md §4) and what the customers were told")
    lines.append(format_findings(outcome.findings))
    lines.append(f"replay: {replay_command(argv, o.seed)}")
    return "\n".join(lines)


def as_json(outcome: Outcome, argv: Sequence[str]) -> dict[str, Any]:
    o = outcome.options
    return {
        "schema": "kassa-chaos/1",
        "seed": o.seed,
        "options": o.__dict__,
        "replay": replay_command(argv, o.seed),
        "catalog": outcome.catalog,
        "faults": {
            "rules": outcome.plan.rules(),
            "actions": [
                {
                    "kind": f.action.kind,
                    "target": f.action.target,
                    "at_share": f.action.at,
                    "at_s": round(f.at_s, 2),
                    "ok": f.ok,
                    "detail": f.detail,
                }
                for f in outcome.fired
            ],
            "planned_actions": len(outcome.plan.actions),
            "fired_in_process": [
                {"kind": kind, "point": point, "times": n}
                for (kind, point), n in sorted(outcome.fired_in_process.items())
            ],
            "restarts": outcome.restarts,
            "given_up": outcome.given_up,
        },
        "load_seconds": round(outcome.load_seconds, 1),
        "outcomes": dict(Counter(_group(v.outcome) for v in outcome.visits).most_common()),
        "personas": dict(Counter(v.persona for v in outcome.visits).most_common()),
        "retried": sum(1 for v in outcome.visits if v.retries),
        "retries": sum(v.retries for v in outcome.visits),
        "recovery": {
            "settled": bool(outcome.recovery and outcome.recovery.settled),
            "seconds": round(outcome.recovery_seconds, 1),
            "owed": outcome.recovery.counts if outcome.recovery else {},
        },
        "invariants": [f.as_dict() for f in outcome.findings],
        "visits": [
            {
                "index": v.index,
                "persona": v.persona,
                "transport": v.transport,
                "outcome": v.outcome,
                "retries": v.retries,
                "session_id": v.session_id,
                "order_id": v.order_id,
                "told": v.told,
                "seconds": round(v.seconds, 2),
                "trail": v.trail,
                "anomalies": v.anomalies,
            }
            for v in outcome.visits
        ],
        "passed": outcome.passed,
    }


def record_failure(path: Path, outcome: Outcome, argv: Sequence[str]) -> None:
    """Append the failing seed and its replay command, so it can be run again after a fix."""
    failed = ", ".join(f.name for f in outcome.findings if not f.passed) or "no verdict"
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(f"{stamp}  seed {outcome.options.seed}  failed: {failed}\n")
        out.write(f"    {replay_command(argv, outcome.options.seed)}\n")


def write_json(path: Path, outcome: Outcome, argv: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(as_json(outcome, argv), indent=2, default=str) + "\n")
