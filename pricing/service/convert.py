"""Protobuf <- model for PricingService's answers."""

from __future__ import annotations

from datetime import UTC, datetime

from infra.pb import money_to_pb
from kassa.common.v1 import delivery_pb2
from kassa.pricing.v1 import pricing_service_pb2 as pb
from kernel.delivery import DeliveryWindow
from pricing.model.catalog import CatalogLookup, Product

__all__ = ["priced_to_pb", "product_to_pb", "window_to_pb"]


def product_to_pb(p: Product) -> pb.Product:
    return pb.Product(
        sku=p.sku,
        name=p.name,
        category=p.category,
        brand=p.brand,
        weight_grams=p.weight_grams,
        tax_class=p.tax_class,
        prices=[money_to_pb(m) for m in p.prices],
    )


def priced_to_pb(lookup: CatalogLookup) -> list[pb.PricedProduct]:
    return [
        pb.PricedProduct(
            product=product_to_pb(pp.product),
            unit_price=money_to_pb(pp.unit_price) if pp.unit_price is not None else None,
        )
        for pp in lookup.products
    ]


def window_to_pb(window: DeliveryWindow | None) -> delivery_pb2.DeliveryWindow | None:
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
