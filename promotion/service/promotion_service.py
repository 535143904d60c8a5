"""kassa.promotion.v1.PromotionService: validates, converts protobuf <-> model, calls biz."""

from __future__ import annotations

from typing import cast

import grpc

from infra.auth import require_admin, require_privileged, require_service
from infra.errors import InvalidArgument
from infra.money import Money
from infra.pb import money_to_pb, timestamp_to_pb
from kassa.promotion.v1 import promotion_pb2, promotion_service_pb2, promotion_service_pb2_grpc
from promotion.biz import create, reserve, settle, validate
from promotion.model.promotion import Applied, Promotion
from promotion.model.usage import Usage
from promotion.service.validation import (
    PB_TYPES,
    cart_from_pb,
    check_codes,
    check_customer,
    check_customer_email,
    check_reference,
    promotion_from_pb,
)

__all__ = ["PromotionServiceServicer"]

_TYPE_PB = {kind: number for number, kind in PB_TYPES.items()}


def _applied_pb(a: Applied | Usage) -> promotion_pb2.AppliedPromotion:
    return promotion_pb2.AppliedPromotion(
        code=a.code, promotion_id=a.promotion_id, discount=money_to_pb(a.discount), free_shipping=a.free_shipping
    )


def _promotion_pb(p: Promotion) -> promotion_pb2.Promotion:
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


class PromotionServiceServicer(promotion_service_pb2_grpc.PromotionServiceServicer):
    """CreatePromotion takes an admin token; usage changes a service token (checkout's); a preview either."""

    # The use cases by module (create.CreatePromotion): a bare name would be shadowed by the RPC of that name.
    def __init__(
        self,
        *,
        validate: validate.ValidatePromotions,
        reserve: reserve.ReservePromotionUsage,
        confirm: settle.ConfirmPromotionUsage,
        release: settle.ReleasePromotionUsage,
        create: create.CreatePromotion,
    ) -> None:
        self._validate = validate
        self._reserve = reserve
        self._confirm = confirm
        self._release = release
        self._create = create

    async def ValidatePromotions(
        self, request: promotion_service_pb2.ValidatePromotionsRequest, context: grpc.aio.ServicerContext
    ) -> promotion_service_pb2.ValidatePromotionsResponse:
        require_privileged()
        cart = cart_from_pb(request.currency_code, request.lines, request.shipping_total)
        codes = check_codes(request.codes)
        customer_id = check_customer("customer_id", request.customer_id, required=False)
        email = check_customer_email(request.customer_email)
        result = await self._validate(codes=codes, cart=cart, customer_id=customer_id, customer_email=email)
        return promotion_service_pb2.ValidatePromotionsResponse(
            applied=[_applied_pb(a) for a in result.applied],
            rejected=[
                promotion_pb2.RejectedPromotion(code=r.code, reason=r.reason, message=r.message)
                for r in result.rejected
            ],
            discount_total=money_to_pb(result.discount_total),
            free_shipping=result.free_shipping,
        )

    async def ReservePromotionUsage(
        self, request: promotion_service_pb2.ReservePromotionUsageRequest, context: grpc.aio.ServicerContext
    ) -> promotion_service_pb2.ReservePromotionUsageResponse:
        require_service()
        ref = check_reference("reservation_ref", request.reservation_ref)
        check_customer("customer_id", request.customer_id, required=True)
        cart = cart_from_pb(request.currency_code, request.lines, request.shipping_total)
        codes = check_codes(request.codes)
        email = check_customer_email(request.customer_email)
        reservation = await self._reserve(
            reservation_ref=ref, codes=codes, cart=cart, customer_id=request.customer_id,
            customer_email=email,
        )  # fmt: skip
        return promotion_service_pb2.ReservePromotionUsageResponse(
            applied=[_applied_pb(u) for u in reservation.usages],
            discount_total=money_to_pb(reservation.discount_total),
            free_shipping=reservation.free_shipping,
        )

    async def ConfirmPromotionUsage(
        self, request: promotion_service_pb2.ConfirmPromotionUsageRequest, context: grpc.aio.ServicerContext
    ) -> promotion_service_pb2.ConfirmPromotionUsageResponse:
        require_service()
        ref = check_reference("reservation_ref", request.reservation_ref)
        confirmed = await self._confirm(ref)
        return promotion_service_pb2.ConfirmPromotionUsageResponse(confirmed=confirmed)

    async def ReleasePromotionUsage(
        self, request: promotion_service_pb2.ReleasePromotionUsageRequest, context: grpc.aio.ServicerContext
    ) -> promotion_service_pb2.ReleasePromotionUsageResponse:
        require_service()
        ref = check_reference("reservation_ref", request.reservation_ref)
        released = await self._release(ref)
        return promotion_service_pb2.ReleasePromotionUsageResponse(released=released)

    async def CreatePromotion(
        self, request: promotion_service_pb2.CreatePromotionRequest, context: grpc.aio.ServicerContext
    ) -> promotion_service_pb2.CreatePromotionResponse:
        require_admin()
        if not request.HasField("promotion"):
            raise InvalidArgument("promotion", "is required")
        stored = await self._create(promotion_from_pb(request.promotion))
        return promotion_service_pb2.CreatePromotionResponse(promotion=_promotion_pb(stored))
