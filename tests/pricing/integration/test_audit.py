"""The pricing service's audit log: UpsertProducts by an admin, recorded with its change."""

from __future__ import annotations

import grpc
import pytest
import sqlalchemy as sa
from audit_support import REFUSED, SUCCEEDED, assert_append_only, entries_of, list_status, new_admin
from helpers import bearer, unique

from kassa.common.v1 import money_pb2
from kassa.pricing.v1 import pricing_service_pb2 as pb
from pricing.data.tables import products

pytestmark = pytest.mark.integration

UPSERT = "kassa.pricing.v1.PricingService.UpsertProducts"


def _product(sku: str, amount: int = 1999) -> pb.Product:
    return pb.Product(
        sku=sku,
        name=f"Product {sku}",
        weight_grams=100,
        tax_class="standard",
        prices=[money_pb2.Money(currency_code="USD", amount_minor=amount)],
    )


async def test_upsert_products_is_recorded_with_the_change(pricing_stub, pricing_channel, pricing_db, settings) -> None:
    actor, token = new_admin(settings)
    a, b = unique("sku"), unique("sku")

    await pricing_stub.UpsertProducts(
        pb.UpsertProductsRequest(products=[_product(b), _product(a, 500)]), metadata=bearer(token)
    )

    [entry] = await entries_of(pricing_channel, token, actor)
    assert (entry.service, entry.actor, entry.action, entry.outcome) == ("pricing", actor, UPSERT, SUCCEEDED)
    assert sorted(entry.targets) == sorted([f"products/{a}", f"products/{b}"])
    recorded = entry.request["products"][1]
    assert (recorded["sku"], recorded["prices"][0]["amount_minor"]) == (a, "500")
    async with pricing_db.connect() as conn:
        changed_at = (await conn.execute(sa.select(products.c.updated_at).where(products.c.sku == a))).scalar_one()
    assert entry.create_time.ToDatetime().replace(tzinfo=changed_at.tzinfo) == changed_at


async def test_a_refused_upsert_is_recorded_as_refused(pricing_stub, pricing_channel, settings) -> None:
    actor, token = new_admin(settings)
    sku = unique("sku")

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await pricing_stub.UpsertProducts(
            pb.UpsertProductsRequest(products=[_product(sku), _product(sku)]), metadata=bearer(token)
        )

    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    [entry] = await entries_of(pricing_channel, token, actor)
    assert (entry.action, entry.outcome, entry.reason) == (UPSERT, REFUSED, "INVALID_ARGUMENT")
    assert "products[1].sku" in entry.message


async def test_reads_are_not_recorded_and_only_admins_read_the_log(
    pricing_stub, pricing_channel, settings, customer_token, service_token
) -> None:
    actor, token = new_admin(settings)
    await pricing_stub.GetProducts(pb.GetProductsRequest(skus=["KB-001"]), metadata=bearer(token))

    assert await entries_of(pricing_channel, token, actor) == []
    assert await list_status(pricing_channel, customer_token) == grpc.StatusCode.PERMISSION_DENIED
    assert await list_status(pricing_channel, service_token) == grpc.StatusCode.PERMISSION_DENIED


async def test_the_database_refuses_to_change_an_entry(pricing_stub, settings, pricing_db) -> None:
    _, token = new_admin(settings)
    await pricing_stub.UpsertProducts(
        pb.UpsertProductsRequest(products=[_product(unique("sku"))]), metadata=bearer(token)
    )

    await assert_append_only(pricing_db, "pricing")
