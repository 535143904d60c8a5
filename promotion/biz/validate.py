"""ValidatePromotions: what codes would take off a cart, reserving nothing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from promotion.biz.discount import evaluate, normalize_codes
from promotion.biz.ports import PromotionRepo
from promotion.model.promotion import Cart, Evaluation, Promotion

__all__ = ["validate_promotions"]


async def validate_promotions(
    repo: PromotionRepo, clock: Callable[[], datetime], *, codes: Sequence[str], cart: Cart, customer_id: str
) -> Evaluation:
    """A preview only: counts may change before checkout reserves, which re-checks atomically
    (ReservePromotionUsage), so no usage limit is ever exceeded. Without a customer id the
    per-customer limit is not checked."""
    wanted = normalize_codes(codes)
    promotions: dict[str, Promotion] = {}
    uses: dict[str, int] = {}
    if wanted:
        promotions, uses = await repo.find_with_customer_uses(wanted, customer_id)
    return evaluate(wanted, promotions, cart, clock(), uses if customer_id else {})
