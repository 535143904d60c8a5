"""Which payment reports move an order's ``payment_status`` (DESIGN.md §3), pure.

Payment events can arrive late or out of order (redeliveries, a webhook and a capture racing), so an
order's payment status only moves forward: a PaymentAuthorized that arrives after PaymentCaptured
changes nothing. Refunds accumulate, so PARTIALLY_REFUNDED may follow itself (a second partial refund)
and REFUNDED follows it. UNSPECIFIED and PENDING may be followed by anything later, since the order may
have missed the events before it existed. Repositories turn :func:`payment_sources_of` into the
``WHERE payment_status IN (…)`` of the conditional UPDATE.
"""

from __future__ import annotations

from order.model.order import PaymentStatus

__all__ = ["FOLLOWS", "payment_sources_of", "records"]

P = PaymentStatus

# What each status may be directly followed by; FOLLOWS is its transitive closure.
_NEXT: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    P.UNSPECIFIED: frozenset({P.PENDING}),
    P.PENDING: frozenset({P.REQUIRES_ACTION, P.AUTHORIZED, P.CASH_ON_DELIVERY, P.DECLINED, P.FAILED, P.VOIDED}),
    P.REQUIRES_ACTION: frozenset({P.AUTHORIZED, P.CAPTURED, P.DECLINED, P.FAILED, P.VOIDED}),
    P.AUTHORIZED: frozenset({P.CAPTURED, P.VOIDED}),
    P.CASH_ON_DELIVERY: frozenset({P.CAPTURED, P.VOIDED}),
    P.CAPTURED: frozenset({P.PARTIALLY_REFUNDED, P.REFUNDED}),
    P.PARTIALLY_REFUNDED: frozenset({P.PARTIALLY_REFUNDED, P.REFUNDED}),
    P.REFUNDED: frozenset(),
    P.VOIDED: frozenset(),
    P.DECLINED: frozenset(),
    P.FAILED: frozenset(),
}


def _closure(status: PaymentStatus) -> frozenset[PaymentStatus]:
    seen: set[PaymentStatus] = set()
    todo = list(_NEXT[status])
    while todo:
        s = todo.pop()
        if s not in seen:
            seen.add(s)
            todo.extend(_NEXT[s])
    return frozenset(seen)


FOLLOWS: dict[PaymentStatus, frozenset[PaymentStatus]] = {s: _closure(s) for s in PaymentStatus}


def records(current: PaymentStatus, reported: PaymentStatus) -> bool:
    """Whether an order whose payment is ``current`` takes ``reported`` (and its timeline entry)."""
    return reported in FOLLOWS[current]


def payment_sources_of(reported: PaymentStatus) -> frozenset[PaymentStatus]:
    """Every payment status an order may be in for ``reported`` to be recorded."""
    return frozenset(s for s, later in FOLLOWS.items() if reported in later)
