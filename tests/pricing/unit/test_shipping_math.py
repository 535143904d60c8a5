"""Shipping math: base + per started kg, border surcharge from each parcel's own origin."""

from __future__ import annotations

import pytest

from kernel.money import Money
from pricing.model.rates import Parcel, ShippingRate
from pricing.model.shipping import parcel_cost, shipping_total, started_kilograms

pytestmark = pytest.mark.unit

STANDARD_USD = ShippingRate("standard", "USD", base_minor=499, per_kg_minor=100, international_surcharge_minor=1000)
EXPRESS_EUR = ShippingRate("express", "EUR", base_minor=1499, per_kg_minor=250, international_surcharge_minor=1000)


@pytest.mark.parametrize(
    ("grams", "kg"),
    [(0, 0), (1, 1), (999, 1), (1000, 1), (1001, 2), (2500, 3), (10_000, 10)],
)
def test_every_started_kilogram_counts(grams: int, kg: int) -> None:
    assert started_kilograms(grams) == kg


def test_domestic_parcel_has_no_surcharge() -> None:
    assert parcel_cost(STANDARD_USD, Parcel("wh-us", "US", 1500), "US") == 499 + 2 * 100


def test_cross_border_parcel_pays_the_surcharge() -> None:
    assert parcel_cost(EXPRESS_EUR, Parcel("wh-de", "DE", 900), "FR") == 1499 + 250 + 1000


def test_each_parcel_uses_its_own_origin() -> None:
    parcels = [Parcel("wh-us", "US", 1000), Parcel("wh-de", "DE", 2001)]
    total = shipping_total(STANDARD_USD, parcels, "US")
    # US parcel: 499 + 100; DE parcel: 499 + 3*100 + 1000.
    assert total == Money("USD", 599 + 1799)


def test_no_parcels_ship_for_free() -> None:
    assert shipping_total(STANDARD_USD, [], "US") == Money("USD", 0)
