"""Shipping math (pure) and the QuoteShipping use case."""

from __future__ import annotations

from collections.abc import Sequence

from infra.errors import InvalidArgument
from infra.money import Money
from pricing.biz.ports import RateRepo
from pricing.model.rates import Parcel, ShippingRate

__all__ = ["parcel_cost", "quote_shipping", "shipping_total", "started_kilograms"]


def started_kilograms(weight_grams: int) -> int:
    """Every started kilogram is charged: 1 g is 1 kg, 1000 g is 1 kg, 1001 g is 2 kg."""
    return -(-weight_grams // 1000)


def parcel_cost(rate: ShippingRate, parcel: Parcel, destination_country: str) -> int:
    """Base + per started kg, plus the surcharge when the parcel crosses a border."""
    cost = rate.base_minor + rate.per_kg_minor * started_kilograms(parcel.weight_grams)
    if parcel.origin_country != destination_country:
        cost += rate.international_surcharge_minor
    return cost


def shipping_total(rate: ShippingRate, parcels: Sequence[Parcel], destination_country: str) -> Money:
    """Each parcel is priced from its own warehouse's country; there is no global origin."""
    return Money(rate.currency_code, sum(parcel_cost(rate, p, destination_country) for p in parcels))


async def quote_shipping(
    repo: RateRepo,
    *,
    shipping_method: str,
    currency_code: str,
    parcels: Sequence[Parcel],
    destination_country: str,
) -> Money:
    """Shipping cost in integers of the currency's minor unit, never a float (DESIGN.md §4.6)."""
    rate = await repo.shipping_rate(shipping_method, currency_code)
    if rate is None:
        raise InvalidArgument("currency_code", f"no {shipping_method} shipping rate in {currency_code}")
    return shipping_total(rate, parcels, destination_country)
