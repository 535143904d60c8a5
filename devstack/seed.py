"""The demo catalog: warehouses, products with USD and EUR prices, stock, and two coupons.

Why through the admin gRPC APIs rather than SQL: each service owns its schema and validates what it
stores, so seeding the way an operator would is the only way that cannot bypass a rule. Every call is
idempotent: warehouses and products are upserts, stock is set to absolute levels (re-seeding tops the
catalog back up to these levels) and a coupon that already exists is left as it is, so the seed can be
re-run at any time, e.g. after every ``kassa up``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from infra.auth import ROLE_ADMIN, mint_token
from infra.channels import open_channel
from infra.config import Settings
from infra.pb import timestamp_to_pb
from kassa.common.v1 import address_pb2, money_pb2
from kassa.pricing.v1 import pricing_service_pb2, pricing_service_pb2_grpc
from kassa.promotion.v1 import promotion_pb2, promotion_service_pb2, promotion_service_pb2_grpc
from kassa.warehouse.v1 import inventory_pb2, inventory_service_pb2, inventory_service_pb2_grpc

__all__ = ["COUPONS", "PRODUCTS", "STOCK", "WAREHOUSES", "SeedSummary", "seed"]

T = TypeVar("T")

# (warehouse_id, name, address)
WAREHOUSES: list[tuple[str, str, address_pb2.Address]] = [
    (
        "wh-us-east",
        "US East (Newark)",
        address_pb2.Address(
            name="Kassa Fulfillment US East",
            line1="100 Port Street",
            city="Newark",
            region="NJ",
            postal_code="07114",
            country_code="US",
            phone="+1 973 555 0100",
        ),
    ),
    (
        "wh-eu-central",
        "EU Central (Frankfurt)",
        address_pb2.Address(
            name="Kassa Fulfillment EU Central",
            line1="Hanauer Landstrasse 300",
            city="Frankfurt am Main",
            region="HE",
            postal_code="60314",
            country_code="DE",
            phone="+49 69 5550 100",
        ),
    ),
    (
        "wh-ap-south",
        "AP South (Singapore)",
        address_pb2.Address(
            name="Kassa Fulfillment AP South",
            line1="10 Pandan Crescent",
            city="Singapore",
            postal_code="128466",
            country_code="SG",
            phone="+65 6555 0100",
        ),
    ),
]


@dataclass(frozen=True)
class _Product:
    sku: str
    name: str
    category: str
    brand: str
    weight_grams: int
    tax_class: str
    usd_minor: int
    eur_minor: int


PRODUCTS: list[_Product] = [
    _Product("KB-001", "Mechanical Keyboard TKL", "keyboards", "Keyforge", 820, "standard", 8999, 8499),
    _Product("KB-002", "Low-Profile Wireless Keyboard", "keyboards", "Keyforge", 540, "standard", 6999, 6499),
    _Product("MS-001", "Ergonomic Wireless Mouse", "mice", "Pointwell", 110, "standard", 3999, 3799),
    _Product("MS-002", "Ultralight Gaming Mouse", "mice", "Pointwell", 60, "standard", 5999, 5699),
    _Product("MN-001", '27" 4K Monitor', "monitors", "Clearview", 6200, "standard", 34999, 32999),
    _Product("MN-002", '24" IPS Monitor', "monitors", "Clearview", 4100, "standard", 17999, 16999),
    _Product("HP-001", "Noise-Cancelling Headphones", "audio", "Sonara", 250, "standard", 19999, 18999),
    _Product("HP-002", "USB Podcast Microphone", "audio", "Sonara", 480, "standard", 12999, 11999),
    _Product("CB-001", "USB-C Cable 2 m", "accessories", "Linkline", 45, "standard", 1299, 1199),
    _Product("DK-001", "Thunderbolt Dock", "accessories", "Linkline", 650, "standard", 24999, 23999),
    _Product("WC-001", "1080p Webcam", "video", "Clearview", 160, "standard", 7999, 7499),
    _Product("ST-001", "Aluminium Laptop Stand", "accessories", "Deskcraft", 900, "standard", 4999, 4699),
    _Product("BK-001", "The Pragmatic Checkout (paperback)", "books", "Kassa Press", 450, "reduced", 3499, 3299),
    _Product("GC-050", "Gift Card 50", "gift-cards", "Kassa", 0, "zero", 5000, 5000),
]

# (sku, warehouse_id, on_hand). Plenty of everything; some skus ship from one warehouse only.
STOCK: list[tuple[str, str, int]] = [
    *[(p.sku, "wh-us-east", 1000) for p in PRODUCTS],
    *[(p.sku, "wh-eu-central", 500) for p in PRODUCTS if p.sku not in {"BK-001", "MN-001"}],
    *[(sku, "wh-ap-south", 300) for sku in ("KB-001", "MS-001", "HP-001", "CB-001", "WC-001")],
]

# Far past and far future: a coupon with both bounds set reads the same to every validation rule.
_STARTS = datetime(2024, 1, 1, tzinfo=UTC)
_ENDS = datetime(2099, 12, 31, tzinfo=UTC)

COUPONS: list[promotion_pb2.Promotion] = [
    promotion_pb2.Promotion(
        code="WELCOME10",
        name="10% off your order",
        type=promotion_pb2.PROMOTION_TYPE_PERCENTAGE,
        percent_off=10,
        usage_limit=1_000_000,
        # 0 = unlimited per customer, so the scripted demo can be re-run by the same customer.
        usage_limit_per_customer=0,
        combinable=True,
    ),
    promotion_pb2.Promotion(
        code="FREESHIP",
        name="Free shipping",
        type=promotion_pb2.PROMOTION_TYPE_FREE_SHIPPING,
        usage_limit=1_000_000,
        usage_limit_per_customer=0,
        combinable=True,
    ),
]


@dataclass(frozen=True)
class SeedSummary:
    warehouses: int
    products: int
    stock_levels: int
    promotions_created: list[str]
    promotions_existing: list[str]


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    )


async def _call(call: Callable[[], Awaitable[T]]) -> T:
    """Retry an idempotent admin call on transport errors (a service may still be warming up)."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(_transient),
        stop=stop_after_attempt(5),
        wait=wait_exponential_jitter(multiplier=0.2, max=3.0),
        reraise=True,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable: AsyncRetrying either returns or re-raises")


