"""Money and dates as a customer reads them. Pure; amounts stay integers until the last string.

``format_money(Money("USD", 123456))`` is ``$1,234.56``; ``Money("JPY", 1200)`` is ``¥1,200`` (no minor
unit); a currency without a symbol here is written with its code (``1,234.56 SEK``). The exponent comes
from :data:`kernel.money.CURRENCY_EXPONENTS`, so the number of decimals is the currency's, never a guess.
"""

from __future__ import annotations

from datetime import date

from kernel.money import CURRENCY_EXPONENTS, Money

__all__ = ["format_date", "format_money", "format_window"]

# Symbols written before the amount. Currencies that share "$" get a prefix so they can't be confused.
_SYMBOLS: dict[str, str] = {
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
    "JPY": "¥",
    "KRW": "₩",
    "CAD": "CA$",
    "AUD": "A$",
    "SGD": "S$",
    "CHF": "CHF ",
    "VND": "₫",
    "INR": "₹",
}


def format_money(money: Money) -> str:
    exponent = CURRENCY_EXPONENTS.get(money.currency_code, 2)
    sign = "-" if money.amount_minor < 0 else ""
    units, minor = divmod(abs(money.amount_minor), 10**exponent)
    number = f"{units:,}" + (f".{minor:0{exponent}d}" if exponent else "")
    symbol = _SYMBOLS.get(money.currency_code)
    if symbol is None:
        return f"{sign}{number} {money.currency_code}"
    return f"{sign}{symbol}{number}"


def format_date(day: date) -> str:
    """``Tue 8 Dec 2026``: the same in every locale's reading, no ambiguity between 8/12 and 12/8."""
    return f"{day:%a} {day.day} {day:%b %Y}"


def format_window(earliest: date, latest: date) -> str:
    if earliest == latest:
        return format_date(earliest)
    return f"{format_date(earliest)} to {format_date(latest)}"
