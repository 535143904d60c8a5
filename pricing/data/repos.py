"""Postgres implementations of pricing's ports."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.money import Money
from pricing.data.tables import prices, products, shipping_rates, tax_rates
from pricing.model.catalog import Product
from pricing.model.rates import ShippingRate

__all__ = ["SqlProductRepo", "SqlRateRepo"]


class SqlProductRepo:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def find(self, skus: Sequence[str]) -> list[Product]:
        if not skus:
            return []
        stmt = (
            sa.select(products, prices.c.currency_code, prices.c.amount_minor)
            .select_from(products.outerjoin(prices, prices.c.sku == products.c.sku))
            .where(products.c.sku.in_(list(skus)))
            .order_by(products.c.sku, prices.c.currency_code)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        grouped: dict[str, tuple[sa.Row, list[Money]]] = {}
        for row in rows:
            _, price_list = grouped.setdefault(row.sku, (row, []))
            if row.currency_code is not None:
                price_list.append(Money(row.currency_code, row.amount_minor))
        return [_product(row, price_list) for row, price_list in grouped.values()]

    async def upsert(self, items: Sequence[Product]) -> list[Product]:
        # Rows locked in sku order, so concurrent upserts of overlapping products cannot deadlock.
        ordered = sorted(items, key=lambda p: p.sku)
        skus = [p.sku for p in ordered]
        product_stmt = insert(products).values(
            [
                {
                    "sku": p.sku,
                    "name": p.name,
                    "category": p.category,
                    "brand": p.brand,
                    "weight_grams": p.weight_grams,
                    "tax_class": p.tax_class,
                }
                for p in ordered
            ]
        )
        product_stmt = product_stmt.on_conflict_do_update(
            index_elements=[products.c.sku],
            set_={
                "name": product_stmt.excluded.name,
                "category": product_stmt.excluded.category,
                "brand": product_stmt.excluded.brand,
                "weight_grams": product_stmt.excluded.weight_grams,
                "tax_class": product_stmt.excluded.tax_class,
                "updated_at": sa.func.now(),
            },
        )
        price_rows = [
            {"sku": p.sku, "currency_code": m.currency_code, "amount_minor": m.amount_minor}
            for p in ordered
            for m in p.prices
        ]
        async with self._engine.begin() as conn:
            await conn.execute(product_stmt)
            await conn.execute(prices.delete().where(prices.c.sku.in_(skus)))
            if price_rows:
                await conn.execute(prices.insert(), price_rows)
        return list(items)


class SqlRateRepo:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def shipping_rate(self, shipping_method: str, currency_code: str) -> ShippingRate | None:
        stmt = sa.select(shipping_rates).where(
            shipping_rates.c.shipping_method == shipping_method,
            shipping_rates.c.currency_code == currency_code,
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            return None
        return ShippingRate(
            shipping_method=row.shipping_method,
            currency_code=row.currency_code,
            base_minor=row.base_minor,
            per_kg_minor=row.per_kg_minor,
            international_surcharge_minor=row.international_surcharge_minor,
        )

    async def tax_rates(self, country_code: str) -> dict[str, int]:
        stmt = sa.select(tax_rates.c.tax_class, tax_rates.c.rate_basis_points).where(
            tax_rates.c.country_code == country_code
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return {row.tax_class: row.rate_basis_points for row in rows}


def _product(row: sa.Row, price_list: list[Money]) -> Product:
    return Product(
        sku=row.sku,
        name=row.name,
        category=row.category,
        brand=row.brand,
        weight_grams=row.weight_grams,
        tax_class=row.tax_class,
        prices=tuple(price_list),
    )
