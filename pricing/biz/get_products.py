"""GetProducts: products and unit prices for a whole cart in one query."""

from __future__ import annotations

from collections.abc import Sequence

from pricing.biz.ports import UnitOfWork
from pricing.model.catalog import CatalogLookup, PricedProduct

__all__ = ["GetProducts"]


class GetProducts:
    """Products and unit prices for a whole cart in one query.

    A product with no price in the requested currency is reported missing rather than returned
    without a price, so no caller can sell it at zero by accident (DESIGN.md §4.6, silent corruption).
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, skus: Sequence[str], currency_code: str) -> CatalogLookup:
        wanted = list(dict.fromkeys(skus))
        async with self._uow.read() as tx:
            found = {p.sku: p for p in await tx.products.find(wanted)}
        products: list[PricedProduct] = []
        missing: list[str] = []
        for sku in wanted:
            product = found.get(sku)
            if product is None:
                missing.append(sku)
                continue
            if not currency_code:
                products.append(PricedProduct(product, None))
                continue
            price = product.price_in(currency_code)
            if price is None:
                missing.append(sku)
            else:
                products.append(PricedProduct(product, price))
        return CatalogLookup(products, missing)
