"""ValidatePromotions: what codes would take off a cart, reserving nothing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from promotion.biz.ports import UnitOfWork
from promotion.model.customer import email_key
from promotion.model.discount import evaluate, normalize_codes
from promotion.model.promotion import Cart, Evaluation, Promotion

__all__ = ["ValidatePromotions"]


class ValidatePromotions:
    """A preview only: counts may change before checkout reserves, which re-checks atomically
    (ReservePromotionUsage), so no usage limit is ever exceeded. The per-customer limit counts the
    customer id's and the mailbox's uses as the reservation will; with neither it is not checked."""

    def __init__(self, uow: UnitOfWork, clock: Callable[[], datetime]) -> None:
        self._uow = uow
        self._clock = clock

    async def __call__(
        self, *, codes: Sequence[str], cart: Cart, customer_id: str, customer_email: str = ""
    ) -> Evaluation:
        wanted = normalize_codes(codes)
        mailbox = email_key(customer_email)
        promotions: dict[str, Promotion] = {}
        uses: dict[str, int] = {}
        if wanted:
            async with self._uow.read() as tx:
                promotions, uses = await tx.promotions.find_with_customer_uses(wanted, customer_id, mailbox)
        return evaluate(wanted, promotions, cart, self._clock(), uses if customer_id or mailbox else {})
