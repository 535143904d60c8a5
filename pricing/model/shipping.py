"""Shipping math: what a parcel costs at a rate. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from kernel.money import Money
from pricing.model.rates import Parcel, ShippingRate

__all__ = ["parcel_cost", "shipping_total", "started_kilograms"]


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
