"""QuoteOrder: prices, shipping and tax of an order with no discount, in one call.

The same answers, computed by the same code, as GetProducts followed by QuoteShipping and
CalculateTax on the undiscounted lines; a caller saves two round trips (and two calls of plumbing
on both sides) when there is no promotion to apply between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kernel.delivery import DeliveryWindow
from kernel.money import Money
from pricing.biz.calculate_tax import CalculateTax
from pricing.biz.get_products import GetProducts
from pricing.biz.quote_shipping import QuoteShipping
from pricing.model.catalog import CatalogLookup
from pricing.model.delivery import order_window
from pricing.model.rates import Parcel, TaxableLine

__all__ = ["OrderQuote", "QuoteLine", "QuoteOrder"]


@dataclass(frozen=True, slots=True)
class QuoteLine:
    sku: str
    quantity: int


@dataclass(frozen=True, slots=True)
class OrderQuote:
    lookup: CatalogLookup
    # None when a sku is missing: there is no order to quote.
    shipping_total: Money | None
    tax_total: Money | None
    delivery_window: DeliveryWindow | None = None


class QuoteOrder:
    def __init__(self, get_products: GetProducts, quote_shipping: QuoteShipping, calculate_tax: CalculateTax) -> None:
        self._get_products = get_products
        self._quote_shipping = quote_shipping
        self._calculate_tax = calculate_tax

    async def __call__(
        self,
        *,
        lines: Sequence[QuoteLine],
        parcels: Sequence[Parcel],
        shipping_method: str,
        currency_code: str,
        destination_country: str,
    ) -> OrderQuote:
        lookup = await self._get_products([ln.sku for ln in lines], currency_code)
        if lookup.missing_skus:
            return OrderQuote(lookup, None, None)
        priced = {pp.product.sku: pp for pp in lookup.products}
        shipping_total = await self._quote_shipping(
            shipping_method=shipping_method,
            currency_code=currency_code,
            parcels=parcels,
            destination_country=destination_country,
        )
        taxable = []
        for ln in lines:
            pp = priced[ln.sku]
            assert pp.unit_price is not None  # a currency was asked for, so every product found has a price in it
            taxable.append(TaxableLine(ln.sku, pp.product.tax_class, pp.unit_price.times(ln.quantity)))
        result = await self._calculate_tax(
            lines=taxable,
            shipping=shipping_total,
            destination_country=destination_country,
            currency_code=currency_code,
        )
        return OrderQuote(
            lookup, shipping_total, result.tax_total, order_window(shipping_method, parcels, destination_country)
        )
