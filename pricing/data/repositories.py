"""Postgres implementations of pricing's ports: SqlProductRepo (bound to one connection), SqlTx and
SqlUnitOfWork (the only place a transaction begins), and SqlRateRepo (cached reference data)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from infra import audit
from infra.db import UnitOfWork, single_statements
from kernel.money import Money
from pricing.data.snapshot import TtlSnapshot
from pricing.data.tables import PG_SNAPSHOT, XID8, audit_log, prices, products, shipping_rates, tax_rates
from pricing.model.catalog import Product
from pricing.model.rates import ShippingRate

__all__ = ["RATE_TTL_SECONDS", "SqlProductRepo", "SqlRateRepo", "SqlTx", "SqlUnitOfWork"]

# How long a copy of the tax and shipping rate tables is reused before it is read again.
RATE_TTL_SECONDS = 5.0

# Built once: constructing a statement per call costs more CPU than running it. `= ANY(array)` keeps one
# SQL text for every cart size (an IN list renders a new one per length), so psycopg prepares it once.
_PRODUCT_COLUMNS = (
    products.c.sku,
    products.c.name,
    products.c.category,
    products.c.brand,
    products.c.weight_grams,
    products.c.tax_class,
    prices.c.currency_code,
    prices.c.amount_minor,
)
_FIND_PRODUCTS = (
    sa.select(*_PRODUCT_COLUMNS)
    .select_from(products.outerjoin(prices, prices.c.sku == products.c.sku))
    .where(products.c.sku == sa.any_(sa.bindparam("skus", type_=ARRAY(sa.Text))))
    .order_by(products.c.sku, prices.c.currency_code)
)
_SNAPSHOT = sa.select(sa.cast(sa.func.pg_current_snapshot(type_=PG_SNAPSHOT), sa.Text))


def _changed_page(since: bool) -> sa.Select[str, str, str, str, int, str, str, int]:
    """Up to ``:limit`` products past ``:after`` in sku order, with their prices; with ``since``, only those a
    transaction wrote that the snapshot ``:since`` does not show committed (the index finds those from the
    snapshot's oldest running transaction on)."""
    skus = sa.select(products.c.sku).where(products.c.sku > sa.bindparam("after", type_=sa.Text))
    if since:
        snapshot = sa.cast(sa.bindparam("since", type_=sa.Text), PG_SNAPSHOT)
        skus = skus.where(
            products.c.changed_xid >= sa.func.pg_snapshot_xmin(snapshot, type_=XID8),
            sa.not_(sa.func.pg_visible_in_snapshot(products.c.changed_xid, snapshot, type_=sa.Boolean)),
        )
    page = skus.order_by(products.c.sku).limit(sa.bindparam("limit", type_=sa.Integer)).subquery()
    return (
        sa.select(*_PRODUCT_COLUMNS)
        .select_from(page.join(products, products.c.sku == page.c.sku).outerjoin(prices, prices.c.sku == page.c.sku))
        .order_by(products.c.sku, prices.c.currency_code)
    )


_CHANGED_SINCE = _changed_page(since=True)
_ALL_FROM = _changed_page(since=False)


def _grouped(rows: Sequence[sa.Row[str, str, str, str, int, str, str, int]]) -> list[Product]:
    """Products from rows of :data:`_PRODUCT_COLUMNS` ordered by sku: each product's prices are consecutive."""
    found: list[Product] = []
    current: tuple[str, str, str, str, int, str] | None = None
    price_list: list[Money] = []
    for sku, name, category, brand, weight_grams, tax_class, currency_code, amount_minor in rows:
        if current is None or current[0] != sku:
            if current is not None:
                found.append(Product(*current, prices=tuple(price_list)))
            current = (sku, name, category, brand, weight_grams, tax_class)
            price_list = []
        if currency_code is not None:
            price_list.append(Money(currency_code, amount_minor))
    if current is not None:
        found.append(Product(*current, prices=tuple(price_list)))
    return found


_ALL_SHIPPING_RATES = sa.select(
    shipping_rates.c.shipping_method,
    shipping_rates.c.currency_code,
    shipping_rates.c.base_minor,
    shipping_rates.c.per_kg_minor,
    shipping_rates.c.international_surcharge_minor,
)
_ALL_TAX_RATES = sa.select(tax_rates.c.country_code, tax_rates.c.tax_class, tax_rates.c.rate_basis_points)


class SqlProductRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def find(self, skus: Sequence[str]) -> list[Product]:
        """Products and prices are never cached: a price change shows on the very next call."""
        if not skus:
            return []
        return _grouped((await self._conn.execute(_FIND_PRODUCTS, {"skus": list(skus)})).all())

    async def snapshot(self) -> str:
        return str((await self._conn.execute(_SNAPSHOT)).scalar_one())

    async def changed(self, since: str | None, after: str, limit: int) -> list[Product]:
        params: dict[str, object] = {"after": after, "limit": limit}
        if since is None:
            return _grouped((await self._conn.execute(_ALL_FROM, params)).all())
        return _grouped((await self._conn.execute(_CHANGED_SINCE, {**params, "since": since})).all())

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
                # Every upsert replaces the prices too, so a price change alone marks the product changed.
                "changed_xid": sa.func.pg_current_xact_id(),
            },
        )
        price_rows = [
            {"sku": p.sku, "currency_code": m.currency_code, "amount_minor": m.amount_minor}
            for p in ordered
            for m in p.prices
        ]
        await self._conn.execute(product_stmt)
        await self._conn.execute(prices.delete().where(prices.c.sku.in_(skus)))
        if price_rows:
            await self._conn.execute(prices.insert(), price_rows)
        await audit.record(self._conn, audit_log, *(f"products/{sku}" for sku in skus))
        return list(items)


