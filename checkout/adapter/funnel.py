"""The checkout funnel in Prometheus (implements checkout.biz.ports.FunnelEvents).

carts created → checkouts started → confirmed (by the order's status) or failed (by reason), with the sessions
that went to the customer's payment action (3-D Secure) on the way. Counted in the process, after the change
committed; a reason is an ``kernel.errors.Reason`` value, so the label set stays small.
"""

from __future__ import annotations

from prometheus_client import Counter

__all__ = ["CARTS_CREATED", "CHECKOUTS_AWAITING_PAYMENT", "CHECKOUTS_CONFIRMED", "CHECKOUTS_FAILED",
           "CHECKOUTS_STARTED", "PrometheusFunnel"]  # fmt: skip

CARTS_CREATED = Counter("kassa_checkout_carts_created", "Carts created")
CHECKOUTS_STARTED = Counter("kassa_checkout_started", "Checkout sessions started (stock reserved, prices checked)")
CHECKOUTS_AWAITING_PAYMENT = Counter(
    "kassa_checkout_awaiting_payment", "Confirms that placed their order and wait for the customer's payment action"
)
CHECKOUTS_CONFIRMED = Counter(
    "kassa_checkout_confirmed",
    "Checkouts that ended with their order placed: CONFIRMED (paid) or AWAITING_SHIPMENT (cash on delivery)",
    ["order_status"],
)
CHECKOUTS_FAILED = Counter(
    "kassa_checkout_failed",
    "Confirms that failed, by reason: refused before anything moved, or undone (nothing charged)",
    ["reason"],
)


class PrometheusFunnel:
    def __init__(self) -> None:
        self._carts = CARTS_CREATED
        self._started = CHECKOUTS_STARTED
        self._awaiting = CHECKOUTS_AWAITING_PAYMENT

    def cart_created(self) -> None:
        self._carts.inc()

    def checkout_started(self) -> None:
        self._started.inc()

    def checkout_awaiting_payment(self) -> None:
        self._awaiting.inc()

    def checkout_confirmed(self, order_status: str) -> None:
        CHECKOUTS_CONFIRMED.labels(order_status).inc()

    def checkout_failed(self, reason: str) -> None:
        CHECKOUTS_FAILED.labels(reason).inc()
