"""Catalog value objects: products, their price lists, and what a lookup found."""

from __future__ import annotations

from dataclasses import dataclass

from kernel.money import Money

__all__ = ["TAX_CLASSES", "CatalogLookup", "PricedProduct", "Product", "SyncCursor", "SyncPage"]

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


@dataclass(frozen=True, slots=True)
class SyncCursor:
    """Where a sync of the catalog stands: the products changed since the snapshot ``since`` (None: every
    product), as of the snapshot ``until`` (None until the first page takes it), past the sku ``after``."""

    since: str | None
    until: str | None = None
    after: str = ""


@dataclass(frozen=True, slots=True)
class SyncPage:
    products: list[Product]
    # Where the next page of this sync starts; None on its last page.
    more: SyncCursor | None
    # Every product written by a transaction this snapshot shows committed is in this sync (or an earlier
    # one): the next sync's ``since``.
    until: str
