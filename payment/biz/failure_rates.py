"""Payment failure rates by code over a window (PaymentAdminService.GetPaymentFailureRates).

A read for operators: what share of payments the provider declined or failed, and why. Changes nothing;
it watches DESIGN.md §4.3 from the outside (a spike of provider errors is where open authorizations come from).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from infra.errors import InvalidArgument
from payment.biz.ports import PaymentStats
from payment.model.stats import FailureRates

__all__ = ["failure_rates"]

DEFAULT_WINDOW = timedelta(hours=1)
MAX_WINDOW = timedelta(days=31)


async def failure_rates(stats: PaymentStats, start: datetime | None, end: datetime | None) -> FailureRates:
    end = end or datetime.now(UTC)
    start = start or end - DEFAULT_WINDOW
    if start >= end:
        raise InvalidArgument("start_time", "must be before end_time")
    if end - start > MAX_WINDOW:
        raise InvalidArgument("start_time", "the window is at most 31 days")
    return await stats.failure_rates(start, end)
