"""Load arithmetic (pure): splitting work across processes and the open-loop arrival schedule."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "LATE_THRESHOLD_S",
    "OpenLoopVerdict",
    "arrival_times",
    "count_late",
    "judge_open_loop",
    "split_evenly",
    "total_arrivals",
]

# An arrival that starts this much after its scheduled time means the load generator fell behind.
LATE_THRESHOLD_S = 0.100
# The rate counts as held when at least this share of the target completes per second ...
HELD_RATE_SHARE = 0.95
# ... and at most this share of arrivals started late.
HELD_LATE_SHARE = 0.01


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` units over ``parts`` workers, the first ones taking one more: 10 over 4 is [3, 3, 2, 2]."""
    if parts <= 0:
        raise ValueError("parts must be positive")
    if total < 0:
        raise ValueError("total must not be negative")
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def total_arrivals(rate: float, duration: float) -> int:
    """Arrivals at ``j / rate`` for every j with ``j / rate < duration``."""
    if rate <= 0 or duration <= 0:
        return 0
    return math.ceil(round(rate * duration, 9))


def arrival_times(rate: float, duration: float, procs: int, index: int) -> list[float]:
    """Scheduled start times (seconds from the common start) of process ``index`` of ``procs``.

    The whole run is one stream of arrivals at fixed intervals ``1 / rate``; the processes deal it out
    round-robin, so each one runs at ``rate / procs`` with an interval of ``procs / rate``, staggered by
    ``index / rate``, and together they offer exactly ``rate`` per second. Times come from integers
    (``j / rate``), not from adding intervals up, so they do not drift over a long run.
    """
    if not 0 <= index < procs:
        raise ValueError(f"index {index} out of range for {procs} processes")
    n = total_arrivals(rate, duration)
    return [j / rate for j in range(index, n, procs)]


@dataclass(frozen=True)
class OpenLoopVerdict:
    target_per_s: float
    offered_per_s: float
    achieved_per_s: float
    finished_per_s: float
    arrivals: int
    late_starts: int
    dropped: int
    held: bool


def judge_open_loop(
    *,
    rate: float,
    duration: float,
    arrivals: int,
    completed: int,
    finished: int,
    last_finish_s: float,
    late_starts: int,
    dropped: int,
) -> OpenLoopVerdict:
    """Whether the mesh kept up with the offered rate.

    ``achieved_per_s`` is completed (successful) checkouts over the time until the last flow finished,
    and at least ``duration``: a mesh that keeps up finishes its last checkout one latency after the
    last arrival, a mesh that falls behind drains a queue long after it, and a refusal or a timeout is
    not a completion. ``finished_per_s`` counts refused and failed flows too. The rate is held when
    ``achieved_per_s`` is at least 95 % of the target, at most 1 % of arrivals started late and none
    was dropped for exceeding the in-flight cap.
    """
    window = max(duration, last_finish_s)
    achieved = completed / window if window > 0 else 0.0
    offered = arrivals / duration if duration > 0 else 0.0
    held = achieved >= HELD_RATE_SHARE * rate and late_starts <= HELD_LATE_SHARE * max(arrivals, 1) and dropped == 0
    return OpenLoopVerdict(
        target_per_s=rate,
        offered_per_s=offered,
        achieved_per_s=achieved,
        finished_per_s=finished / window if window > 0 else 0.0,
        arrivals=arrivals,
        late_starts=late_starts,
        dropped=dropped,
        held=held,
    )


def count_late(lateness_s: Sequence[float], threshold_s: float = LATE_THRESHOLD_S) -> int:
    return sum(1 for late in lateness_s if late > threshold_s)