async def seed(
    env_or_settings: Settings | Mapping[str, str],
    *,
    log: Callable[[str], object] = print,
) -> SeedSummary:
    """Create or refresh the demo catalog through the warehouse, pricing and promotion admin APIs."""
    settings = env_or_settings if isinstance(env_or_settings, Settings) else Settings.from_env(dict(env_or_settings))
    token = mint_token(settings.jwt_secret, "kassa-seed", role=ROLE_ADMIN, ttl_seconds=600,
                       issuer=settings.jwt_issuer, audience=settings.jwt_audience)  # fmt: skip
    metadata = (("authorization", f"Bearer {token}"),)
    timeout = max(settings.rpc_timeout_seconds, 10.0)

    async with (
        open_channel(settings.addr("warehouse"), settings.grpc_tls) as warehouse_channel,
        open_channel(settings.addr("pricing"), settings.grpc_tls) as pricing_channel,
        open_channel(settings.addr("promotion"), settings.grpc_tls) as promotion_channel,
    ):
        inventory = inventory_service_pb2_grpc.InventoryServiceStub(warehouse_channel)
        pricing = pricing_service_pb2_grpc.PricingServiceStub(pricing_channel)
        promotions = promotion_service_pb2_grpc.PromotionServiceStub(promotion_channel)

        warehouses = [
            inventory_pb2.Warehouse(warehouse_id=wid, name=name, address=addr) for wid, name, addr in WAREHOUSES
        ]
        await _call(
            lambda: inventory.UpsertWarehouses(
                inventory_service_pb2.UpsertWarehousesRequest(warehouses=warehouses), timeout=timeout, metadata=metadata
            )
        )
        log(f"seed: {len(warehouses)} warehouses ({', '.join(w.warehouse_id for w in warehouses)})")

        products = [
            pricing_service_pb2.Product(
                sku=p.sku,
                name=p.name,
                category=p.category,
                brand=p.brand,
                weight_grams=p.weight_grams,
                tax_class=p.tax_class,
                prices=[
                    money_pb2.Money(currency_code="USD", amount_minor=p.usd_minor),
                    money_pb2.Money(currency_code="EUR", amount_minor=p.eur_minor),
                ],
            )
            for p in PRODUCTS
        ]
        await _call(
            lambda: pricing.UpsertProducts(
                pricing_service_pb2.UpsertProductsRequest(products=products), timeout=timeout, metadata=metadata
            )
        )
        log(f"seed: {len(products)} products with USD and EUR prices")

        settings_pb = [inventory_service_pb2.StockSetting(sku=s, warehouse_id=w, on_hand=n) for s, w, n in STOCK]
        await _call(
            lambda: inventory.SetStock(
                inventory_service_pb2.SetStockRequest(items=settings_pb), timeout=timeout, metadata=metadata
            )
        )
        log(f"seed: stock set for {len(settings_pb)} sku/warehouse pairs")

        created: list[str] = []
        existing: list[str] = []
        for coupon in COUPONS:
            promotion = promotion_pb2.Promotion()
            promotion.CopyFrom(coupon)
            promotion.starts_at.CopyFrom(timestamp_to_pb(_STARTS))
            promotion.ends_at.CopyFrom(timestamp_to_pb(_ENDS))
            request = promotion_service_pb2.CreatePromotionRequest(promotion=promotion)

            # A def, not a lambda with a default (mypy cannot type those): bound to this coupon's request.
            def create(request: promotion_service_pb2.CreatePromotionRequest = request) -> Awaitable[Any]:
                return promotions.CreatePromotion(request, timeout=timeout, metadata=metadata)

            try:
                await _call(create)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
                existing.append(coupon.code)
            else:
                created.append(coupon.code)
        log(
            "seed: promotions "
            + ", ".join([*(f"{c} (created)" for c in created), *(f"{c} (already there)" for c in existing)])
        )

    return SeedSummary(
        warehouses=len(warehouses),
        products=len(products),
        stock_levels=len(settings_pb),
        promotions_created=created,
        promotions_existing=existing,
    )
