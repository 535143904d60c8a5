"""kassa.pricing.v1.PricingService: checks the request (service/validation.py), calls the use case, answers
(service/convert.py)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from infra.auth import require_admin, require_identity, require_privileged
from infra.pb import money_to_pb
from kassa.pricing.v1 import pricing_service_pb2 as pb
from kassa.pricing.v1 import pricing_service_pb2_grpc
from kernel.errors import InvalidArgument
from kernel.validation import MAX_AMOUNT_MINOR
from pricing.biz.calculate_tax import CalculateTax
from pricing.biz.get_products import GetProducts
from pricing.biz.quote_order import QuoteOrder
from pricing.biz.quote_shipping import QuoteShipping
from pricing.biz.sync_products import SyncProducts
from pricing.biz.upsert_products import UpsertProducts
from pricing.model.delivery import order_window
from pricing.service.convert import priced_to_pb, product_to_pb, window_to_pb
from pricing.service.sync_tokens import encode_page, encode_sync
from pricing.service.validation import (
    check_calculate_tax,
    check_get_products,
    check_quote_order,
    check_quote_shipping,
    check_sync_products,
    check_upsert_products,
)

__all__ = ["PricingServiceServicer", "PricingUseCases"]


@dataclass(frozen=True)
class PricingUseCases:
    get_products: GetProducts
    upsert_products: UpsertProducts
    quote_shipping: QuoteShipping
    calculate_tax: CalculateTax
    quote_order: QuoteOrder
    sync_products: SyncProducts


class PricingServiceServicer(pricing_service_pb2_grpc.PricingServiceServicer):
    def __init__(self, use_cases: PricingUseCases) -> None:
        self._use = use_cases

    async def GetProducts(
        self, request: pb.GetProductsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetProductsResponse:
        require_identity()
        skus = check_get_products(request)
        lookup = await self._use.get_products(skus, request.currency_code)
        return pb.GetProductsResponse(products=priced_to_pb(lookup), missing_skus=lookup.missing_skus)

    async def UpsertProducts(
        self, request: pb.UpsertProductsRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertProductsResponse:
        require_admin()
        stored = await self._use.upsert_products(check_upsert_products(request))
        return pb.UpsertProductsResponse(products=[product_to_pb(p) for p in stored])

    async def QuoteShipping(
        self, request: pb.QuoteShippingRequest, context: grpc.aio.ServicerContext
    ) -> pb.QuoteShippingResponse:
        require_identity()
        query = check_quote_shipping(request)
        total = await self._use.quote_shipping(
            shipping_method=query.shipping_method,
            currency_code=query.currency_code,
            parcels=query.parcels,
            destination_country=query.destination_country,
        )
        window = order_window(query.shipping_method, query.parcels, query.destination_country)
        return pb.QuoteShippingResponse(shipping_total=money_to_pb(total), delivery_window=window_to_pb(window))

    async def CalculateTax(
        self, request: pb.CalculateTaxRequest, context: grpc.aio.ServicerContext
    ) -> pb.CalculateTaxResponse:
        require_identity()
        query = check_calculate_tax(request)
        result = await self._use.calculate_tax(
            lines=query.lines,
            shipping=query.shipping_total,
            destination_country=query.destination_country,
            currency_code=query.currency_code,
        )
        return pb.CalculateTaxResponse(
            tax_total=money_to_pb(result.tax_total),
            lines=[pb.TaxLineResult(sku=r.sku, tax=money_to_pb(r.tax)) for r in result.lines],
        )

    async def QuoteOrder(
        self, request: pb.QuoteOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.QuoteOrderResponse:
        require_identity()
        query = check_quote_order(request)
        shipping = query.shipping
        result = await self._use.quote_order(
            lines=query.lines,
            parcels=shipping.parcels,
            shipping_method=shipping.shipping_method,
            currency_code=shipping.currency_code,
            destination_country=shipping.destination_country,
            shipping_discount_minor=query.shipping_discount_minor,
        )
        for total in (result.shipping_total, result.tax_total):
            if total is not None and total.amount_minor > MAX_AMOUNT_MINOR:
                # Capped prices times capped quantities over many lines: more than any one payment carries.
                raise InvalidArgument("lines", f"the order's totals pass {MAX_AMOUNT_MINOR:,} minor units")
        return pb.QuoteOrderResponse(
            products=priced_to_pb(result.lookup),
            missing_skus=result.lookup.missing_skus,
            shipping_total=money_to_pb(result.shipping_total) if result.shipping_total is not None else None,
            tax_total=money_to_pb(result.tax_total) if result.tax_total is not None else None,
            delivery_window=window_to_pb(result.delivery_window),
        )

    async def SyncProducts(
        self, request: pb.SyncProductsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SyncProductsResponse:
        require_privileged()
        cursor, page_size = check_sync_products(request)
        page = await self._use.sync_products(cursor, page_size)
        return pb.SyncProductsResponse(
            products=[product_to_pb(p) for p in page.products],
            next_page_token=encode_page(page.more) if page.more is not None else "",
            next_sync_token=encode_sync(page.until) if page.more is None else "",
        )
