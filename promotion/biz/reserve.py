"""ReservePromotionUsage: validate and reserve one use of every code, all or nothing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from kernel.errors import AlreadyExists, FailedPrecondition, Reason
from kernel.money import Money
from promotion.biz.ports import UnitOfWork
from promotion.model.customer import email_key
from promotion.model.discount import evaluate, normalize_codes
from promotion.model.promotion import Cart, Evaluation
from promotion.model.usage import Reservation, Usage, UsageStatus

__all__ = ["ReservePromotionUsage"]


def _reservation(usages: list[Usage], currency_code: str) -> Reservation:
    total = sum(u.discount.amount_minor for u in usages)
    return Reservation(usages, Money(currency_code, total), any(u.free_shipping for u in usages))


def _refuse(evaluation: Evaluation) -> None:
    if evaluation.rejected:
        first = evaluation.rejected[0]
        raise FailedPrecondition(first.message, reason=first.reason, metadata={"code": first.code})


class ReservePromotionUsage:
    """Usage limits are never exceeded, under any concurrency, and a retry counts nothing twice.

    A per-customer limit counts the uses of ``customer_id`` and of the mailbox ``customer_email``
    reaches together (promotion.model.customer): a guest's subject is new with every guest token,
    its mailbox is not.

    Everything happens in one transaction: the reference is locked (a concurrent retry waits and
    then sees this reservation), the promotions are row-locked in code order (so concurrent
    reservations of one customer serialize and their per-customer count is exact), each use is
    taken with a conditional update bounded by the usage limit, and any refusal rolls the whole
    transaction back so nothing stays reserved. A reference whose earlier uses were released
    (a failed checkout attempt) reserves afresh; one whose order ended (uses returned) is refused.
    """

    def __init__(self, uow: UnitOfWork, clock: Callable[[], datetime]) -> None:
        self._uow = uow
        self._clock = clock

    async def __call__(
        self,
        *,
        reservation_ref: str,
        codes: Sequence[str],
        cart: Cart,
        customer_id: str,
        customer_email: str = "",
    ) -> Reservation:
        wanted = normalize_codes(codes)
        if not wanted:
            return Reservation([], Money.zero(cart.currency_code), False)
        async with self._uow.transaction() as tx:
            await tx.usages.lock_reference(reservation_ref)
            existing = await tx.usages.of_reference(reservation_ref)
            if any(u.status is UsageStatus.RETURNED for u in existing):
                # The reference's order was placed and then ended: the session is finished.
                raise FailedPrecondition(
                    f"the order of {reservation_ref} ended and its promotion uses were given back",
                    reason=Reason.SESSION_NOT_OPEN,
                    metadata={"reservation_ref": reservation_ref},
                )
            active = [u for u in existing if u.status is not UsageStatus.RELEASED]
            if active:
                if sorted(u.code for u in active) != sorted(wanted):
                    raise AlreadyExists(
                        f"reservation {reservation_ref} already holds other codes",
                        reason=Reason.IDEMPOTENCY_KEY_REUSED,
                        metadata={"reservation_ref": reservation_ref},
                    )
                by_code = {u.code: u for u in active}
                return _reservation([by_code[c] for c in wanted], cart.currency_code)
            promotions = await tx.promotions.lock(wanted)
            mailbox = email_key(customer_email)
            found = [p.promotion_id for p in promotions.values()]
            now = self._clock()
            # Evaluated first as if the customer had used none of them: the customer's uses only ever add
            # refusals, so if this one applies every code, the customer's real uses (counted by the take's
            # statement, in the snapshot the separate count had) either apply the very same codes or refuse.
            evaluation = evaluate(wanted, promotions, cart, now, {})
            if evaluation.rejected:
                # Refused anyway: refused exactly as the customer's uses say (the count the take would do).
                uses = await tx.usages.customer_uses(found, customer_id, mailbox)
                _refuse(evaluate(wanted, promotions, cart, now, uses))
            usages = [
                Usage(
                    promotion_id=applied.promotion_id,
                    code=applied.code,
                    reservation_ref=reservation_ref,
                    customer_id=customer_id,
                    status=UsageStatus.RESERVED,
                    discount=applied.discount,
                    free_shipping=applied.free_shipping,
                    customer_email_key=mailbox,
                )
                for applied in sorted(evaluation.applied, key=lambda a: a.code)
            ]
            taken, uses = await tx.usages.take_counting(usages, found, customer_id, mailbox)
            # A refusal raises, and the transaction rolls back what the take wrote.
            _refuse(evaluate(wanted, promotions, cart, now, uses))
            exhausted = next((u for u in usages if u.promotion_id not in taken), None)
            if exhausted is not None:
                raise FailedPrecondition(
                    f"{exhausted.code} has reached its usage limit",
                    reason=Reason.PROMOTION_EXHAUSTED,
                    metadata={"code": exhausted.code},
                )
        by_code = {u.code: u for u in usages}
        return _reservation([by_code[a.code] for a in evaluation.applied], cart.currency_code)
