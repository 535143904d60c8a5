"""The knobs of the checkout use cases (bootstrap fills them from infra.config.Settings)."""

from __future__ import annotations

from dataclasses import dataclass, field

from checkout.biz.retry import RetryPolicy

__all__ = ["CheckoutPolicy"]


@dataclass(frozen=True)
class CheckoutPolicy:
    default_currency: str = "USD"
    max_cart_items: int = 100
    max_item_quantity: int = 999
    min_order_minor: int = 0
    # Stock held by StartCheckout, and again by ConfirmCheckout for the rest of the saga.
    reservation_ttl_seconds: int = 900
    confirm_ttl_seconds: int = 900
    # One deadline over the whole totals fan-out (prices, shipping, promotions, tax).
    pricing_deadline_seconds: float = 5.0
    # The deadline of one call to another service.
    rpc_timeout_seconds: float = 5.0
    # The lease on a saga (see biz/checkout/lease.py): a CONFIRMING session without progress for this long is
    # presumed abandoned by a crashed replica and claimed by the recovery worker. Bootstrap derives it from
    # the RPC deadline and refuses one that a single step (a call and its retries) could outlast.
    recovery_after_seconds: float = 120
    # An order waits this long in PENDING_PAYMENT for the customer's action (3-D Secure), holding its
    # stock and promotion usage; a session awaiting payment is polled when no webhook came for a while.
    payment_window_seconds: int = 1800
    payment_poll_after_seconds: int = 60
    # A finished ConfirmCheckout is replayed for a repeat of its Idempotency-Key this long.
    replay_ttl_seconds: int = 86_400
    # KASSA_CAPTURE_ON=shipment: a card payment is only authorized at checkout and captured when the order
    # ships (by payment, on OrderShipped); a cancellation before that voids it.
    capture_on_shipment: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @property
    def step_budget_seconds(self) -> float:
        """The longest one step of a saga may take: every attempt of its call at the RPC deadline, plus backoff."""
        return self.retry.attempts * (self.rpc_timeout_seconds + self.retry.max_seconds)
