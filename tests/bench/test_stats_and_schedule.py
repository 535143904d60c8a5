"""Percentiles and the load arithmetic of the bench (pure)."""

from __future__ import annotations

import itertools

import pytest

from bench.schedule import (
    arrival_times,
    count_late,
    judge_open_loop,
    split_evenly,
    total_arrivals,
)
from bench.stats import percentile, summarize

pytestmark = pytest.mark.unit


def test_percentile_is_nearest_rank_and_always_an_observed_value() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 0) == 1.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 51) == 3.0


@pytest.mark.parametrize("q", [-1, 100.5])
def test_percentile_refuses_out_of_range(q: float) -> None:
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        percentile([1.0], q)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_summarize_sorts_and_rounds_for_the_report() -> None:
    summary = summarize([30.0, 10.0, 20.0, 40.0])
    assert (summary.count, summary.p50, summary.p95, summary.p99, summary.max) == (4, 20.0, 40.0, 40.0, 40.0)
    assert summary.mean == 25.0
    assert summarize([1.23456]).as_dict() == {
        "count": 1,
        "mean": 1.23,
        "p50": 1.23,
        "p95": 1.23,
        "p99": 1.23,
        "max": 1.23,
    }


def test_summarize_of_nothing_has_only_a_count() -> None:
    assert summarize([]).as_dict() == {"count": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}


def test_split_evenly_gives_the_remainder_to_the_first_parts() -> None:
    assert split_evenly(10, 4) == [3, 3, 2, 2]
    assert split_evenly(16, 2) == [8, 8]
    assert split_evenly(1, 3) == [1, 0, 0]
    assert sum(split_evenly(1001, 7)) == 1001
    with pytest.raises(ValueError):
        split_evenly(3, 0)
    with pytest.raises(ValueError):
        split_evenly(-1, 2)


def test_total_arrivals_is_rate_times_duration_rounded_up() -> None:
    assert total_arrivals(167, 30) == 5010
    assert total_arrivals(10, 2.5) == 25
    assert total_arrivals(3, 1.1) == 4  # at 0, 1/3, 2/3 and 1 s
    assert total_arrivals(0.5, 1) == 1
    assert total_arrivals(0, 10) == 0


def test_arrivals_of_all_processes_interleave_into_one_fixed_interval_stream() -> None:
    rate, duration, procs = 167.0, 30.0, 3
    per_process = [arrival_times(rate, duration, procs, i) for i in range(procs)]
    merged = sorted(t for times in per_process for t in times)
    assert len(merged) == total_arrivals(rate, duration) == 5010
    assert merged == pytest.approx([j / rate for j in range(5010)])
    assert all(t < duration for t in merged)
    # each process runs at rate / procs, staggered by index / rate
    for i, times in enumerate(per_process):
        assert times[0] == pytest.approx(i / rate)
        gaps = {round(b - a, 9) for a, b in itertools.pairwise(times)}
        assert gaps == {round(procs / rate, 9)}
    assert [len(t) for t in per_process] == [1670, 1670, 1670]


def test_arrival_times_with_fewer_arrivals_than_processes() -> None:
    assert arrival_times(1, 1, 2, 0) == [0.0]
    assert arrival_times(1, 1, 2, 1) == []
    with pytest.raises(ValueError):
        arrival_times(1, 1, 2, 2)


def test_open_loop_is_held_when_completions_keep_up_and_nothing_starts_late() -> None:
    verdict = judge_open_loop(
        rate=167,
        duration=30,
        arrivals=5010,
        completed=4990,
        finished=5010,
        last_finish_s=30.4,
        late_starts=3,
        dropped=0,
    )
    assert verdict.held
    assert verdict.offered_per_s == 167.0
    assert verdict.achieved_per_s == pytest.approx(4990 / 30.4)
    assert verdict.finished_per_s == pytest.approx(5010 / 30.4)


def test_open_loop_is_not_held_when_a_backlog_drains_after_the_arrivals() -> None:
    verdict = judge_open_loop(
        rate=167,
        duration=30,
        arrivals=5010,
        completed=5010,
        finished=5010,
        last_finish_s=60.0,
        late_starts=0,
        dropped=0,
    )
    assert not verdict.held
    assert verdict.achieved_per_s == pytest.approx(83.5)


@pytest.mark.parametrize(("late", "dropped"), [(51, 0), (0, 1)])
def test_open_loop_is_not_held_with_late_starts_or_drops(late: int, dropped: int) -> None:
    verdict = judge_open_loop(
        rate=10,
        duration=500,
        arrivals=5000,
        completed=5000,
        finished=5000,
        last_finish_s=500,
        late_starts=late,
        dropped=dropped,
    )
    assert not verdict.held


def test_open_loop_is_not_held_when_arrivals_finish_as_errors() -> None:
    verdict = judge_open_loop(
        rate=100, duration=10, arrivals=1000, completed=500, finished=1000, last_finish_s=10, late_starts=0, dropped=0
    )
    assert not verdict.held
    assert (verdict.achieved_per_s, verdict.finished_per_s) == (50.0, 100.0)


def test_count_late_uses_a_strict_threshold() -> None:
    assert count_late([0.0, 0.1, 0.1001, 2.0]) == 2
    assert count_late([0.3], threshold_s=0.5) == 0
