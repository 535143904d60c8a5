from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    OUT_OF_STOCK: _ClassVar[ErrorReason]
    PRICE_CHANGED: _ClassVar[ErrorReason]
    PAYMENT_DECLINED: _ClassVar[ErrorReason]
    PROMOTION_INVALID: _ClassVar[ErrorReason]
    PROMOTION_EXHAUSTED: _ClassVar[ErrorReason]
    SESSION_EXPIRED: _ClassVar[ErrorReason]
    SESSION_NOT_OPEN: _ClassVar[ErrorReason]
    CHECKOUT_IN_PROGRESS: _ClassVar[ErrorReason]
    IDEMPOTENCY_KEY_REUSED: _ClassVar[ErrorReason]
    CART_TOO_LARGE: _ClassVar[ErrorReason]
    BELOW_MINIMUM_ORDER: _ClassVar[ErrorReason]
    CURRENCY_MISMATCH: _ClassVar[ErrorReason]
    NOT_FOUND: _ClassVar[ErrorReason]
    PERMISSION_DENIED: _ClassVar[ErrorReason]
    INVALID_ARGUMENT: _ClassVar[ErrorReason]
    UNAVAILABLE: _ClassVar[ErrorReason]
    ORDER_STATUS_CONFLICT: _ClassVar[ErrorReason]
    PAYMENT_INVALID_STATE: _ClassVar[ErrorReason]
    PAYMENT_PROVIDER_UNAVAILABLE: _ClassVar[ErrorReason]
    PAYMENT_AMOUNT_MISMATCH: _ClassVar[ErrorReason]
    REFUND_EXCEEDS_CAPTURE: _ClassVar[ErrorReason]
    UNAUTHENTICATED: _ClassVar[ErrorReason]
    RATE_LIMITED: _ClassVar[ErrorReason]
    UNIMPLEMENTED: _ClassVar[ErrorReason]
    INTERNAL: _ClassVar[ErrorReason]
    DEADLINE_EXCEEDED: _ClassVar[ErrorReason]
    CANCELLED: _ClassVar[ErrorReason]
    COMPENSATION_STATE_CONFLICT: _ClassVar[ErrorReason]
    SESSION_NOT_STUCK: _ClassVar[ErrorReason]
ERROR_REASON_UNSPECIFIED: ErrorReason
OUT_OF_STOCK: ErrorReason
PRICE_CHANGED: ErrorReason
PAYMENT_DECLINED: ErrorReason
PROMOTION_INVALID: ErrorReason
PROMOTION_EXHAUSTED: ErrorReason
SESSION_EXPIRED: ErrorReason
SESSION_NOT_OPEN: ErrorReason
CHECKOUT_IN_PROGRESS: ErrorReason
IDEMPOTENCY_KEY_REUSED: ErrorReason
CART_TOO_LARGE: ErrorReason
BELOW_MINIMUM_ORDER: ErrorReason
CURRENCY_MISMATCH: ErrorReason
NOT_FOUND: ErrorReason
PERMISSION_DENIED: ErrorReason
INVALID_ARGUMENT: ErrorReason
UNAVAILABLE: ErrorReason
ORDER_STATUS_CONFLICT: ErrorReason
PAYMENT_INVALID_STATE: ErrorReason
PAYMENT_PROVIDER_UNAVAILABLE: ErrorReason
PAYMENT_AMOUNT_MISMATCH: ErrorReason
REFUND_EXCEEDS_CAPTURE: ErrorReason
UNAUTHENTICATED: ErrorReason
RATE_LIMITED: ErrorReason
UNIMPLEMENTED: ErrorReason
INTERNAL: ErrorReason
DEADLINE_EXCEEDED: ErrorReason
CANCELLED: ErrorReason
COMPENSATION_STATE_CONFLICT: ErrorReason
SESSION_NOT_STUCK: ErrorReason
