"""How many injected faults actually fired, read from what the processes logged.

``infra.faults`` writes ``kassa fault: crash at <point> (pid N)`` straight to stderr before ``os._exit``,
and logs ``fault: error at <point>``, ``fault: delay 1.500s at <point>`` and ``fault: <kind> at <point>``
(the sandbox's duplicate and reorder) as warnings. Each process's log is its stderr, so counting those
lines across the run's log folder counts the faults, by kind and point.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

__all__ = ["count_fired"]

_CRASH = re.compile(r"kassa fault: crash at ([\w.\-]+)")
_OTHER = re.compile(r"(?<!kassa )fault: (\w+)(?: [\d.]+s)? at ([\w.\-]+)")


def count_fired(log_dirs: Iterable[Path]) -> Counter[tuple[str, str]]:
    """``{(kind, point): times}`` over every ``*.log`` below ``log_dirs``."""
    fired: Counter[tuple[str, str]] = Counter()
    for folder in log_dirs:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.log")):
            with path.open(errors="replace") as lines:
                for line in lines:
                    if "fault:" not in line:
                        continue
                    if m := _CRASH.search(line):
                        fired["crash", m.group(1)] += 1
                    elif m := _OTHER.search(line):
                        fired[m.group(1), m.group(2)] += 1
    return fired
