"""kassa.promotion.v1.PromotionService: validates, converts protobuf <-> model, calls biz."""

from __future__ import annotations

import grpc

from infra.auth import require_admin, require_privileged, require_service
from infra.pb import money_to_pb
from kassa.promotion.v1 import promotion_pb2, promotion_service_pb2, promotion_service_pb2_grpc
from kernel.errors import InvalidArgument
from promotion.biz.create import CreatePromotion
from promotion.biz.reserve import ReservePromotionUsage
from promotion.biz.settle import ConfirmPromotionUsage, ReleasePromotionUsage
from promotion.biz.validate import ValidatePromotions
from promotion.service.convert import applied_to_pb, promotion_to_pb
from promotion.service.validation import (
    cart_from_pb,
    check_codes,
    check_customer,
    check_customer_email,
    check_reference,
    promotion_from_pb,
)

__all__ = ["PromotionServiceServicer"]


class PromotionServiceServicer(promotion_service_pb2_grpc.PromotionServiceServicer):
    """CreatePromotion takes an admin token; usage changes a service token (checkout's); a preview either."""

    def __init__(
        self,
        *,
        validate: ValidatePromotions,
        reserve: ReservePromotionUsage,
        confirm: ConfirmPromotionUsage,
        release: ReleasePromotionUsage,
        create: CreatePromotion,
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
            applied=[applied_to_pb(a) for a in result.applied],
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
            applied=[applied_to_pb(u) for u in reservation.usages],
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
        return promotion_service_pb2.CreatePromotionResponse(promotion=promotion_to_pb(stored))
