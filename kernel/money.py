"""Money as integers in a currency's minor unit. Pure, no I/O; biz may import it.

Never a float anywhere: amounts are ``int`` minor units and every split
(percentages, proportional discounts, taxes) rounds half up and hands any
remainder to the last share so the parts always add up to the whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CURRENCY_EXPONENTS", "Money", "allocate", "percent_of", "validate_currency"]

# ISO 4217 minor-unit exponents of the currencies Kassa accepts.
CURRENCY_EXPONENTS: dict[str, int] = {
    "USD": 2, "EUR": 2, "GBP": 2, "CHF": 2, "CAD": 2, "AUD": 2, "SEK": 2, "NOK": 2, "DKK": 2,
    "PLN": 2, "SGD": 2, "VND": 0, "JPY": 0, "KRW": 0, "IDR": 2, "MYR": 2, "THB": 2, "PHP": 2,
}  # fmt: skip

_CODE = re.compile(r"^[A-Z]{3}$")


def validate_currency(code: str) -> str | None:
    """Return an error message if ``code`` is not a supported ISO 4217 code, else None."""
    if not _CODE.match(code or ""):
        return "must be a three-letter upper-case ISO 4217 code"
    if code not in CURRENCY_EXPONENTS:
        return f"currency {code} is not supported"
    return None


@dataclass(frozen=True, slots=True)
class Money:
    currency_code: str
    amount_minor: int

    @staticmethod
    def zero(currency_code: str) -> Money:
        return Money(currency_code, 0)

    def _same(self, other: Money) -> None:
        if other.currency_code != self.currency_code:
            raise ValueError(f"currency mismatch: {self.currency_code} vs {other.currency_code}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.currency_code, self.amount_minor + other.amount_minor)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.currency_code, self.amount_minor - other.amount_minor)

    def times(self, quantity: int) -> Money:
        return Money(self.currency_code, self.amount_minor * quantity)

    def min(self, other: Money) -> Money:
        self._same(other)
        return self if self.amount_minor <= other.amount_minor else other

    def __str__(self) -> str:
        exp = CURRENCY_EXPONENTS.get(self.currency_code, 2)
        sign = "-" if self.amount_minor < 0 else ""
        units, minor = divmod(abs(self.amount_minor), 10**exp) if exp else (abs(self.amount_minor), 0)
        return f"{sign}{units}.{minor:0{exp}d} {self.currency_code}" if exp else f"{sign}{units} {self.currency_code}"


def percent_of(amount_minor: int, basis_points: int) -> int:
    """``amount * basis_points / 10000``, rounded half up, in integers."""
    return (amount_minor * basis_points + 5000) // 10000


def allocate(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` across ``weights`` proportionally; the shares sum exactly to ``total``.

    Largest-remainder method, so no share is off by more than one minor unit and
    nothing is lost or created by rounding.
    """
    if not weights:
        return []
    weight_sum = sum(weights)
    if weight_sum == 0:
        shares = [0] * len(weights)
        shares[-1] = total
        return shares
    raw = [total * w for w in weights]
    shares = [r // weight_sum for r in raw]
    remainder = total - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: raw[i] % weight_sum, reverse=True)
    for i in order[:remainder]:
        shares[i] += 1
    return shares
