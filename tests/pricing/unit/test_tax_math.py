"""Tax math: per line, rounded half up in integers, shipping at the standard rate."""

from __future__ import annotations

import pytest

from kernel.money import Money
from pricing.model.rates import TaxableLine
from pricing.model.tax import compute_tax

pytestmark = pytest.mark.unit

DE = {"standard": 1900, "reduced": 700, "zero": 0}


def test_each_line_uses_its_class_rate() -> None:
    lines = [
        TaxableLine("A", "standard", Money("EUR", 10_000)),
        TaxableLine("B", "reduced", Money("EUR", 10_000)),
        TaxableLine("C", "zero", Money("EUR", 10_000)),
    ]
    result = compute_tax(lines, Money("EUR", 0), DE, "EUR")
    assert [t.tax.amount_minor for t in result.lines] == [1900, 700, 0]
    assert result.tax_total == Money("EUR", 2600)


def test_rounds_half_up_per_line_not_on_the_total() -> None:
    # 0.5 minor unit of tax on each line: each rounds up to 1, the total is 2 (not round(1.0) = 1).
    rates = {"standard": 500}
    lines = [TaxableLine("A", "standard", Money("USD", 10)), TaxableLine("B", "standard", Money("USD", 10))]
    result = compute_tax(lines, Money("USD", 0), rates, "USD")
    assert [t.tax.amount_minor for t in result.lines] == [1, 1]
    assert result.tax_total.amount_minor == 2


def test_just_below_half_rounds_down() -> None:
    # 149 * 3% = 4.47 -> 4
    result = compute_tax([TaxableLine("A", "standard", Money("USD", 149))], Money("USD", 0), {"standard": 300}, "USD")
    assert result.lines[0].tax.amount_minor == 4


def test_shipping_is_taxed_at_the_standard_rate() -> None:
    result = compute_tax([], Money("EUR", 499), DE, "EUR")
    # 499 * 19% = 94.81 -> 95
    assert result.shipping_tax == Money("EUR", 95)
    assert result.tax_total == Money("EUR", 95)


def test_unknown_country_or_class_is_untaxed() -> None:
    lines = [TaxableLine("A", "standard", Money("USD", 5000))]
    result = compute_tax(lines, Money("USD", 499), {}, "USD")
    assert result.tax_total == Money("USD", 0)
