"""What the payment service knows about a provider, independent of any one processor's API.

Exception hierarchy of provider calls (raised by adapters, handled by biz)::

    ProviderError
    ├── ProviderDeclined      the card was refused (the outcome is known: nothing is held)
    ├── ProviderRejected      the request was refused (bad state, bad token; nothing happened)
    └── ProviderUnavailable   timeout, connection failure or 5xx: the outcome is UNKNOWN
        └── ProviderCircuitOpen   the circuit breaker refused the call: nothing was sent
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "EventKind",
    "IntentRequest",
    "IntentStatus",
    "ProviderCircuitOpen",
    "ProviderDeclined",
    "ProviderError",
    "ProviderEvent",
    "ProviderIntent",
    "ProviderRefund",
    "ProviderRejected",
    "ProviderUnavailable",
]


class IntentStatus(enum.StrEnum):
    REQUIRES_ACTION = "requires_action"
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"
    FAILED = "failed"


class EventKind(enum.StrEnum):
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    FAILED = "failed"
    CANCELED = "canceled"
    REFUNDED = "refunded"
    # Anything else the provider sends: recorded (deduplicated) and otherwise ignored.
    OTHER = "other"


@dataclass(frozen=True)
class IntentRequest:
    amount_minor: int
    currency_code: str
    payment_method: str
    return_url: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderIntent:
    intent_id: str
    status: IntentStatus
    amount_minor: int
    amount_capturable: int = 0
    amount_received: int = 0
    amount_refunded: int = 0
    next_action_url: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    # When the provider created it (Unix seconds; 0 if it did not say).
    created: int = 0


@dataclass(frozen=True)
class ProviderRefund:
    refund_id: str
    amount_minor: int


@dataclass(frozen=True)
class ProviderEvent:
    event_id: str
    kind: EventKind
    raw_type: str
    intent: ProviderIntent | None


class ProviderError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ProviderDeclined(ProviderError):
    def __init__(self, code: str, message: str, intent_id: str | None = None) -> None:
        super().__init__(code, message)
        self.intent_id = intent_id


class ProviderRejected(ProviderError):
    def __init__(self, code: str, message: str, intent: ProviderIntent | None = None) -> None:
        super().__init__(code, message)
        self.intent = intent


class ProviderUnavailable(ProviderError):
    pass


class ProviderCircuitOpen(ProviderUnavailable):
    """The provider's circuit breaker is open: the call was not made (fail fast until a probe succeeds)."""
