"""Delivery windows per shipping method by the origin warehouse's zone and the destination."""

from __future__ import annotations

import pytest

from kernel.delivery import DeliveryWindow
from pricing.model.delivery import order_window, parcel_window, reach
from pricing.model.rates import Parcel

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("origin", "destination", "expected"),
    [("US", "US", "domestic"), ("US", "CA", "regional"), ("DE", "FR", "regional"), ("DE", "US", "international"),
     ("JP", "SG", "regional"), ("ZZ", "YY", "international"), ("ZZ", "ZZ", "domestic")],
)  # fmt: skip
def test_reach_by_zone(origin: str, destination: str, expected: str) -> None:
    assert reach(origin, destination) == expected


def test_each_method_has_a_window_and_express_is_faster() -> None:
    for r in ("US", "CA", "DE"):
        standard, express = parcel_window("standard", "US", r), parcel_window("express", "US", r)
        assert express.max_business_days < standard.min_business_days or express.max_business_days <= 3
    assert parcel_window("standard", "US", "US") == DeliveryWindow(3, 5)
    assert parcel_window("express", "DE", "US") == DeliveryWindow(3, 5)


def test_an_order_arrives_with_its_slowest_parcel() -> None:
    parcels = [Parcel("wh-us", "US", 100), Parcel("wh-eu", "DE", 100)]
    assert order_window("standard", parcels, "US") == DeliveryWindow(7, 14)
    assert order_window("express", parcels[:1], "CA") == DeliveryWindow(2, 3)
    assert order_window("standard", [], "US") is None
