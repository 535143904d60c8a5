"""The named steps of ConfirmCheckout, each with a fault point before and after it (infra.faults).

A step runs as ``async with lease.step("authorize"): …`` (:mod:`lease`): the ``before`` point, then the
lease check, then the block, then the ``after`` point when the block ended without an exception. The
saga (:mod:`confirm`), its step 8 (:mod:`settle`) and everything that resumes a saga (recovery, payment
completion) go through the same points, so a chaos run can stop a checkout at every step, wherever the
step runs. Unconfigured, a point costs one call that returns at once.
"""

from __future__ import annotations

from infra import faults

__all__ = ["STEPS", "step_points"]

# DESIGN.md §3's steps as infra.faults names them: confirm_stock is the warehouse's ConfirmReservations,
# capture takes the money (or records cash on delivery / nothing to pay) and tells the order, finalize
# is the session's last write (COMPLETED or CANCELLED, or AWAITING_PAYMENT for 3-D Secure).
STEPS = faults.CONFIRM_STEPS

# Built once, not per call.
_POINTS = {name: (f"checkout.confirm.before_{name}", f"checkout.confirm.after_{name}") for name in STEPS}


def step_points(name: str) -> tuple[str, str]:
    """The fault points before and after the step ``name`` (one of :data:`STEPS`)."""
    return _POINTS[name]
