"""kassa-client: Kassa's carts, checkout and orders over gRPC, for backend services.

::

    from kassa_client import AsyncKassaClient, OutOfStock

    async with AsyncKassaClient("127.0.0.1:50051", orders_target="127.0.0.1:50052", token=jwt) as kassa:
        cart = await kassa.carts.create(currency_code="USD")
        ...
        try:
            session = (await kassa.checkout.start(cart.cart_id)).session
        except OutOfStock as exc:
            print(exc.metadata["skus"])

``KassaClient`` is the same API, blocking. Every call has a deadline (``timeout``, 10 s by default;
ConfirmCheckout three times it); reads, set-style updates and ConfirmCheckout are retried with backoff on
UNAVAILABLE, ConfirmCheckout with the same idempotency key every time; errors are the KassaError classes of
kassa_client.errors, one per ErrorInfo reason. Messages are the generated protobuf classes (``kassa.*``,
shipped in this wheel); ``Address`` and ``Money`` are re-exported for convenience.
"""

from kassa.common.v1.address_pb2 import Address
from kassa.common.v1.money_pb2 import Money
from kassa_client._core import NO_RETRY, RetryPolicy, __version__
from kassa_client.aio import AsyncKassaClient
from kassa_client.errors import (
    BelowMinimumOrder,
    Cancelled,
    CartTooLarge,
    CheckoutInProgress,
    CompensationStateConflict,
    CurrencyMismatch,
    DeadlineExceeded,
    IdempotencyKeyReused,
    Internal,
    InvalidArgument,
    KassaError,
    NotFound,
    OrderStatusConflict,
    OutOfStock,
    PaymentAmountMismatch,
    PaymentDeclined,
    PaymentInvalidState,
    PaymentProviderUnavailable,
    PermissionDenied,
    PriceChanged,
    PromotionExhausted,
    PromotionInvalid,
    RateLimited,
    RefundExceedsCapture,
    Retryable,
    SessionExpired,
    SessionNotOpen,
    SessionNotStuck,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    error_class,
    from_rpc_error,
)
from kassa_client.sync import KassaClient

__all__ = [
    "NO_RETRY",
    "Address",
    "AsyncKassaClient",
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
    "KassaClient",
    "KassaError",
    "Money",
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
    "RetryPolicy",
    "Retryable",
    "SessionExpired",
    "SessionNotOpen",
    "SessionNotStuck",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "__version__",
    "error_class",
    "from_rpc_error",
]
