"""What pricing's use cases need from storage, implemented by ``pricing.data``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from pricing.model.catalog import Product
from pricing.model.rates import ShippingRate

__all__ = ["ProductRepo", "RateRepo"]


class ProductRepo(Protocol):
    async def find(self, skus: Sequence[str]) -> list[Product]:
        """The known products among ``skus`` with all their prices, in one round trip."""
        ...

    async def upsert(self, products: Sequence[Product]) -> list[Product]:
        """Create or replace the products and their whole price lists, all in one transaction."""
        ...


class RateRepo(Protocol):
    async def shipping_rate(self, shipping_method: str, currency_code: str) -> ShippingRate | None: ...

    async def tax_rates(self, country_code: str) -> Mapping[str, int]:
        """Basis points per tax class in ``country_code``; classes not listed are untaxed."""
        ...
