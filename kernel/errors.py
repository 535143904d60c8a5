"""Domain errors every service raises, with no I/O and no gRPC in them.

Biz code raises these; the service layer turns them into a gRPC status with a
``google.rpc.ErrorInfo`` detail (domain "kassa") via :mod:`infra.grpc_errors`.
This module is pure so biz may import it.

Hierarchy::

    DomainError                    reason: a stable machine-readable string (DESIGN.md §2)
    ├── InvalidArgument            INVALID_ARGUMENT, metadata["field"] names the field
    ├── NotFound                   NOT_FOUND
    ├── PermissionDenied           PERMISSION_DENIED
    ├── FailedPrecondition         FAILED_PRECONDITION: OUT_OF_STOCK, PAYMENT_DECLINED, ...
    ├── Aborted                    ABORTED: CHECKOUT_IN_PROGRESS, PRICE_CHANGED, ...
    ├── AlreadyExists              ALREADY_EXISTS: IDEMPOTENCY_KEY_REUSED
    ├── ResourceExhausted          RESOURCE_EXHAUSTED: CART_TOO_LARGE
    └── Unavailable                UNAVAILABLE: a dependency failed or the service is at capacity; safe to
                                   retry (after ``retry_after_s`` when set: google.rpc.RetryInfo, Retry-After)
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "Aborted",
    "AlreadyExists",
    "DomainError",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "Reason",
    "ResourceExhausted",
    "Unavailable",
]


class Reason:
    """The reasons of DESIGN.md §2: exactly the kassa.common.v1.ErrorReason value names (a test holds them equal).

    A reason is part of the public contract (clients branch on it): add it to the proto enum first.
    """

    OUT_OF_STOCK = "OUT_OF_STOCK"
    PRICE_CHANGED = "PRICE_CHANGED"
    PAYMENT_DECLINED = "PAYMENT_DECLINED"
    PROMOTION_INVALID = "PROMOTION_INVALID"
    PROMOTION_EXHAUSTED = "PROMOTION_EXHAUSTED"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    SESSION_NOT_OPEN = "SESSION_NOT_OPEN"
    CHECKOUT_IN_PROGRESS = "CHECKOUT_IN_PROGRESS"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    CART_TOO_LARGE = "CART_TOO_LARGE"
    BELOW_MINIMUM_ORDER = "BELOW_MINIMUM_ORDER"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    NOT_FOUND = "NOT_FOUND"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    UNAVAILABLE = "UNAVAILABLE"
    ORDER_STATUS_CONFLICT = "ORDER_STATUS_CONFLICT"
    PAYMENT_INVALID_STATE = "PAYMENT_INVALID_STATE"
    PAYMENT_PROVIDER_UNAVAILABLE = "PAYMENT_PROVIDER_UNAVAILABLE"
    PAYMENT_AMOUNT_MISMATCH = "PAYMENT_AMOUNT_MISMATCH"
    REFUND_EXCEEDS_CAPTURE = "REFUND_EXCEEDS_CAPTURE"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    RATE_LIMITED = "RATE_LIMITED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    CANCELLED = "CANCELLED"
    COMPENSATION_STATE_CONFLICT = "COMPENSATION_STATE_CONFLICT"
    SESSION_NOT_STUCK = "SESSION_NOT_STUCK"


class DomainError(Exception):
    """A refusal the caller can act on. ``metadata`` values are strings (ErrorInfo.metadata)."""

    default_reason = Reason.INVALID_ARGUMENT

    def __init__(self, message: str, *, reason: str | None = None, metadata: Mapping[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = {k: str(v) for k, v in (metadata or {}).items()}


class InvalidArgument(DomainError):
    """Bad input, refused before anything is written. ``field`` is the request field's path."""

    default_reason = Reason.INVALID_ARGUMENT

    def __init__(self, field: str, message: str, *, reason: str | None = None):
        super().__init__(f"{field}: {message}", reason=reason, metadata={"field": field})
        self.field = field


class NotFound(DomainError):
    default_reason = Reason.NOT_FOUND


class PermissionDenied(DomainError):
    default_reason = Reason.PERMISSION_DENIED


class FailedPrecondition(DomainError):
    default_reason = Reason.SESSION_NOT_OPEN


class Aborted(DomainError):
    default_reason = Reason.CHECKOUT_IN_PROGRESS


class AlreadyExists(DomainError):
    default_reason = Reason.IDEMPOTENCY_KEY_REUSED


class ResourceExhausted(DomainError):
    default_reason = Reason.CART_TOO_LARGE


class Unavailable(DomainError):
    default_reason = Reason.UNAVAILABLE

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        retry_after_s: float | None = None,
    ):
        super().__init__(message, reason=reason, metadata=metadata)
        # How long the caller should wait before retrying, when the refusing side knows.
        self.retry_after_s = retry_after_s
