"""Kassa's refusals as exceptions: one class per ``kassa.common.v1.ErrorReason`` value.

Every Kassa error status carries a ``google.rpc.ErrorInfo`` detail (domain ``kassa``) whose ``reason`` is
stable; :func:`from_rpc_error` raises the class registered for it, so callers catch what they can act on
instead of parsing messages. A reason this version doesn't know (a newer server) is a plain
:class:`KassaError` with ``.reason`` set.

Hierarchy::

    KassaError                      .code (grpc.StatusCode), .reason, .message, .metadata
    ├── InvalidArgument             .field: the request field at fault (metadata["field"])
    ├── Unauthenticated             no or bad bearer token
    ├── PermissionDenied, NotFound
    ├── OutOfStock                  metadata: "skus", "available.<sku>"
    ├── PriceChanged, PaymentDeclined, PaymentAmountMismatch, PromotionInvalid, PromotionExhausted,
    │   SessionExpired, SessionNotOpen, CheckoutInProgress, IdempotencyKeyReused, CartTooLarge,
    │   BelowMinimumOrder, CurrencyMismatch, OrderStatusConflict, PaymentInvalidState,
    │   RefundExceedsCapture, CompensationStateConflict, SessionNotStuck, Unimplemented, Internal, Cancelled
    └── Retryable                   worth another try after a backoff (with the same idempotency key)
        ├── Unavailable, DeadlineExceeded, RateLimited, PaymentProviderUnavailable
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "BelowMinimumOrder",
    "Cancelled",
    "CartTooLarge",
    "CheckoutInProgress",
    "CompensationStateConflict",
    "CurrencyMismatch",
    "DeadlineExceeded",
    "IdempotencyKeyReused",
    "Internal",
    "InvalidArgument",
    "KassaError",
    "NotFound",
    "OrderStatusConflict",
    "OutOfStock",
    "PaymentAmountMismatch",
    "PaymentDeclined",
    "PaymentInvalidState",
    "PaymentProviderUnavailable",
    "PermissionDenied",
    "PriceChanged",
    "PromotionExhausted",
    "PromotionInvalid",
    "RateLimited",
    "RefundExceedsCapture",
    "Retryable",
    "SessionExpired",
    "SessionNotOpen",
    "SessionNotStuck",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "error_class",
    "from_rpc_error",
]

DOMAIN = "kassa"
_DETAILS_KEY = "grpc-status-details-bin"


class KassaError(Exception):
    """A call Kassa refused or could not complete."""

    reason: str = ""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason if reason is not None else type(self).reason
        self.metadata: dict[str, str] = dict(metadata or {})

    def __str__(self) -> str:
        return f"{self.reason or self.code.name}: {self.message}"


class Retryable(KassaError):
    """Transient: the same call may succeed after a backoff."""


class InvalidArgument(KassaError):
    """Bad input, refused before anything was written; ``field`` names the request field at fault."""

    reason = "INVALID_ARGUMENT"

    @property
    def field(self) -> str:
        return self.metadata.get("field", "")


class Unauthenticated(KassaError):
    """No or bad bearer token."""

    reason = "UNAUTHENTICATED"


class PermissionDenied(KassaError):
    """The caller may not do this (another customer's cart, an admin route)."""

    reason = "PERMISSION_DENIED"


class NotFound(KassaError):
    """No such cart, session or order (or not the caller's)."""

    reason = "NOT_FOUND"


class OutOfStock(KassaError):
    """Not enough stock: metadata "skus" lists them, "available.<sku>" the units left."""

    reason = "OUT_OF_STOCK"


class PriceChanged(KassaError):
    """The recalculated total differs from the one the customer saw."""

    reason = "PRICE_CHANGED"


class PaymentDeclined(KassaError):
    """The payment provider declined the payment."""

    reason = "PAYMENT_DECLINED"


class PaymentAmountMismatch(KassaError):
    """The authorized amount differs from the order's total."""

    reason = "PAYMENT_AMOUNT_MISMATCH"


class PromotionInvalid(KassaError):
    """A promotion code does not apply."""

    reason = "PROMOTION_INVALID"


class PromotionExhausted(KassaError):
    """A promotion code has been used up."""

    reason = "PROMOTION_EXHAUSTED"


class SessionExpired(KassaError):
    """The checkout session expired and released its stock."""

    reason = "SESSION_EXPIRED"


class SessionNotOpen(KassaError):
    """The checkout session is not open for this change."""

    reason = "SESSION_NOT_OPEN"


class CheckoutInProgress(KassaError):
    """Another confirm of this session is running."""

    reason = "CHECKOUT_IN_PROGRESS"


class IdempotencyKeyReused(KassaError):
    """The idempotency key was used for a different request."""

    reason = "IDEMPOTENCY_KEY_REUSED"


class CartTooLarge(KassaError):
    """Too many lines or units in the cart."""

    reason = "CART_TOO_LARGE"


class BelowMinimumOrder(KassaError):
    """The order total is below the minimum."""

    reason = "BELOW_MINIMUM_ORDER"


class CurrencyMismatch(KassaError):
    """A money amount is in another currency than the cart's."""

    reason = "CURRENCY_MISMATCH"


class OrderStatusConflict(KassaError):
    """The order's status does not allow this (cancelling a shipped order)."""

    reason = "ORDER_STATUS_CONFLICT"


class CompensationStateConflict(KassaError):
    """An admin action the DLQ entry's status doesn't allow (metadata "status": pending, done, dead, parked)."""

    reason = "COMPENSATION_STATE_CONFLICT"


class SessionNotStuck(KassaError):
    """The checkout session is not stuck mid-confirm (finished, never confirmed, or still driven by its saga)."""

    reason = "SESSION_NOT_STUCK"


class PaymentInvalidState(KassaError):
    """The payment's status does not allow this."""

    reason = "PAYMENT_INVALID_STATE"


class RefundExceedsCapture(KassaError):
    """A refund would exceed the captured amount."""

    reason = "REFUND_EXCEEDS_CAPTURE"


class Unimplemented(KassaError):
    """No such operation."""

    reason = "UNIMPLEMENTED"


class Internal(KassaError):
    """An unexpected failure inside Kassa."""

    reason = "INTERNAL"


class Cancelled(KassaError):
    """The call was cancelled."""

    reason = "CANCELLED"


class Unavailable(Retryable):
    """A service or one of its dependencies is unavailable or at capacity."""

    reason = "UNAVAILABLE"


class DeadlineExceeded(Retryable):
    """No answer within the deadline."""

    reason = "DEADLINE_EXCEEDED"


class RateLimited(Retryable):
    """The gateway's rate limit was exceeded."""

    reason = "RATE_LIMITED"


class PaymentProviderUnavailable(Retryable):
    """The payment provider is failing; try again later."""

    reason = "PAYMENT_PROVIDER_UNAVAILABLE"


def _subclasses(cls: type[KassaError]) -> list[type[KassaError]]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


_BY_REASON: dict[str, type[KassaError]] = {c.reason: c for c in _subclasses(KassaError) if c.reason}


def error_class(reason: str) -> type[KassaError]:
    """The exception raised for ``reason`` (KassaError for a reason this version doesn't know)."""
    return _BY_REASON.get(reason, KassaError)


def _error_info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    trailers = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for key, value in trailers or ():
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except ValueError:
            return None
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Is(info.DESCRIPTOR) and detail.Unpack(info) and info.domain == DOMAIN:
                return info
    return None


def from_rpc_error(err: grpc.RpcError) -> KassaError:
    """The typed exception for a failed call (sync ``grpc.RpcError`` or ``grpc.aio.AioRpcError``).

    The reason comes from the ErrorInfo detail; a status without one (a transport failure) is classed by
    its code's name (UNAVAILABLE, DEADLINE_EXCEEDED, ...), the way the Kassa gateway names it.
    """
    code: grpc.StatusCode = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    message: str = (err.details() if hasattr(err, "details") else None) or code.name
    info = _error_info(err)
    reason = info.reason if info is not None else code.name
    metadata = dict(info.metadata) if info is not None else {}
    return error_class(reason)(message, code=code, reason=reason, metadata=metadata)
