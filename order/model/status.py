"""The order status machine (DESIGN.md §3), pure.

PENDING_PAYMENT → CONFIRMED | AWAITING_SHIPMENT (cash on delivery) | PAYMENT_FAILED | CANCELLED;
CONFIRMED / AWAITING_SHIPMENT → PACKED → SHIPPED → DELIVERED; CONFIRMED / AWAITING_SHIPMENT / PACKED → CANCELLED.
DELIVERED, CANCELLED and PAYMENT_FAILED are final. Repositories turn :func:`sources_of` (and
:func:`cancellable_by`) into the ``WHERE status IN (…)`` of a conditional UPDATE, so concurrent callers
cannot both move an order.

Who may cancel (DESIGN.md §3): a customer their own order before it is PACKED; an admin or one of
Kassa's services any order before it is SHIPPED.
"""

from __future__ import annotations

from kernel.errors import Reason
from order.model.order import OrderStatus, PaymentOutcome, PaymentStatus

__all__ = [
    "CANCELLABLE",
    "CUSTOMER_CANCELLABLE",
    "FULFILMENT_STATUSES",
    "HOLD_GONE",
    "NEEDS_PAYMENT_HELD",
    "ORDER_STATUS_CONFLICT",
    "TRANSITIONS",
    "can_transition",
    "cancellable_by",
    "payment_target",
    "sources_of",
]

# A FailedPrecondition reason for a transition the status machine refuses.
ORDER_STATUS_CONFLICT = Reason.ORDER_STATUS_CONFLICT

S = OrderStatus
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING_PAYMENT: frozenset({S.CONFIRMED, S.AWAITING_SHIPMENT, S.PAYMENT_FAILED, S.CANCELLED}),
    S.CONFIRMED: frozenset({S.PACKED, S.CANCELLED}),
    S.AWAITING_SHIPMENT: frozenset({S.PACKED, S.CANCELLED}),
    S.PACKED: frozenset({S.SHIPPED, S.CANCELLED}),
    S.SHIPPED: frozenset({S.DELIVERED}),
    S.DELIVERED: frozenset(),
    S.CANCELLED: frozenset(),
    S.PAYMENT_FAILED: frozenset(),
}

FULFILMENT_STATUSES = frozenset({S.PACKED, S.SHIPPED, S.DELIVERED})
# Payment statuses that mean the order's money is neither held nor kept any more (the authorization was voided,
# the payment failed, or all of it was given back). An order whose payment is in one of them is never packed or
# shipped (goods without money; with KASSA_CAPTURE_ON=shipment the hold is what shipment captures), and a
# report that its payment was authorized or captured does not confirm it. The repositories turn this into
# ``payment_status <> ALL(…)`` in the same conditional UPDATE as the status change, which serializes it with
# the payment event that records the void.
HOLD_GONE = frozenset({PaymentStatus.VOIDED, PaymentStatus.FAILED, PaymentStatus.DECLINED, PaymentStatus.REFUNDED})
# The fulfilment steps that need the payment still held (DELIVERED follows a shipment that already happened).
NEEDS_PAYMENT_HELD = frozenset({S.PACKED, S.SHIPPED})
# Every status a privileged caller may cancel from; a customer only those before PACKED.
CANCELLABLE = frozenset(s for s, targets in TRANSITIONS.items() if S.CANCELLED in targets)
CUSTOMER_CANCELLABLE = CANCELLABLE - {S.PACKED}

_PAYMENT_TARGETS = {
    PaymentOutcome.CAPTURED: S.CONFIRMED,
    PaymentOutcome.AUTHORIZED: S.CONFIRMED,
    PaymentOutcome.CASH_ON_DELIVERY: S.AWAITING_SHIPMENT,
    PaymentOutcome.FAILED: S.PAYMENT_FAILED,
}


def can_transition(current: OrderStatus, target: OrderStatus) -> bool:
    return target in TRANSITIONS[current]


def sources_of(target: OrderStatus) -> frozenset[OrderStatus]:
    """Every status an order may be in for ``target`` to be its next one."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


def cancellable_by(*, privileged: bool) -> frozenset[OrderStatus]:
    """The statuses ``CANCELLED`` may follow for this caller: the conditional UPDATE's ``WHERE``."""
    return CANCELLABLE if privileged else CUSTOMER_CANCELLABLE


def payment_target(outcome: PaymentOutcome) -> OrderStatus:
    return _PAYMENT_TARGETS[outcome]
