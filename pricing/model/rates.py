"""Shipping and tax value objects."""

from __future__ import annotations

from dataclasses import dataclass

from kernel.money import Money

__all__ = ["LineTax", "Parcel", "ShippingRate", "TaxResult", "TaxableLine"]


@dataclass(frozen=True, slots=True)
class ShippingRate:
    shipping_method: str
    currency_code: str
    base_minor: int
    # Charged for every started kilogram.
    per_kg_minor: int
    # Added when a parcel leaves its origin country.
    international_surcharge_minor: int


@dataclass(frozen=True, slots=True)
class Parcel:
    warehouse_id: str
    # The warehouse's country: parcels of one order may ship from different countries.
    origin_country: str
    weight_grams: int


@dataclass(frozen=True, slots=True)
class TaxableLine:
    sku: str
    tax_class: str
    # After discounts.
    amount: Money


@dataclass(frozen=True, slots=True)
class LineTax:
    sku: str
    tax: Money


@dataclass(frozen=True, slots=True)
class TaxResult:
    lines: list[LineTax]
    shipping_tax: Money
    tax_total: Money
