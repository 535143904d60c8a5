"""How many inputs the fuzzer tried, per RPC and transport, and how each was answered.

Hooks for tests/fuzz/conftest.py: the process running the fuzz tests counts in :data:`TALLY` and, at the
end of its session, writes the table as JSON to ``$KASSA_FUZZ_REPORT`` (default
``.hypothesis/fuzz-report.json``, git-ignored) and prints it in the terminal summary. Under xdist
(``make test``) the worker's terminal is not shown: read the JSON file, or run ``make fuzz``, which runs
the fuzz tests in one process.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

__all__ = ["TALLY", "pytest_sessionfinish", "pytest_terminal_summary", "record"]

# (transport, rpc) -> outcome label -> count
TALLY: defaultdict[tuple[str, str], Counter[str]] = defaultdict(Counter)
_WRITTEN = pytest.StashKey[str]()


def record(transport: str, rpc: str, outcome: str) -> None:
    TALLY[(transport, rpc)][outcome] += 1


def _rows() -> list[list[Any]]:
    return [[t, r, dict(c)] for (t, r), c in sorted(TALLY.items())]


def _write_json(rows: list[list[Any]]) -> str:
    path = Path(os.environ.get("KASSA_FUZZ_REPORT", ".hypothesis/fuzz-report.json"))
    data = [{"transport": t, "rpc": r, "inputs": sum(o.values()), "outcomes": o} for t, r, o in rows]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"total": sum(d["inputs"] for d in data), "rpcs": data}, indent=2))
    except OSError as exc:
        return f"fuzz report not written: {exc}"
    return f"fuzz report written to {path}"


def pytest_sessionfinish(session: pytest.Session) -> None:
    if TALLY:
        session.config.stash[_WRITTEN] = _write_json(_rows())


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if not TALLY:
        return
    rows = _rows()
    labels = sorted({label for _, _, outcomes in rows for label in outcomes}, key=lambda s: (s != "OK", s))
    tr = terminalreporter
    tr.section("fuzz: inputs tried per RPC")
    width = max(len(r) for _, r, _ in rows)
    tr.write_line(f"{'transport':9}  {'rpc':{width}}  {'inputs':>7}  outcomes")
    total = 0
    for transport, rpc, outcomes in rows:
        n = sum(outcomes.values())
        total += n
        detail = ", ".join(f"{label} {outcomes[label]}" for label in labels if outcomes.get(label))
        tr.write_line(f"{transport:9}  {rpc:{width}}  {n:>7}  {detail}")
    tr.write_line(f"{'':9}  {'total':{width}}  {total:>7}  ({len(rows)} RPCs/routes)")
    tr.write_line(config.stash.get(_WRITTEN, ""))
