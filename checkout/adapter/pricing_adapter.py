"""PricingService client: products in one batch, shipping quotes, tax, or all three in one QuoteOrder (with the
discounts to take off before the tax)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import grpc

from checkout.adapter.base import GrpcClient
from checkout.model.catalog import (
    Address,
    CatalogEntry,
    CatalogPage,
    OrderQuote,
    Parcel,
    Product,
    ProductsResult,
    ReserveLine,
    ShippingQuote,
    TaxLine,
)
from infra.channels import ServiceCredentials
from infra.pb import address_to_pb, money_from_pb, money_to_pb, window_from_pb
from kassa.pricing.v1 import pricing_service_pb2 as pb
from kassa.pricing.v1 import pricing_service_pb2_grpc as pb_grpc
from kernel.money import Money

__all__ = ["GrpcPricingAdapter"]


def _products(priced: Iterable[pb.PricedProduct], missing: Iterable[str], currency_code: str) -> ProductsResult:
    products = {
        p.product.sku: Product(
            sku=p.product.sku,
            name=p.product.name,
            category=p.product.category,
            brand=p.product.brand,
            weight_grams=p.product.weight_grams,
            tax_class=p.product.tax_class or "standard",
            unit_price=money_from_pb(p.unit_price, currency_code),
        )
        for p in priced
    }
    return ProductsResult(products, list(missing))


def _parcels_pb(parcels: Sequence[Parcel]) -> list[pb.Parcel]:
    return [
        pb.Parcel(warehouse_id=p.warehouse_id, origin=address_to_pb(p.origin), weight_grams=p.weight_grams)
        for p in parcels
    ]


class GrpcPricingAdapter(GrpcClient):
    def __init__(self, channel: grpc.aio.Channel, creds: ServiceCredentials, timeout_seconds: float) -> None:
        super().__init__(creds, timeout_seconds)
        self._stub = pb_grpc.PricingServiceStub(channel)

    async def get_products(self, skus: Sequence[str], currency_code: str) -> ProductsResult:
        resp = await self._call(
            self._stub.GetProducts, pb.GetProductsRequest(skus=list(skus), currency_code=currency_code)
        )
        return _products(resp.products, resp.missing_skus, currency_code)

    async def sync_products(self, sync_token: str, page_token: str) -> CatalogPage:
        resp = await self._call(
            self._stub.SyncProducts, pb.SyncProductsRequest(sync_token=sync_token, page_token=page_token)
        )
        entries = [
            CatalogEntry(
                sku=p.sku,
                name=p.name,
                category=p.category,
                brand=p.brand,
                weight_grams=p.weight_grams,
                tax_class=p.tax_class or "standard",
                prices={m.currency_code: m.amount_minor for m in p.prices},
            )
            for p in resp.products
        ]
        return CatalogPage(entries, resp.next_page_token, resp.next_sync_token)

    async def quote_order(
        self,
        lines: Sequence[ReserveLine],
        parcels: Sequence[Parcel],
        destination: Address,
        shipping_method: str,
        currency_code: str,
        *,
        line_discounts: Sequence[int] = (),
        shipping_discount: int = 0,
    ) -> OrderQuote:
        discounts = list(line_discounts) or [0] * len(lines)
        resp = await self._call(
            self._stub.QuoteOrder,
            pb.QuoteOrderRequest(
                lines=[
                    pb.QuoteOrderLine(
                        sku=ln.sku,
                        quantity=ln.quantity,
                        discount=money_to_pb(Money(currency_code, off)) if off else None,
                    )
                    for ln, off in zip(lines, discounts, strict=True)
                ],
                parcels=_parcels_pb(parcels),
                destination=address_to_pb(destination),
                shipping_method=shipping_method,
                currency_code=currency_code,
                shipping_discount=money_to_pb(Money(currency_code, shipping_discount)) if shipping_discount else None,
            ),
        )
        products = _products(resp.products, resp.missing_skus, currency_code)
        if products.missing_skus:
            return OrderQuote(products, None, None)
        return OrderQuote(
            products,
            money_from_pb(resp.shipping_total, currency_code),
            money_from_pb(resp.tax_total, currency_code),
            window_from_pb(resp.delivery_window) if resp.HasField("delivery_window") else None,
        )

    async def quote_shipping(
        self, parcels: Sequence[Parcel], destination: Address, shipping_method: str, currency_code: str
    ) -> ShippingQuote:
        resp = await self._call(
            self._stub.QuoteShipping,
            pb.QuoteShippingRequest(
                parcels=_parcels_pb(parcels),
                destination=address_to_pb(destination),
                shipping_method=shipping_method,
                currency_code=currency_code,
            ),
        )
        return ShippingQuote(
            money_from_pb(resp.shipping_total, currency_code),
            window_from_pb(resp.delivery_window) if resp.HasField("delivery_window") else None,
        )

    async def calculate_tax(
        self, lines: Sequence[TaxLine], destination: Address, shipping_total: Money, currency_code: str
    ) -> Money:
        resp = await self._call(
            self._stub.CalculateTax,
            pb.CalculateTaxRequest(
                lines=[pb.TaxLine(sku=ln.sku, tax_class=ln.tax_class, amount=money_to_pb(ln.amount)) for ln in lines],
                destination=address_to_pb(destination),
                shipping_total=money_to_pb(shipping_total),
                currency_code=currency_code,
            ),
        )
        return money_from_pb(resp.tax_total, currency_code)
