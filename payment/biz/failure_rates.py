"""Payment failure rates by code over a window (PaymentAdminService.GetPaymentFailureRates).

A read for operators: what share of payments the provider declined or failed, and why. Changes nothing;
it watches DESIGN.md §4.3 from the outside (a spike of provider errors is where open authorizations come from).
"""

from __future__ import annotations

from datetime import datetime

from infra.validation import check_window
from payment.biz.ports import PaymentStats
from payment.model.stats import FailureRates

__all__ = ["failure_rates"]


async def failure_rates(stats: PaymentStats, start: datetime | None, end: datetime | None) -> FailureRates:
    return await stats.failure_rates(*check_window(start, end))
