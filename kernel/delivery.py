"""Delivery windows: business days, and the dates they fall on. Pure, no I/O; biz and model may import it.

A window is a range of business days (Monday to Friday; public holidays are not modelled) counted from
the day an order is placed: ``2..4`` placed on a Friday is Tuesday to Thursday. Pricing decides how many
days a shipping method takes between two zones; this module only counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

__all__ = ["SHIPPING_METHODS", "DeliveryWindow", "add_business_days"]

# The shipping methods Kassa prices and ships: every service that names one accepts these.
SHIPPING_METHODS: tuple[str, ...] = ("standard", "express")

_SATURDAY = 5
# No parcel takes a year; a bound keeps the day-by-day count cheap.
_MAX_DAYS = 260


def add_business_days(start: date, days: int) -> date:
    """The business day ``days`` business days after ``start`` (``start`` itself need not be one)."""
    if not 0 <= days <= _MAX_DAYS:
        raise ValueError(f"days must be between 0 and {_MAX_DAYS}")
    day = start
    rest = days
    while rest:
        day += timedelta(days=1)
        if day.weekday() < _SATURDAY:
            rest -= 1
    # Zero days from a weekend is the next business day: nothing is handed over on a Sunday.
    while day.weekday() >= _SATURDAY:
        day += timedelta(days=1)
    return day


@dataclass(frozen=True, slots=True)
class DeliveryWindow:
    """``min_business_days`` to ``max_business_days`` after the day it counts from."""

    min_business_days: int
    max_business_days: int

    def __post_init__(self) -> None:
        if not 0 <= self.min_business_days <= self.max_business_days:
            raise ValueError("need 0 <= min_business_days <= max_business_days")

    def dates_from(self, start: date) -> tuple[date, date]:
        return add_business_days(start, self.min_business_days), add_business_days(start, self.max_business_days)

    def widest(self, other: DeliveryWindow) -> DeliveryWindow:
        """The window of two parcels shipped together: the order arrives with its slowest parcel."""
        return DeliveryWindow(
            max(self.min_business_days, other.min_business_days), max(self.max_business_days, other.max_business_days)
        )
