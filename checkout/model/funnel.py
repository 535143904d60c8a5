"""The checkout funnel of a time window, for operators (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["Funnel"]


@dataclass(frozen=True, slots=True)
class Funnel:
    start: datetime
    end: datetime
    carts_created: int = 0
    checkouts_started: int = 0
    # Sessions that ended COMPLETED (an order placed) in the window.
    checkouts_confirmed: int = 0
    # Sessions that ended CANCELLED (everything undone) in the window, by the reason the customer was given.
    failures_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def checkouts_failed(self) -> int:
        return sum(self.failures_by_reason.values())

    @property
    def failure_rate(self) -> float:
        ended = self.checkouts_confirmed + self.checkouts_failed
        return self.checkouts_failed / ended if ended else 0.0
