"""Pricing: products, price lists, tax rates and shipping rates, with seeded rates.

Revision ID: pricing_0001
Revises:
Create Date: 2025-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from infra.migrate import SCHEMAS

revision: str = "pricing_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = SCHEMAS["pricing"]

# Basis points (standard, reduced) per destination; countries not listed are untaxed and the
# "zero" class is 0 everywhere.
TAX_RATES: dict[str, tuple[int, int]] = {
    "US": (800, 0),
    "DE": (1900, 700),
    "FR": (2000, 550),
    "GB": (2000, 500),
    "NL": (2100, 900),
    "VN": (1000, 500),
}

# (base, per started kg, international surcharge) in minor units, the same numbers for USD and EUR.
SHIPPING_RATES: dict[str, tuple[int, int, int]] = {
    "standard": (499, 100, 1000),
    "express": (1499, 250, 1000),
}
SHIPPING_CURRENCIES = ("USD", "EUR")


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("sku", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("category", sa.Text, nullable=False, server_default=""),
        sa.Column("brand", sa.Text, nullable=False, server_default=""),
        sa.Column("weight_grams", sa.BigInteger, nullable=False),
        sa.Column("tax_class", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("weight_grams >= 0", name="products_weight_non_negative"),
        sa.CheckConstraint("tax_class in ('standard','reduced','zero')", name="products_tax_class_valid"),
        schema=SCHEMA,
    )
    op.create_table(
        "prices",
        sa.Column("sku", sa.Text, sa.ForeignKey(f"{SCHEMA}.products.sku", ondelete="CASCADE"), primary_key=True),
        sa.Column("currency_code", sa.Text, primary_key=True),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.CheckConstraint("amount_minor >= 0", name="prices_amount_non_negative"),
        sa.CheckConstraint("currency_code ~ '^[A-Z]{3}$'", name="prices_currency_format"),
        schema=SCHEMA,
    )
    tax_rates = op.create_table(
        "tax_rates",
        sa.Column("country_code", sa.Text, primary_key=True),
        sa.Column("tax_class", sa.Text, primary_key=True),
        sa.Column("rate_basis_points", sa.Integer, nullable=False),
        sa.CheckConstraint("rate_basis_points between 0 and 10000", name="tax_rates_rate_range"),
        sa.CheckConstraint("tax_class in ('standard','reduced','zero')", name="tax_rates_tax_class_valid"),
        schema=SCHEMA,
    )
    shipping_rates = op.create_table(
        "shipping_rates",
        sa.Column("shipping_method", sa.Text, primary_key=True),
        sa.Column("currency_code", sa.Text, primary_key=True),
        sa.Column("base_minor", sa.BigInteger, nullable=False),
        sa.Column("per_kg_minor", sa.BigInteger, nullable=False),
        sa.Column("international_surcharge_minor", sa.BigInteger, nullable=False),
        sa.CheckConstraint(
            "base_minor >= 0 and per_kg_minor >= 0 and international_surcharge_minor >= 0",
            name="shipping_rates_non_negative",
        ),
        schema=SCHEMA,
    )
    op.bulk_insert(
        tax_rates,
        [
            {"country_code": country, "tax_class": tax_class, "rate_basis_points": bp}
            for country, (standard, reduced) in TAX_RATES.items()
            for tax_class, bp in (("standard", standard), ("reduced", reduced), ("zero", 0))
        ],
    )
    op.bulk_insert(
        shipping_rates,
        [
            {
                "shipping_method": method,
                "currency_code": currency,
                "base_minor": base,
                "per_kg_minor": per_kg,
                "international_surcharge_minor": surcharge,
            }
            for method, (base, per_kg, surcharge) in SHIPPING_RATES.items()
            for currency in SHIPPING_CURRENCIES
        ],
    )


def downgrade() -> None:
    for table in ("shipping_rates", "tax_rates", "prices", "products"):
        op.drop_table(table, schema=SCHEMA)
