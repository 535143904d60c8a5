"""A compensation or post-order step that failed and waits in the DLQ (failed_compensations)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "BACKOFF_SCHEDULE_SECONDS",
    "CompensationFilter",
    "CompensationStatus",
    "FailedCompensation",
    "NewCompensation",
    "Operation",
]


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


class CompensationStatus(StrEnum):
    """A DLQ entry's life: PENDING (retried with backoff) → DONE, or → DEAD after every retry. An operator
    PARKs a pending entry (no more automatic retries) and replays a parked or dead one (run once, now; back to
    PENDING from the first backoff step if it fails again)."""

    PENDING = "pending"
    DONE = "done"
    DEAD = "dead"
    PARKED = "parked"


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
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CompensationFilter:
    """Which DLQ entries a listing wants (every field optional) and where the page starts."""

    status: CompensationStatus | None = None
    operation: Operation | None = None
    session_id: str = ""
    # (created_at, id) of the last entry of the previous page: the listing is newest first.
    after: tuple[datetime, str] | None = None
