"""The checks of PricingService's requests, run by the servicer before the use case: each refusal names the
request field (DESIGN.md §4.6), and each check returns the request's values as the use case takes them.

Country codes, skus, amounts and shipping methods are checked by the shared rules (kernel.validation)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from infra.pb import checked_currency, money_in_currency
from kassa.pricing.v1 import pricing_service_pb2 as pb
from kernel.errors import InvalidArgument
from kernel.money import Money
from kernel.validation import check_amount, check_country, check_shipping_method, check_sku, check_text
from pricing.biz.quote_order import QuoteLine
from pricing.model.catalog import TAX_CLASSES, Product, SyncCursor
from pricing.model.rates import Parcel, TaxableLine
from pricing.service.sync_tokens import decode_page, decode_sync

__all__ = ["MAX_BATCH", "MAX_LABEL_LENGTH", "MAX_NAME_LENGTH", "MAX_PARCEL_WEIGHT_GRAMS", "MAX_QUANTITY",
           "MAX_WEIGHT_GRAMS", "OrderQuery", "ShippingQuery", "TaxQuery", "check_calculate_tax", "check_get_products",
           "check_label", "check_quote_order", "check_quote_shipping", "check_sync_products",
           "check_upsert_products", "check_weight"]  # fmt: skip

# Bounds the work one request can ask for; a cart is at most a few hundred lines.
MAX_BATCH = 1000
# Products per page of SyncProducts: the default, and the most a page holds.
SYNC_PAGE_SIZE = 500
MAX_SYNC_PAGE_SIZE = MAX_BATCH
# Units of one line QuoteOrder prices (int64 on the wire; bounded so totals stay far from overflow).
MAX_QUANTITY = 1_000_000

MAX_NAME_LENGTH = 200
MAX_LABEL_LENGTH = 128
# Ten tonnes: past any product a parcel service carries.
MAX_WEIGHT_GRAMS = 10_000_000
# A parcel holds up to 999 units of each of a cart's (at most 100) lines, so 10^12 g; at any per-kg rate a
# total over 1000 parcels stays far inside int64.
MAX_PARCEL_WEIGHT_GRAMS = 1_000_000_000_000


def check_label(field: str, value: str, *, max_length: int = MAX_LABEL_LENGTH, required: bool = False) -> str:
    """A product's name, category or brand: storable text (kernel.validation.check_text), stripped."""
    return check_text(field, value, max_length=max_length, required=required).strip()


def check_weight(field: str, grams: int, maximum: int = MAX_WEIGHT_GRAMS) -> int:
    if grams < 0:
        raise InvalidArgument(field, "must not be negative")
    if grams > maximum:
        raise InvalidArgument(field, f"must be at most {maximum:,} grams")
    return grams


@dataclass(frozen=True, slots=True)
class ShippingQuery:
    """Where and how a quote's parcels ship (QuoteShipping, and QuoteOrder's shipping part)."""

    shipping_method: str
    currency_code: str
    destination_country: str
    parcels: list[Parcel]


@dataclass(frozen=True, slots=True)
class TaxQuery:
    currency_code: str
    destination_country: str
    lines: list[TaxableLine]
    shipping_total: Money


def _check_batch(field: str, size: int) -> None:
    if size > MAX_BATCH:
        raise InvalidArgument(field, f"at most {MAX_BATCH} entries per request")


def _parcels(items: Sequence[pb.Parcel]) -> list[Parcel]:
    _check_batch("parcels", len(items))
    parcels: list[Parcel] = []
    for i, p in enumerate(items):
        origin = check_country(f"parcels[{i}].origin.country_code", p.origin.country_code)
        check_weight(f"parcels[{i}].weight_grams", p.weight_grams, MAX_PARCEL_WEIGHT_GRAMS)
        parcels.append(Parcel(p.warehouse_id, origin, p.weight_grams))
    return parcels


