"""QuoteOrder: prices, shipping and tax of an order, in one call.

The same answers, computed by the same code, as GetProducts followed by QuoteShipping and
CalculateTax on the lines less their discounts and the shipping less its discount; a caller saves two
round trips (and two calls of plumbing on both sides). The discounts are the caller's (checkout computes
them with promotion from the prices it holds, and checks the products answered here are those prices).
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
    # Taken off the line's total before it is taxed; more than the total leaves zero.
    discount_minor: int = 0


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
        shipping_discount_minor: int = 0,
    ) -> OrderQuote:
        """``shipping_discount_minor`` is taken off the shipping before it is taxed (more than it leaves zero);
        the quote's ``shipping_total`` is before it."""
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
            total = pp.unit_price.times(ln.quantity)
            taxable.append(TaxableLine(ln.sku, pp.product.tax_class, _less(total, ln.discount_minor)))
        result = await self._calculate_tax(
            lines=taxable,
            shipping=_less(shipping_total, shipping_discount_minor),
            destination_country=destination_country,
            currency_code=currency_code,
        )
        return OrderQuote(
            lookup, shipping_total, result.tax_total, order_window(shipping_method, parcels, destination_country)
        )


def _less(amount: Money, discount_minor: int) -> Money:
    """``amount`` less a discount, never below zero."""
    return Money(amount.currency_code, amount.amount_minor - min(discount_minor, amount.amount_minor))
