"""Payment failure rates by code over a window (PaymentAdminService.GetPaymentFailureRates).

A read for operators: what share of payments the provider declined or failed, and why. Changes nothing;
it watches DESIGN.md §4.3 from the outside (a spike of provider errors is where open authorizations come from).
"""

from __future__ import annotations

from datetime import datetime

from kernel.validation import check_window
from payment.biz.ports import UnitOfWork
from payment.model.stats import FailureRates

__all__ = ["GetFailureRates"]


class GetFailureRates:
    """Payments created in the window and the declined or failed ones by code: a read, no invariant at stake."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, start: datetime | None, end: datetime | None) -> FailureRates:
        window = check_window(start, end)
        async with self._uow.read() as tx:
            return await tx.stats.failure_rates(*window)
