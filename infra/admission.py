"""Admission control at a service's edge: under overload, turn new work away at once.

Without it, a saturated service accepts every call and runs them all slower, until nearly every
call outlives its deadline: the machine stays busy and almost no checkout completes (measured with
``make bench`` in open loop far above capacity). With it, the service keeps at most ``limit`` calls
in flight for the methods that start new work (a new cart): the next one is refused at once with
UNAVAILABLE, which costs almost nothing and tells the client to back off and retry, while the
checkouts already under way keep their speed and finish. Other calls are refused only at
``limit * hard_factor`` in flight, so a customer who got a cart can still pay.

The limit is static: about what the machine serves in half a second (Little's law: calls/s at
capacity x the latency wanted). On the 2-core reference machine 16 keeps the flows it admits at a
few seconds end to end under 25x overload, where without it almost nothing completes.

Nothing is written before a call is admitted, so a refused call can always be retried.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Admission", "AdmissionPolicy"]


@dataclass(frozen=True)
class AdmissionPolicy:
    # Calls in flight at which calls to ``new_work`` methods are refused; 0 admits everything.
    limit: int = 0
    # Full gRPC method names ("/pkg.Service/Method") that start new work.
    new_work: frozenset[str] = field(default_factory=frozenset)
    # Every call is refused at ``limit * hard_factor`` in flight.
    hard_factor: int = 3


class Admission:
    """Counts the calls in flight; one instance per server (an event loop, so no locking)."""

    def __init__(self, policy: AdmissionPolicy) -> None:
        self.policy = policy
        self.in_flight = 0
        self.refused = 0

    def admit(self, method: str) -> bool:
        """True when the call may run (then :meth:`done` must follow); False when it is refused."""
        limit = self.policy.limit
        if limit > 0:
            cap = limit if method in self.policy.new_work else limit * self.policy.hard_factor
            if self.in_flight >= cap:
                self.refused += 1
                return False
        self.in_flight += 1
        return True

    def done(self) -> None:
        self.in_flight -= 1
