"""The CalculateTax use case (the math is pricing.model.tax)."""

from __future__ import annotations

from collections.abc import Sequence

from kernel.money import Money
from pricing.biz.ports import RateRepo
from pricing.model.rates import TaxableLine, TaxResult
from pricing.model.tax import compute_tax

__all__ = ["CalculateTax"]


class CalculateTax:
    """Tax of a cart at its destination, in integer minor units (DESIGN.md §4.6: no float money)."""

    def __init__(self, rates: RateRepo) -> None:
        self._rates = rates

    async def __call__(
        self,
        *,
        lines: Sequence[TaxableLine],
        shipping: Money,
        destination_country: str,
        currency_code: str,
    ) -> TaxResult:
        rates = await self._rates.tax_rates(destination_country)
        return compute_tax(lines, shipping, rates, currency_code)
