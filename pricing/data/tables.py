"""The pricing schema (SQLAlchemy Core). Kept in step with migrations/versions by hand."""

from __future__ import annotations

import sqlalchemy as sa

from infra.audit import audit_log_table
from infra.migrate import SCHEMAS

__all__ = [
    "PG_SNAPSHOT", "SCHEMA", "XID8", "audit_log", "metadata", "prices", "products", "shipping_rates", "tax_rates",
]  # fmt: skip

SCHEMA = SCHEMAS["pricing"]
metadata = sa.MetaData(schema=SCHEMA)


class _Named(sa.types.UserDefinedType[str]):
    """A Postgres type SQLAlchemy has no class for, named as Postgres spells it."""

    cache_ok = True

    def __init__(self, name: str) -> None:
        self.name = name

    def get_col_spec(self, **kw: object) -> str:
        return self.name


# The id of the transaction that last wrote a product, and the snapshots SyncProducts compares them with.
XID8 = _Named("xid8")
PG_SNAPSHOT = _Named("pg_snapshot")

products = sa.Table(
    "products",
    metadata,
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("category", sa.Text, nullable=False, server_default=""),
    sa.Column("brand", sa.Text, nullable=False, server_default=""),
    sa.Column("weight_grams", sa.BigInteger, nullable=False),
    sa.Column("tax_class", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    # Set by every write of the product or its prices (UpsertProducts): what SyncProducts finds changes by.
    sa.Column("changed_xid", XID8, nullable=False, server_default=sa.func.pg_current_xact_id()),
    sa.CheckConstraint("weight_grams >= 0", name="products_weight_non_negative"),
    sa.CheckConstraint("tax_class in ('standard','reduced','zero')", name="products_tax_class_valid"),
    sa.Index("products_changed_xid", "changed_xid"),
)

prices = sa.Table(
    "prices",
    metadata,
    sa.Column("sku", sa.Text, sa.ForeignKey(f"{SCHEMA}.products.sku", ondelete="CASCADE"), primary_key=True),
    sa.Column("currency_code", sa.Text, primary_key=True),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.CheckConstraint("amount_minor >= 0", name="prices_amount_non_negative"),
    sa.CheckConstraint("currency_code ~ '^[A-Z]{3}$'", name="prices_currency_format"),
)

tax_rates = sa.Table(
    "tax_rates",
    metadata,
    sa.Column("country_code", sa.Text, primary_key=True),
    sa.Column("tax_class", sa.Text, primary_key=True),
    sa.Column("rate_basis_points", sa.Integer, nullable=False),
    sa.CheckConstraint("rate_basis_points between 0 and 10000", name="tax_rates_rate_range"),
    sa.CheckConstraint("tax_class in ('standard','reduced','zero')", name="tax_rates_tax_class_valid"),
)

shipping_rates = sa.Table(
    "shipping_rates",
    metadata,
    sa.Column("shipping_method", sa.Text, primary_key=True),
    sa.Column("currency_code", sa.Text, primary_key=True),
    sa.Column("base_minor", sa.BigInteger, nullable=False),
    sa.Column("per_kg_minor", sa.BigInteger, nullable=False),
    sa.Column("international_surcharge_minor", sa.BigInteger, nullable=False),
    sa.CheckConstraint(
        "base_minor >= 0 and per_kg_minor >= 0 and international_surcharge_minor >= 0",
        name="shipping_rates_non_negative",
    ),
)

# Admin actions (UpsertProducts): append-only, see infra.audit.
audit_log = audit_log_table(metadata)
