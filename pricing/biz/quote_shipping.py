"""The QuoteShipping use case (the math is pricing.model.shipping)."""

from __future__ import annotations

from collections.abc import Sequence

from kernel.errors import InvalidArgument
from kernel.money import Money
from pricing.biz.ports import RateRepo
from pricing.model.rates import Parcel
from pricing.model.shipping import shipping_total

__all__ = ["QuoteShipping"]


class QuoteShipping:
    """Shipping cost in integers of the currency's minor unit, never a float (DESIGN.md §4.6)."""

    def __init__(self, rates: RateRepo) -> None:
        self._rates = rates

    async def __call__(
        self,
        *,
        shipping_method: str,
        currency_code: str,
        parcels: Sequence[Parcel],
        destination_country: str,
    ) -> Money:
        rate = await self._rates.shipping_rate(shipping_method, currency_code)
        if rate is None:
            raise InvalidArgument("currency_code", f"no {shipping_method} shipping rate in {currency_code}")
        return shipping_total(rate, parcels, destination_country)
