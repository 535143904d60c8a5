"""Products as pricing showed them a moment ago: AddCartItem without a pricing call per item.

A cart shows each line at the price of the moment it was added; StartCheckout and ConfirmCheckout price
every line afresh (and ConfirmCheckout refuses a total the customer did not see), so a cart line may carry a
price up to ``ttl_seconds`` old and nothing is ever charged at it. In a flash sale most carts add the same
few products: one pricing call per product and interval instead of one per AddCartItem.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from checkout.biz.ports import ProductLookup
from checkout.model.catalog import Product, ProductsResult

__all__ = ["RecentProducts"]


class RecentProducts:
    """``get_products`` answered from pricing's answers of the last ``ttl_seconds``, at most ``max_entries``
    of them (the least recently used go first). Unknown skus are always asked again."""

    def __init__(
        self,
        pricing: ProductLookup,
        ttl_seconds: float,
        *,
        max_entries: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_seconds <= 0 or max_entries <= 0:
            raise ValueError("ttl_seconds and max_entries must be positive")
        self._pricing = pricing
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], tuple[float, Product]] = OrderedDict()

    async def get_products(self, skus: Sequence[str], currency_code: str) -> ProductsResult:
        now = self._clock()
        known: dict[str, Product] = {}
        wanted: list[str] = []
        for sku in skus:
            entry = self._entries.get((sku, currency_code))
            if entry is not None and entry[0] > now:
                self._entries.move_to_end((sku, currency_code))
                known[sku] = entry[1]
            else:
                wanted.append(sku)
        if not wanted:
            return ProductsResult(products=known, missing_skus=[])
        asked = await self._pricing.get_products(wanted, currency_code)
        until = self._clock() + self._ttl
        for sku, product in asked.products.items():
            self._entries[(sku, currency_code)] = (until, product)
            self._entries.move_to_end((sku, currency_code))
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return ProductsResult(products={**known, **asked.products}, missing_skus=list(asked.missing_skus))
