"""CreatePromotion (admin)."""

from __future__ import annotations

import dataclasses
import uuid

from kernel.errors import AlreadyExists, Reason
from promotion.biz.ports import UnitOfWork
from promotion.model.promotion import Promotion

__all__ = ["CreatePromotion"]


class CreatePromotion:
    """Store a validated promotion with fresh counters. Codes are unique (a second create with the
    same code is refused, never merged), so a code always means one set of rules (DESIGN.md §4.6)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, draft: Promotion) -> Promotion:
        promotion = dataclasses.replace(draft, promotion_id=str(uuid.uuid4()), used_count=0, reserved_count=0)
        async with self._uow.transaction() as tx:
            stored = await tx.promotions.create(promotion)
        if stored is None:
            raise AlreadyExists(
                f"promotion code {promotion.code} already exists",
                reason=Reason.PROMOTION_INVALID,
                metadata={"code": promotion.code},
            )
        return stored
