"""kassa.pricing.v1.PricingService: validates, converts protobuf <-> model, calls biz."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc

from infra.auth import require_admin, require_identity
from infra.pb import checked_currency, money_in_currency, money_to_pb
from kassa.common.v1 import delivery_pb2
from kassa.pricing.v1 import pricing_service_pb2 as pb
from kassa.pricing.v1 import pricing_service_pb2_grpc
from kernel.delivery import DeliveryWindow
from kernel.errors import InvalidArgument
from kernel.money import Money
from kernel.validation import MAX_AMOUNT_MINOR, check_amount, check_country, check_shipping_method, check_sku
from pricing.biz.calculate_tax import CalculateTax
from pricing.biz.get_products import GetProducts
from pricing.biz.quote_order import QuoteLine, QuoteOrder
from pricing.biz.quote_shipping import QuoteShipping
from pricing.biz.upsert_products import UpsertProducts
from pricing.model.catalog import TAX_CLASSES, CatalogLookup, Product
from pricing.model.delivery import order_window
from pricing.model.rates import Parcel, TaxableLine
from pricing.service.validation import MAX_NAME_LENGTH, MAX_PARCEL_WEIGHT_GRAMS, check_label, check_weight

__all__ = ["MAX_BATCH", "MAX_QUANTITY", "PricingServiceServicer", "PricingUseCases"]

# Bounds the work one request can ask for; a cart is at most a few hundred lines.
MAX_BATCH = 1000
# Units of one line QuoteOrder prices (int64 on the wire; bounded so totals stay far from overflow).
MAX_QUANTITY = 1_000_000


def _product_pb(p: Product) -> pb.Product:
    return pb.Product(
        sku=p.sku,
        name=p.name,
        category=p.category,
        brand=p.brand,
        weight_grams=p.weight_grams,
        tax_class=p.tax_class,
        prices=[money_to_pb(m) for m in p.prices],
    )


def _check_batch(field: str, size: int) -> None:
    if size > MAX_BATCH:
        raise InvalidArgument(field, f"at most {MAX_BATCH} entries per request")


def _priced_pb(lookup: CatalogLookup) -> list[pb.PricedProduct]:
    return [
        pb.PricedProduct(
            product=_product_pb(pp.product),
            unit_price=money_to_pb(pp.unit_price) if pp.unit_price is not None else None,
        )
        for pp in lookup.products
    ]


def _window_pb(window: DeliveryWindow | None) -> delivery_pb2.DeliveryWindow | None:
    """Business days, and the dates they fall on counted from today (UTC): a quote is for an order placed now."""
    if window is None:
        return None
    earliest, latest = window.dates_from(datetime.now(UTC).date())
    return delivery_pb2.DeliveryWindow(
        min_business_days=window.min_business_days,
        max_business_days=window.max_business_days,
        earliest_date=earliest.isoformat(),
        latest_date=latest.isoformat(),
    )


def _parcels(items: Sequence[pb.Parcel]) -> list[Parcel]:
    _check_batch("parcels", len(items))
    parcels: list[Parcel] = []
    for i, p in enumerate(items):
        origin = check_country(f"parcels[{i}].origin.country_code", p.origin.country_code)
        check_weight(f"parcels[{i}].weight_grams", p.weight_grams, MAX_PARCEL_WEIGHT_GRAMS)
        parcels.append(Parcel(p.warehouse_id, origin, p.weight_grams))
    return parcels


def _product_from_pb(i: int, p: pb.Product) -> Product:
    field = f"products[{i}]"
    check_sku(f"{field}.sku", p.sku)
    name = check_label(f"{field}.name", p.name, max_length=MAX_NAME_LENGTH, required=True)
    category = check_label(f"{field}.category", p.category)
    brand = check_label(f"{field}.brand", p.brand)
    check_weight(f"{field}.weight_grams", p.weight_grams)
    if p.tax_class not in TAX_CLASSES:
        raise InvalidArgument(f"{field}.tax_class", f"must be one of {', '.join(TAX_CLASSES)}")
    if not p.prices:
        raise InvalidArgument(f"{field}.prices", "needs at least one price")
    seen: set[str] = set()
    prices: list[Money] = []
    for j, price in enumerate(p.prices):
        currency = checked_currency(f"{field}.prices[{j}].currency_code", price.currency_code)
        if currency in seen:
            raise InvalidArgument(f"{field}.prices[{j}].currency_code", f"duplicate price in {currency}")
        seen.add(currency)
        check_amount(f"{field}.prices[{j}].amount_minor", price.amount_minor)
        prices.append(Money(currency, price.amount_minor))
    return Product(
        sku=p.sku,
        name=name,
        category=category,
        brand=brand,
        weight_grams=p.weight_grams,
        tax_class=p.tax_class,
        prices=tuple(prices),
    )


@dataclass(frozen=True)
class PricingUseCases:
    get_products: GetProducts
    upsert_products: UpsertProducts
    quote_shipping: QuoteShipping
    calculate_tax: CalculateTax
    quote_order: QuoteOrder


class PricingServiceServicer(pricing_service_pb2_grpc.PricingServiceServicer):
    def __init__(self, use_cases: PricingUseCases) -> None:
        self._use = use_cases

    async def GetProducts(
        self, request: pb.GetProductsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetProductsResponse:
        require_identity()
        if request.currency_code:
            checked_currency("currency_code", request.currency_code)
        _check_batch("skus", len(request.skus))
        for i, sku in enumerate(request.skus):
            check_sku(f"skus[{i}]", sku)
        lookup = await self._use.get_products(list(request.skus), request.currency_code)
        return pb.GetProductsResponse(products=_priced_pb(lookup), missing_skus=lookup.missing_skus)

    async def UpsertProducts(
        self, request: pb.UpsertProductsRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertProductsResponse:
        require_admin()
        if not request.products:
            raise InvalidArgument("products", "must not be empty")
        _check_batch("products", len(request.products))
        products: list[Product] = []
        seen: set[str] = set()
        for i, p in enumerate(request.products):
            product = _product_from_pb(i, p)
            if product.sku in seen:
                raise InvalidArgument(f"products[{i}].sku", f"duplicate sku {product.sku}")
            seen.add(product.sku)
            products.append(product)
        stored = await self._use.upsert_products(products)
        return pb.UpsertProductsResponse(products=[_product_pb(p) for p in stored])

    async def QuoteShipping(
        self, request: pb.QuoteShippingRequest, context: grpc.aio.ServicerContext
    ) -> pb.QuoteShippingResponse:
        require_identity()
        check_shipping_method("shipping_method", request.shipping_method)
        currency = checked_currency("currency_code", request.currency_code)
        destination = check_country("destination.country_code", request.destination.country_code)
        parcels = _parcels(request.parcels)
        total = await self._use.quote_shipping(
            shipping_method=request.shipping_method,
            currency_code=currency,
            parcels=parcels,
            destination_country=destination,
        )
        window = order_window(request.shipping_method, parcels, destination)
        return pb.QuoteShippingResponse(shipping_total=money_to_pb(total), delivery_window=_window_pb(window))

    async def CalculateTax(
        self, request: pb.CalculateTaxRequest, context: grpc.aio.ServicerContext
    ) -> pb.CalculateTaxResponse:
        require_identity()
        currency = checked_currency("currency_code", request.currency_code)
        destination = check_country("destination.country_code", request.destination.country_code)
        _check_batch("lines", len(request.lines))
        lines: list[TaxableLine] = []
        for i, line in enumerate(request.lines):
            check_sku(f"lines[{i}].sku", line.sku)
            if line.tax_class not in TAX_CLASSES:
                raise InvalidArgument(f"lines[{i}].tax_class", f"must be one of {', '.join(TAX_CLASSES)}")
            amount = money_in_currency(f"lines[{i}].amount", line.amount, currency)
            lines.append(TaxableLine(line.sku, line.tax_class, amount))
        shipping_total = money_in_currency("shipping_total", request.shipping_total, currency)
        result = await self._use.calculate_tax(
            lines=lines,
            shipping=shipping_total,
            destination_country=destination,
            currency_code=currency,
        )
        return pb.CalculateTaxResponse(
            tax_total=money_to_pb(result.tax_total),
            lines=[pb.TaxLineResult(sku=r.sku, tax=money_to_pb(r.tax)) for r in result.lines],
        )

    async def QuoteOrder(
        self, request: pb.QuoteOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.QuoteOrderResponse:
        require_identity()
        if not request.lines:
            raise InvalidArgument("lines", "must not be empty")
        _check_batch("lines", len(request.lines))
        lines: list[QuoteLine] = []
        for i, line in enumerate(request.lines):
            check_sku(f"lines[{i}].sku", line.sku)
            if not 1 <= line.quantity <= MAX_QUANTITY:
                raise InvalidArgument(f"lines[{i}].quantity", f"must be 1 to {MAX_QUANTITY}")
            lines.append(QuoteLine(line.sku, line.quantity))
        check_shipping_method("shipping_method", request.shipping_method)
        currency = checked_currency("currency_code", request.currency_code)
        destination = check_country("destination.country_code", request.destination.country_code)
        parcels = _parcels(request.parcels)
        result = await self._use.quote_order(
            lines=lines,
            parcels=parcels,
            shipping_method=request.shipping_method,
            currency_code=currency,
            destination_country=destination,
        )
        for total in (result.shipping_total, result.tax_total):
            if total is not None and total.amount_minor > MAX_AMOUNT_MINOR:
                # Capped prices times capped quantities over many lines: more than any one payment carries.
                raise InvalidArgument("lines", f"the order's totals pass {MAX_AMOUNT_MINOR:,} minor units")
        return pb.QuoteOrderResponse(
            products=_priced_pb(result.lookup),
            missing_skus=result.lookup.missing_skus,
            shipping_total=money_to_pb(result.shipping_total) if result.shipping_total is not None else None,
            tax_total=money_to_pb(result.tax_total) if result.tax_total is not None else None,
            delivery_window=_window_pb(result.delivery_window),
        )
