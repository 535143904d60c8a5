"""PromotionService client: validate (reserves nothing), reserve/confirm/release usage by reservation_ref."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from checkout.adapter.base import GrpcClient
from checkout.model.catalog import AppliedPromotion, PromotionLine, PromotionResult, RejectedPromotion
from infra.channels import ServiceCredentials
from infra.pb import money_from_pb, money_to_pb
from kassa.promotion.v1 import promotion_pb2
from kassa.promotion.v1 import promotion_service_pb2 as pb
from kassa.promotion.v1 import promotion_service_pb2_grpc as pb_grpc
from kernel.money import Money

__all__ = ["GrpcPromotionAdapter"]


def _lines(lines: Sequence[PromotionLine]) -> list[promotion_pb2.PromotionLine]:
    return [
        promotion_pb2.PromotionLine(
            sku=ln.sku, category=ln.category, brand=ln.brand, quantity=ln.quantity,
            unit_price=money_to_pb(ln.unit_price),
        )
        for ln in lines
    ]  # fmt: skip


def _applied(applied: Sequence[promotion_pb2.AppliedPromotion], currency: str) -> list[AppliedPromotion]:
    return [AppliedPromotion(a.code, money_from_pb(a.discount, currency), a.free_shipping) for a in applied]


class GrpcPromotionAdapter(GrpcClient):
    def __init__(self, channel: grpc.aio.Channel, creds: ServiceCredentials, timeout_seconds: float) -> None:
        super().__init__(creds, timeout_seconds)
        self._stub = pb_grpc.PromotionServiceStub(channel)

    async def validate(
        self,
        codes: Sequence[str],
        lines: Sequence[PromotionLine],
        shipping_total: Money,
        currency_code: str,
        customer_id: str,
        *,
        customer_email: str = "",
    ) -> PromotionResult:
        resp = await self._call(
            self._stub.ValidatePromotions,
            pb.ValidatePromotionsRequest(
                codes=list(codes), lines=_lines(lines), shipping_total=money_to_pb(shipping_total),
                currency_code=currency_code, customer_id=customer_id, customer_email=customer_email,
            ),
        )  # fmt: skip
        return PromotionResult(
            applied=_applied(resp.applied, currency_code),
            rejected=[RejectedPromotion(r.code, r.reason, r.message) for r in resp.rejected],
            free_shipping=resp.free_shipping,
        )

    async def reserve_usage(
        self,
        reservation_ref: str,
        codes: Sequence[str],
        lines: Sequence[PromotionLine],
        shipping_total: Money,
        currency_code: str,
        *,
        customer_id: str,
        customer_email: str = "",
    ) -> PromotionResult:
        resp = await self._call(
            self._stub.ReservePromotionUsage,
            pb.ReservePromotionUsageRequest(
                reservation_ref=reservation_ref, codes=list(codes), lines=_lines(lines),
                shipping_total=money_to_pb(shipping_total), currency_code=currency_code, customer_id=customer_id,
                customer_email=customer_email,
            ),
        )  # fmt: skip
        return PromotionResult(applied=_applied(resp.applied, currency_code), free_shipping=resp.free_shipping)

    async def confirm_usage(self, reservation_ref: str) -> None:
        await self._call(
            self._stub.ConfirmPromotionUsage, pb.ConfirmPromotionUsageRequest(reservation_ref=reservation_ref)
        )

    async def release_usage(self, reservation_ref: str) -> None:
        await self._call(
            self._stub.ReleasePromotionUsage, pb.ReleasePromotionUsageRequest(reservation_ref=reservation_ref)
        )
