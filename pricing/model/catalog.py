"""Catalog value objects: products, their price lists, and what a lookup found."""

from __future__ import annotations

from dataclasses import dataclass

from kernel.money import Money

__all__ = ["TAX_CLASSES", "CatalogLookup", "PricedProduct", "Product"]

# A product's tax class selects its rate in the destination country.
TAX_CLASSES: tuple[str, ...] = ("standard", "reduced", "zero")


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    name: str
    category: str
    brand: str
    weight_grams: int
    tax_class: str
    # One price per currency.
    prices: tuple[Money, ...]

    def price_in(self, currency_code: str) -> Money | None:
        return next((p for p in self.prices if p.currency_code == currency_code), None)


@dataclass(frozen=True, slots=True)
class PricedProduct:
    product: Product
    # The price in the requested currency; None when no currency was requested.
    unit_price: Money | None


@dataclass(frozen=True, slots=True)
class CatalogLookup:
    products: list[PricedProduct]
    # Unknown skus, and (when a currency was requested) skus without a price in it.
    missing_skus: list[str]
