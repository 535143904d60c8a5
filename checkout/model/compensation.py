"""A compensation or post-order step that failed and waits in the DLQ (failed_compensations)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = ["BACKOFF_SCHEDULE_SECONDS", "FailedCompensation", "NewCompensation", "Operation"]


class Operation(StrEnum):
    VOID_AUTHORIZATION = "void_authorization"
    RELEASE_RESERVATIONS = "release_reservations"
    RELEASE_PROMOTION = "release_promotion"
    CONFIRM_RESERVATIONS = "confirm_reservations"
    CONFIRM_PROMOTION = "confirm_promotion"
    CAPTURE_PAYMENT = "capture_payment"
    RECORD_PAYMENT = "record_payment"
    CART_CLEANUP = "cart_cleanup"
    REFUND_PAYMENT = "refund_payment"


# Delay before the 1st, 2nd, 3rd and 4th retry (≈1 min → 5 min → 30 min → 2 h); then dead.
BACKOFF_SCHEDULE_SECONDS: tuple[int, ...] = (60, 300, 1800, 7200)


@dataclass(frozen=True, slots=True)
class NewCompensation:
    session_id: str
    operation: Operation
    payload: dict[str, Any]
    error: str


@dataclass(frozen=True, slots=True)
class FailedCompensation:
    id: str
    session_id: str
    operation: Operation
    payload: dict[str, Any]
    attempts: int
    status: str
    last_error: str
    next_attempt_at: datetime | None = None
