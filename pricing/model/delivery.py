"""How many business days a shipping method takes, from the origin warehouse's zone to the destination. Pure.

A parcel within one country is *domestic*; between two countries of one zone (North America, Europe,
Asia-Pacific) it is *regional*; anything else is *international*. Each (method, reach) has a window of
business days; an order ships in one parcel per warehouse and arrives with its slowest parcel, so its window
is the widest of its parcels'. A country no zone lists is its own zone.
"""

from __future__ import annotations

from collections.abc import Sequence

from kernel.delivery import DeliveryWindow
from pricing.model.rates import Parcel

__all__ = ["WINDOWS", "ZONES", "order_window", "parcel_window", "reach"]

_ZONE_MEMBERS: dict[str, tuple[str, ...]] = {
    "north-america": ("US", "CA", "MX"),
    "europe": (
        "AT", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GB", "GR", "HR", "HU", "IE", "IS",
        "IT", "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK",
    ),
    "asia-pacific": ("AU", "CN", "HK", "ID", "IN", "JP", "KR", "MY", "NZ", "PH", "SG", "TH", "TW", "VN"),
}  # fmt: skip
ZONES: dict[str, str] = {country: zone for zone, members in _ZONE_MEMBERS.items() for country in members}

WINDOWS: dict[tuple[str, str], DeliveryWindow] = {
    ("standard", "domestic"): DeliveryWindow(3, 5),
    ("standard", "regional"): DeliveryWindow(4, 7),
    ("standard", "international"): DeliveryWindow(7, 14),
    ("express", "domestic"): DeliveryWindow(1, 2),
    ("express", "regional"): DeliveryWindow(2, 3),
    ("express", "international"): DeliveryWindow(3, 5),
}


def reach(origin_country: str, destination_country: str) -> str:
    if origin_country == destination_country:
        return "domestic"
    origin_zone = ZONES.get(origin_country, origin_country)
    return "regional" if origin_zone == ZONES.get(destination_country, destination_country) else "international"


def parcel_window(shipping_method: str, origin_country: str, destination_country: str) -> DeliveryWindow:
    return WINDOWS[shipping_method, reach(origin_country, destination_country)]


def order_window(shipping_method: str, parcels: Sequence[Parcel], destination_country: str) -> DeliveryWindow | None:
    """The order's window: its slowest parcel's. None with no parcel (nothing ships)."""
    window: DeliveryWindow | None = None
    for parcel in parcels:
        one = parcel_window(shipping_method, parcel.origin_country, destination_country)
        window = one if window is None else window.widest(one)
    return window
