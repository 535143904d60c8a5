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
    # A CONFIRMING session older than this is presumed abandoned by a crashed replica.
    recovery_after_seconds: int = 120
    retry: RetryPolicy = field(default_factory=RetryPolicy)
