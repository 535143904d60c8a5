"""Latency percentiles and summaries (pure)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

__all__ = ["LatencySummary", "percentile", "summarize"]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values: always a value that was observed.

    The nearest rank (``ceil(q/100 * n)``, 1-based) is the usual definition for latency reports: the
    p99 of 100 samples is the 99th smallest, and a p100 is the maximum. Raises on an empty input.
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


@dataclass(frozen=True)
class LatencySummary:
    """Milliseconds; every field but ``count`` is None when there were no samples."""

    count: int
    mean: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None

    def as_dict(self) -> dict[str, float | int | None]:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def summarize(values: Iterable[float]) -> LatencySummary:
    ordered = sorted(values)
    if not ordered:
        return LatencySummary(count=0)
    return LatencySummary(
        count=len(ordered),
        mean=sum(ordered) / len(ordered),
        p50=percentile(ordered, 50),
        p95=percentile(ordered, 95),
        p99=percentile(ordered, 99),
        max=ordered[-1],
    )
