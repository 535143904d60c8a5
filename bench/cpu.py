"""CPU time of processes and of the machine, from /proc (Linux).

A service's CPU per checkout is the growth of ``utime + stime`` over the measured window divided by
the checkouts completed in it. PostgreSQL forks a backend per connection, so every process is counted
with its whole tree: its own time, the time of children it has reaped (``cutime + cstime``) and the
time of the descendants still alive.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CpuMeter",
    "ProcStat",
    "all_stats",
    "machine_cpu",
    "parse_proc_stat",
    "read_proc_stat",
    "tree_cpu_seconds",
    "tree_pids",
]

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int

    @property
    def own_ticks(self) -> int:
        return self.utime + self.stime

    @property
    def all_ticks(self) -> int:
        """Own time plus that of reaped children."""
        return self.utime + self.stime + self.cutime + self.cstime


def parse_proc_stat(text: str) -> ProcStat:
    """Parse ``/proc/<pid>/stat``; the command name may contain spaces and parentheses."""
    head, _, rest = text.rpartition(")")
    pid = int(head.split("(", 1)[0])
    fields = rest.split()
    # fields[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14..17.
    return ProcStat(
        pid=pid,
        ppid=int(fields[1]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        cutime=int(fields[13]),
        cstime=int(fields[14]),
    )


def read_proc_stat(pid: int, proc: Path = _PROC) -> ProcStat | None:
    try:
        return parse_proc_stat((proc / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def all_stats(proc: Path = _PROC) -> dict[int, ProcStat]:
    """Every live process's stat, by pid."""
    stats: dict[int, ProcStat] = {}
    for entry in proc.iterdir():
        if entry.name.isdigit() and (stat := read_proc_stat(int(entry.name), proc)) is not None:
            stats[stat.pid] = stat
    return stats


def tree_pids(root: int, stats: Mapping[int, ProcStat]) -> list[int] | None:
    """``root`` and its live descendants; None if it is gone."""
    if root not in stats:
        return None
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    tree, todo, seen = [], [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def tree_cpu_seconds(root: int, stats: Mapping[int, ProcStat], ticks_per_s: int = _TICKS) -> float | None:
    """CPU seconds of ``root``, its reaped children and its live descendants; None if it is gone."""
    tree = tree_pids(root, stats)
    return None if tree is None else sum(stats[pid].all_ticks for pid in tree) / ticks_per_s


@dataclass(frozen=True)
class MachineCpu:
    busy_ticks: int
    total_ticks: int


def machine_cpu(proc: Path = _PROC) -> MachineCpu | None:
    """Aggregate ticks of all cores from the first line of /proc/stat (idle and iowait are not busy)."""
    try:
        first = (proc / "stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    values = [int(v) for v in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    # guest time is already included in user time
    total = sum(values[:8])
    return MachineCpu(busy_ticks=total - idle, total_ticks=total)


class CpuMeter:
    """CPU seconds of named process trees (and the whole machine) between ``start()`` and ``stop()``."""

    def __init__(self, pids: Mapping[str, int], proc: Path = _PROC) -> None:
        self.pids = dict(pids)
        self._proc = proc
        self._before: dict[str, float | None] = {}
        self._after: dict[str, float | None] = {}
        self._machine_before: MachineCpu | None = None
        self._machine_after: MachineCpu | None = None

    def _snapshot(self) -> dict[str, float | None]:
        stats = all_stats(self._proc)
        return {name: tree_cpu_seconds(pid, stats) for name, pid in self.pids.items()}

    def start(self) -> None:
        self._before = self._snapshot()
        self._machine_before = machine_cpu(self._proc)

    def stop(self) -> None:
        self._after = self._snapshot()
        self._machine_after = machine_cpu(self._proc)

    def seconds(self) -> dict[str, float | None]:
        """CPU seconds each process tree used in the window; None when it was not readable at both ends."""
        out: dict[str, float | None] = {}
        for name in self.pids:
            before, after = self._before.get(name), self._after.get(name)
            out[name] = None if before is None or after is None else max(0.0, after - before)
        return out

    def machine_busy_share(self) -> float | None:
        """Share (0..1) of all cores' time that was busy in the window."""
        before, after = self._machine_before, self._machine_after
        if before is None or after is None or after.total_ticks <= before.total_ticks:
            return None
        return (after.busy_ticks - before.busy_ticks) / (after.total_ticks - before.total_ticks)