class SqlTx:
    """The repositories of one transaction (or, from :meth:`SqlUnitOfWork.read`, of one autocommit connection).
    Pricing publishes no events, so there is no outbox."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.products = SqlProductRepo(conn)


class SqlUnitOfWork(UnitOfWork[SqlTx]):
    """:class:`infra.db.UnitOfWork` of pricing's :class:`SqlTx`."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine, SqlTx)


class SqlRateRepo:
    """Tax and shipping rates, read whole and reused for ``ttl_seconds`` (default 5 s).

    The rate tables are reference data that no RPC writes (migrations and operators do), so nothing in
    this process has to invalidate the copy. Staleness this allows: after an operator changes a rate,
    each pricing process may quote the old rate for up to ``ttl_seconds``; a quote shown in a preview
    and the one recomputed at confirm can then differ, which checkout already handles (PRICE_CHANGED
    against the expected total). ``ttl_seconds <= 0`` reads the tables on every call.
    """

    def __init__(
        self, engine: AsyncEngine, *, ttl_seconds: float = RATE_TTL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._reads = single_statements(engine)
        self._shipping = TtlSnapshot(self._load_shipping_rates, ttl_seconds, clock)
        self._tax = TtlSnapshot(self._load_tax_rates, ttl_seconds, clock)

    async def shipping_rate(self, shipping_method: str, currency_code: str) -> ShippingRate | None:
        return (await self._shipping.get()).get((shipping_method, currency_code))

    async def tax_rates(self, country_code: str) -> Mapping[str, int]:
        return (await self._tax.get()).get(country_code, _NO_RATES)

    async def _load_shipping_rates(self) -> dict[tuple[str, str], ShippingRate]:
        async with self._reads.connect() as conn:
            rows = (await conn.execute(_ALL_SHIPPING_RATES)).all()
        return {
            (method, currency): ShippingRate(
                shipping_method=method,
                currency_code=currency,
                base_minor=base,
                per_kg_minor=per_kg,
                international_surcharge_minor=surcharge,
            )
            for method, currency, base, per_kg, surcharge in rows
        }

    async def _load_tax_rates(self) -> dict[str, Mapping[str, int]]:
        async with self._reads.connect() as conn:
            rows = (await conn.execute(_ALL_TAX_RATES)).all()
        by_country: dict[str, dict[str, int]] = {}
        for country_code, tax_class, rate_basis_points in rows:
            by_country.setdefault(country_code, {})[tax_class] = rate_basis_points
        return {country: MappingProxyType(rates) for country, rates in by_country.items()}


_NO_RATES: Mapping[str, int] = MappingProxyType({})
