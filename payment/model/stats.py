"""Payment outcomes of a time window, for operators (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["FailureRates"]


@dataclass(frozen=True, slots=True)
class FailureRates:
    start: datetime
    end: datetime
    # Payments created in the window.
    payments: int = 0
    # Declined or failed ones, by the provider's failure code ("unknown" when it gave none).
    failures_by_code: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(self.failures_by_code.values())

    @property
    def failure_rate(self) -> float:
        return self.failed / self.payments if self.payments else 0.0

    def rate(self, code: str) -> float:
        return self.failures_by_code.get(code, 0) / self.payments if self.payments else 0.0
