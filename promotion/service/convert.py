"""Protobuf <-> model for the promotion service (a request's checks, and the model it becomes, are in validation.py)."""

from __future__ import annotations

from typing import cast

from infra.pb import money_to_pb, timestamp_to_pb
from kassa.promotion.v1 import promotion_pb2
from kernel.money import Money
from promotion.model.promotion import Applied, Promotion, PromotionType
from promotion.model.usage import Usage

__all__ = ["PB_TYPES", "applied_to_pb", "promotion_to_pb"]

PB_TYPES: dict[int, PromotionType] = {
    promotion_pb2.PROMOTION_TYPE_PERCENTAGE: PromotionType.PERCENTAGE,
    promotion_pb2.PROMOTION_TYPE_FIXED_AMOUNT: PromotionType.FIXED_AMOUNT,
    promotion_pb2.PROMOTION_TYPE_FREE_SHIPPING: PromotionType.FREE_SHIPPING,
    promotion_pb2.PROMOTION_TYPE_BUY_X_GET_Y: PromotionType.BUY_X_GET_Y,
}
_TYPE_PB = {kind: number for number, kind in PB_TYPES.items()}


def applied_to_pb(a: Applied | Usage) -> promotion_pb2.AppliedPromotion:
    return promotion_pb2.AppliedPromotion(
        code=a.code, promotion_id=a.promotion_id, discount=money_to_pb(a.discount), free_shipping=a.free_shipping
    )


def promotion_to_pb(p: Promotion) -> promotion_pb2.Promotion:
    c = p.conditions
    return promotion_pb2.Promotion(
        promotion_id=p.promotion_id,
        code=p.code,
        name=p.name,
        type=cast(promotion_pb2.PromotionType, _TYPE_PB[p.type]),
        percent_off=p.percent_off,
        amount_off=money_to_pb(Money(p.currency_code, p.amount_off_minor)) if p.amount_off_minor else None,
        usage_limit=p.usage_limit,
        usage_limit_per_customer=p.usage_limit_per_customer,
        min_subtotal=money_to_pb(Money(p.currency_code, p.min_subtotal_minor)) if p.min_subtotal_minor else None,
        currency_code=p.currency_code,
        starts_at=timestamp_to_pb(p.starts_at),
        ends_at=timestamp_to_pb(p.ends_at),
        combinable=p.combinable,
        conditions=promotion_pb2.PromotionConditions(
            skus=sorted(c.skus),
            categories=sorted(c.categories),
            brands=sorted(c.brands),
            buy_quantity=c.buy_quantity,
            get_quantity=c.get_quantity,
        ),
        usage_count=p.usage_count,
    )
