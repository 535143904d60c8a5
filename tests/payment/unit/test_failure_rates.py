"""Payment failure rates of a window (pure), and the window's validation."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from kernel.errors import InvalidArgument
from payment.biz.failure_rates import GetFailureRates
from payment.model.stats import FailureRates

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


class _Stats:
    def __init__(self) -> None:
        self.asked: list[tuple[datetime, datetime]] = []

    async def failure_rates(self, start: datetime, end: datetime) -> FailureRates:
        self.asked.append((start, end))
        return FailureRates(start, end, 8, {"card_declined": 2, "unknown": 2})


class _Uow:
    """Only reads, of the stats."""

    def __init__(self, stats: _Stats) -> None:
        self.stats = stats

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[_Uow]:
        yield self


async def test_rates_by_code_and_the_default_window() -> None:
    stats = _Stats()
    rates = await GetFailureRates(_Uow(stats))(None, T0)
    assert stats.asked == [(T0 - timedelta(hours=1), T0)]
    assert (rates.failed, rates.failure_rate, rates.rate("card_declined"), rates.rate("other")) == (4, 0.5, 0.25, 0)
    assert FailureRates(T0, T0).failure_rate == 0.0


@pytest.mark.parametrize(("start", "end"), [(T0, T0), (T0, T0 - timedelta(seconds=1)), (T0 - timedelta(days=40), T0)])
async def test_a_bad_window_names_start_time(start: datetime, end: datetime) -> None:
    stats = _Stats()
    with pytest.raises(InvalidArgument) as err:
        await GetFailureRates(_Uow(stats))(start, end)
    assert err.value.field == "start_time" and stats.asked == []
