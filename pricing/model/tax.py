"""Tax math: the tax of lines and shipping at a country's rates. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kernel.money import Money, percent_of
from pricing.model.rates import LineTax, TaxableLine, TaxResult

__all__ = ["SHIPPING_TAX_CLASS", "compute_tax"]

# Shipping is a service taxed at the destination's standard rate.
SHIPPING_TAX_CLASS = "standard"


def compute_tax(
    lines: Sequence[TaxableLine], shipping: Money, rates: Mapping[str, int], currency_code: str
) -> TaxResult:
    """Tax per line, rounded half up per line in integers; the total is the sum of the rounded parts.

    Rounding per line (not on the total) keeps each line's tax reproducible on its own, so an order's
    stored line snapshots always add up to its stored tax total.
    """
    results = [
        LineTax(line.sku, Money(currency_code, percent_of(line.amount.amount_minor, rates.get(line.tax_class, 0))))
        for line in lines
    ]
    shipping_tax = Money(currency_code, percent_of(shipping.amount_minor, rates.get(SHIPPING_TAX_CLASS, 0)))
    total = sum(r.tax.amount_minor for r in results) + shipping_tax.amount_minor
    return TaxResult(results, shipping_tax, Money(currency_code, total))
