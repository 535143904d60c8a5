"""ValidatePromotions: what codes would take off a cart, reserving nothing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from promotion.biz.discount import evaluate, normalize_codes
from promotion.biz.ports import PromotionRepo
from promotion.model.customer import email_key
from promotion.model.promotion import Cart, Evaluation, Promotion

__all__ = ["validate_promotions"]


async def validate_promotions(
    repo: PromotionRepo,
    clock: Callable[[], datetime],
    *,
    codes: Sequence[str],
    cart: Cart,
    customer_id: str,
    customer_email: str = "",
) -> Evaluation:
    """A preview only: counts may change before checkout reserves, which re-checks atomically
    (ReservePromotionUsage), so no usage limit is ever exceeded. The per-customer limit counts the
    customer id's and the mailbox's uses as the reservation will; with neither it is not checked."""
    wanted = normalize_codes(codes)
    mailbox = email_key(customer_email)
    promotions: dict[str, Promotion] = {}
    uses: dict[str, int] = {}
    if wanted:
        promotions, uses = await repo.find_with_customer_uses(wanted, customer_id, mailbox)
    return evaluate(wanted, promotions, cart, clock(), uses if customer_id or mailbox else {})