def _shipping_query(
    shipping_method: str, currency_code: str, destination_country: str, parcels: Sequence[pb.Parcel]
) -> ShippingQuery:
    check_shipping_method("shipping_method", shipping_method)
    currency = checked_currency("currency_code", currency_code)
    destination = check_country("destination.country_code", destination_country)
    return ShippingQuery(shipping_method, currency, destination, _parcels(parcels))


def _product(i: int, p: pb.Product) -> Product:
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


def check_get_products(request: pb.GetProductsRequest) -> list[str]:
    """The currency when given, then the skus; returns the skus."""
    if request.currency_code:
        checked_currency("currency_code", request.currency_code)
    _check_batch("skus", len(request.skus))
    for i, sku in enumerate(request.skus):
        check_sku(f"skus[{i}]", sku)
    return list(request.skus)


def check_sync_products(request: pb.SyncProductsRequest) -> tuple[SyncCursor, int]:
    """The page size, then the sync token, then the page token, which must be of that sync; returns where the
    page starts and how many products it holds at most."""
    if request.page_size < 0:
        raise InvalidArgument("page_size", "must not be negative")
    if request.page_size > MAX_SYNC_PAGE_SIZE:
        raise InvalidArgument("page_size", f"must be at most {MAX_SYNC_PAGE_SIZE}")
    since = decode_sync("sync_token", request.sync_token)
    cursor = decode_page("page_token", request.page_token, since) if request.page_token else SyncCursor(since)
    return cursor, request.page_size or SYNC_PAGE_SIZE


def check_upsert_products(request: pb.UpsertProductsRequest) -> list[Product]:
    """At least one product and at most MAX_BATCH, each complete, no sku twice."""
    if not request.products:
        raise InvalidArgument("products", "must not be empty")
    _check_batch("products", len(request.products))
    products: list[Product] = []
    seen: set[str] = set()
    for i, p in enumerate(request.products):
        product = _product(i, p)
        if product.sku in seen:
            raise InvalidArgument(f"products[{i}].sku", f"duplicate sku {product.sku}")
        seen.add(product.sku)
        products.append(product)
    return products


def check_quote_shipping(request: pb.QuoteShippingRequest) -> ShippingQuery:
    """The shipping method, currency, destination country, then the parcels."""
    return _shipping_query(
        request.shipping_method, request.currency_code, request.destination.country_code, request.parcels
    )


def check_calculate_tax(request: pb.CalculateTaxRequest) -> TaxQuery:
    """The currency, destination country, then each line (sku, tax class, amount in the currency), then the
    shipping total."""
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
    return TaxQuery(currency, destination, lines, shipping_total)


@dataclass(frozen=True, slots=True)
class OrderQuery:
    lines: list[QuoteLine]
    shipping: ShippingQuery
    shipping_discount_minor: int


def check_quote_order(request: pb.QuoteOrderRequest) -> OrderQuery:
    """At least one line, each a sku and a quantity, then the shipping part as QuoteShipping checks it, then
    the discounts: each line's, then the shipping's (unset, or 0 to MAX_AMOUNT_MINOR in the currency)."""
    if not request.lines:
        raise InvalidArgument("lines", "must not be empty")
    _check_batch("lines", len(request.lines))
    for i, line in enumerate(request.lines):
        check_sku(f"lines[{i}].sku", line.sku)
        if not 1 <= line.quantity <= MAX_QUANTITY:
            raise InvalidArgument(f"lines[{i}].quantity", f"must be 1 to {MAX_QUANTITY}")
    shipping = _shipping_query(
        request.shipping_method, request.currency_code, request.destination.country_code, request.parcels
    )
    currency = shipping.currency_code
    lines = [
        QuoteLine(
            line.sku, line.quantity, money_in_currency(f"lines[{i}].discount", line.discount, currency).amount_minor
        )
        for i, line in enumerate(request.lines)
    ]
    shipping_discount = money_in_currency("shipping_discount", request.shipping_discount, currency)
    return OrderQuery(lines, shipping, shipping_discount.amount_minor)
