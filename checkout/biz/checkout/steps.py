"""The named steps of ConfirmCheckout, each passed through a fault point before and after it.

``async with step("authorize"): …`` runs ``checkout.confirm.before_authorize`` before the block and
``checkout.confirm.after_authorize`` after it when it ended without an exception (infra.faults: a crash,
an error, or a delay, off unless configured). The saga (:mod:`confirm`), its step 8 (:mod:`settle`)
and everything that resumes a saga (recovery, payment completion) go through the same points, so a
chaos run can stop a checkout at every step, wherever the step runs.
"""

from __future__ import annotations

from types import TracebackType

from infra import faults

__all__ = ["STEPS", "step"]

# DESIGN.md §3's steps as infra.faults names them: confirm_stock is the warehouse's ConfirmReservations,
# capture takes the money (or records cash on delivery / nothing to pay) and tells the order, finalize
# is the session's last write (COMPLETED or CANCELLED, or AWAITING_PAYMENT for 3-D Secure).
STEPS = faults.CONFIRM_STEPS

# Built once: a step costs two calls that return at once when no fault is configured.
_POINTS = {name: (f"checkout.confirm.before_{name}", f"checkout.confirm.after_{name}") for name in STEPS}


class step:  # used like a function: ``async with step("capture"):``
    """One step of the saga between its two fault points."""

    __slots__ = ("_after", "_before")

    def __init__(self, name: str) -> None:
        self._before, self._after = _POINTS[name]

    async def __aenter__(self) -> None:
        await faults.ahit(self._before)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            await faults.ahit(self._after)
