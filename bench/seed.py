"""A large catalog for the run, through the admin gRPC APIs as an operator would create it.

Warehouses come from ``devstack.seed`` (the demo catalog, idempotent). On top of them: ``--skus``
products priced in USD (and EUR), each stocked with plenty of units in every seeded warehouse, and a
few HOT skus with little stock in the US warehouse only, which a fraction of the checkouts include to
make reservations contend. Every sku name starts with the run's unique prefix, so seeding never
collides with an earlier run or the demo catalog and the invariant checks can find the run's orders.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from devstack.seed import seed as seed_demo_catalog
from infra.auth import ROLE_ADMIN, mint_token
from infra.channels import open_channel
from kassa.common.v1 import money_pb2
from kassa.pricing.v1 import pricing_service_pb2, pricing_service_pb2_grpc
from kassa.warehouse.v1 import inventory_service_pb2, inventory_service_pb2_grpc

__all__ = ["CatalogPlan", "SeedResult", "plan_catalog", "product_price_minor", "seed_catalog"]

# The services refuse batches above 1000 entries.
MAX_BATCH = 1000
_PARALLEL_BATCHES = 4
_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class CatalogPlan:
    prefix: str
    skus: tuple[str, ...]
    hot_skus: tuple[str, ...]
    on_hand: int
    hot_stock: int


def plan_catalog(
    prefix: str, skus: int, hot_skus: int, *, on_hand: int = 1_000_000, hot_stock: int = 50
) -> CatalogPlan:
    """The sku names of a run: ``<prefix>-00042`` and ``<prefix>-HOT-3``."""
    if skus < 3:
        raise ValueError("a checkout has three distinct items: seed at least 3 skus")
    width = max(5, len(str(skus - 1)))
    return CatalogPlan(
        prefix=prefix,
        skus=tuple(f"{prefix}-{i:0{width}d}" for i in range(skus)),
        hot_skus=tuple(f"{prefix}-HOT-{i}" for i in range(hot_skus)),
        on_hand=on_hand,
        hot_stock=hot_stock,
    )


def product_price_minor(index: int) -> int:
    """A spread of USD prices from 5.00 to 204.99, the same for the same index in every run."""
    return 500 + (index * 7919) % 20_000


def _product(sku: str, index: int, hot: bool) -> pricing_service_pb2.Product:
    usd = product_price_minor(index)
    return pricing_service_pb2.Product(
        sku=sku,
        name=f"{'Hot bench item' if hot else 'Bench item'} {index}",
        category="bench",
        brand="Kassa Bench",
        weight_grams=100 + (index * 37) % 1900,
        tax_class="standard",
        prices=[
            money_pb2.Money(currency_code="USD", amount_minor=usd),
            money_pb2.Money(currency_code="EUR", amount_minor=usd - usd // 10),
        ],
    )


_T = TypeVar("_T")


def _batches(items: Sequence[_T], size: int) -> list[Sequence[_T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@dataclass(frozen=True)
class SeedResult:
    warehouses: tuple[str, ...]
    hot_warehouse: str
    products: int
    stock_rows: int
    seconds: float


async def seed_catalog(
    env: Mapping[str, str],
    plan: CatalogPlan,
    *,
    jwt_secret: str,
    batch: int = 500,
    on_progress: Callable[[int, int], object] | None = None,
    log: Callable[[str], object] = lambda _: None,
) -> SeedResult:
    """Seed ``plan`` on the mesh at the addresses of ``env``; ``on_progress(done, total)`` per batch."""
    if not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"batch must be within 1..{MAX_BATCH}")
    started = time.monotonic()
    await seed_demo_catalog(dict(env), log=log)
    token = mint_token(jwt_secret, "kassa-bench-seed", role=ROLE_ADMIN, ttl_seconds=3600)
    md = (("authorization", f"Bearer {token}"),)
    async with (
        open_channel(env["KASSA_WAREHOUSE_ADDR"]) as warehouse_channel,
        open_channel(env["KASSA_PRICING_ADDR"]) as pricing_channel,
    ):
        inventory = inventory_service_pb2_grpc.InventoryServiceStub(warehouse_channel)
        pricing = pricing_service_pb2_grpc.PricingServiceStub(pricing_channel)
        listed = await inventory.ListWarehouses(
            inventory_service_pb2.ListWarehousesRequest(), metadata=md, timeout=_TIMEOUT_S
        )
        warehouses = tuple(w.warehouse_id for w in listed.warehouses)
        if not warehouses:
            raise RuntimeError("no warehouses after seeding the demo catalog")
        hot_warehouse = next(
            (w.warehouse_id for w in listed.warehouses if w.address.country_code == "US"), warehouses[0]
        )

        products = [_product(sku, i, False) for i, sku in enumerate(plan.skus)]
        products += [_product(sku, i, True) for i, sku in enumerate(plan.hot_skus)]
        stock = [
            inventory_service_pb2.StockSetting(sku=sku, warehouse_id=wh, on_hand=plan.on_hand)
            for sku in plan.skus
            for wh in warehouses
        ]
        stock += [
            inventory_service_pb2.StockSetting(sku=sku, warehouse_id=hot_warehouse, on_hand=plan.hot_stock)
            for sku in plan.hot_skus
        ]
        total = len(products) + len(stock)
        done = 0
        gate = asyncio.Semaphore(_PARALLEL_BATCHES)

        async def upsert(chunk: Sequence[pricing_service_pb2.Product]) -> None:
            nonlocal done
            async with gate:
                await pricing.UpsertProducts(
                    pricing_service_pb2.UpsertProductsRequest(products=chunk), metadata=md, timeout=_TIMEOUT_S
                )
            done += len(chunk)
            if on_progress is not None:
                on_progress(done, total)

        async def set_stock(chunk: Sequence[inventory_service_pb2.StockSetting]) -> None:
            nonlocal done
            async with gate:
                await inventory.SetStock(
                    inventory_service_pb2.SetStockRequest(items=chunk), metadata=md, timeout=_TIMEOUT_S
                )
            done += len(chunk)
            if on_progress is not None:
                on_progress(done, total)

        # Products before stock: a sku with stock but no price would be refused at checkout.
        await asyncio.gather(*(upsert(chunk) for chunk in _batches(products, batch)))
        await asyncio.gather(*(set_stock(chunk) for chunk in _batches(stock, MAX_BATCH)))
    return SeedResult(
        warehouses=warehouses,
        hot_warehouse=hot_warehouse,
        products=len(products),
        stock_rows=len(stock),
        seconds=time.monotonic() - started,
    )
