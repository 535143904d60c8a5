"""Catalog use cases: batch price lookup for a cart, and the admin upsert."""

from __future__ import annotations

from collections.abc import Sequence

from pricing.biz.ports import ProductRepo
from pricing.model.catalog import CatalogLookup, PricedProduct, Product

__all__ = ["get_products", "upsert_products"]


async def get_products(repo: ProductRepo, skus: Sequence[str], currency_code: str) -> CatalogLookup:
    """Products and unit prices for a whole cart in one query.

    A product with no price in the requested currency is reported missing rather than returned
    without a price, so no caller can sell it at zero by accident (DESIGN.md §4.6, silent corruption).
    """
    wanted = list(dict.fromkeys(skus))
    found = {p.sku: p for p in await repo.find(wanted)}
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


async def upsert_products(repo: ProductRepo, products: Sequence[Product]) -> list[Product]:
    """Replace products and their price lists atomically: a half-applied catalog update never shows
    (DESIGN.md §4.6). Input is validated by the caller before this is reached."""
    return await repo.upsert(products)
