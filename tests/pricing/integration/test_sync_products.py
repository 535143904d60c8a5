"""SyncProducts over gRPC against real Postgres: only what changed, nothing missed whatever order transactions
commit in, every page once, and field-named refusals of what it can't read.

Other tests write products into the same database meanwhile, so each test asserts on its own skus only.
"""

from __future__ import annotations

import base64
import json

import grpc
import pytest
from helpers import bearer, unique
from sqlalchemy.ext.asyncio import AsyncEngine

from kassa.pricing.v1 import pricing_service_pb2 as pb
from kassa.pricing.v1.pricing_service_pb2_grpc import PricingServiceStub
from kernel.money import Money
from pricing.data.repositories import SqlProductRepo
from pricing.model.catalog import Product
from tests.pricing.integration.test_pricing_service import eur, expect_invalid, product, usd

pytestmark = pytest.mark.integration


async def sync(
    stub: PricingServiceStub, token: str, sync_token: str, page_size: int = 0
) -> tuple[list[pb.Product], str]:
    """Every page of one sync: the products in the order given, and the next sync token."""
    found: list[pb.Product] = []
    page_token = ""
    while True:
        resp = await stub.SyncProducts(
            pb.SyncProductsRequest(sync_token=sync_token, page_size=page_size, page_token=page_token),
            metadata=bearer(token),
        )
        found.extend(resp.products)
        if not resp.next_page_token:
            assert resp.next_sync_token
            return found, resp.next_sync_token
        assert not resp.next_sync_token
        page_token = resp.next_page_token


async def upsert(stub: PricingServiceStub, token: str, *products: pb.Product) -> None:
    await stub.UpsertProducts(pb.UpsertProductsRequest(products=list(products)), metadata=bearer(token))


def by_sku(products: list[pb.Product], skus: set[str]) -> dict[str, pb.Product]:
    mine = [p for p in products if p.sku in skus]
    assert len(mine) == len({p.sku for p in mine}), "a product came twice in one sync"
    return {p.sku: p for p in mine}


async def test_a_sync_after_another_holds_only_what_was_written_since(
    pricing_stub: PricingServiceStub, admin_token: str, service_token: str
) -> None:
    before, changed, added = unique("SYNC"), unique("SYNC"), unique("SYNC")
    await upsert(pricing_stub, admin_token, product(before), product(changed, usd(100)))
    everything, token = await sync(pricing_stub, service_token, "", page_size=1000)
    assert set(by_sku(everything, {before, changed})) == {before, changed}

    await upsert(pricing_stub, admin_token, product(changed, usd(250), eur(240)), product(added))
    since, token2 = await sync(pricing_stub, service_token, token)
    mine = by_sku(since, {before, changed, added})
    assert set(mine) == {changed, added}
    # The product as it is now, every price of it: a price change alone marks the product changed.
    assert sorted((m.currency_code, m.amount_minor) for m in mine[changed].prices) == [("EUR", 240), ("USD", 250)]

    again, _ = await sync(pricing_stub, service_token, token2)
    assert by_sku(again, {before, changed, added}) == {}


async def test_a_transaction_that_commits_after_a_later_one_is_in_the_next_sync(
    pricing_stub: PricingServiceStub, admin_token: str, service_token: str, pricing_db: AsyncEngine
) -> None:
    early, late = unique("SYNC"), unique("SYNC")
    _, token = await sync(pricing_stub, service_token, "")
    async with pricing_db.begin() as conn:
        # Begun first (the older transaction id), committed last.
        await SqlProductRepo(conn).upsert([Product(early, "Early", "", "", 10, "standard", (Money("USD", 500),))])
        await upsert(pricing_stub, admin_token, product(late))
        seen, token2 = await sync(pricing_stub, service_token, token)
        assert set(by_sku(seen, {early, late})) == {late}
    seen_after, token3 = await sync(pricing_stub, service_token, token2)
    mine = by_sku(seen_after, {early, late})
    assert set(mine) == {early}
    assert [(m.currency_code, m.amount_minor) for m in mine[early].prices] == [("USD", 500)]
    assert by_sku((await sync(pricing_stub, service_token, token3))[0], {early, late}) == {}


async def test_a_rolled_back_write_is_never_sent(
    pricing_stub: PricingServiceStub, service_token: str, pricing_db: AsyncEngine
) -> None:
    ghost = unique("SYNC")
    _, token = await sync(pricing_stub, service_token, "")
    async with pricing_db.connect() as conn:
        transaction = await conn.begin()
        await SqlProductRepo(conn).upsert([Product(ghost, "Ghost", "", "", 10, "standard", (Money("USD", 1),))])
        await transaction.rollback()
    seen, token2 = await sync(pricing_stub, service_token, token)
    assert by_sku(seen, {ghost}) == {}
    assert by_sku((await sync(pricing_stub, service_token, token2))[0], {ghost}) == {}


async def test_pages_hold_every_product_once_in_sku_order(
    pricing_stub: PricingServiceStub, admin_token: str, service_token: str
) -> None:
    _, token = await sync(pricing_stub, service_token, "")
    skus = {unique("SYNC") for _ in range(5)}
    await upsert(pricing_stub, admin_token, *(product(sku) for sku in sorted(skus)))
    first = await pricing_stub.SyncProducts(
        pb.SyncProductsRequest(sync_token=token, page_size=2), metadata=bearer(service_token)
    )
    assert len(first.products) == 2
    assert first.next_page_token
    assert not first.next_sync_token
    seen, _ = await sync(pricing_stub, service_token, token, page_size=2)
    assert set(by_sku(seen, skus)) == skus
    order = [p.sku for p in seen]
    assert order == sorted(order)


async def test_sync_refuses_what_it_cannot_read_naming_the_field(
    pricing_stub: PricingServiceStub, service_token: str
) -> None:
    first = await pricing_stub.SyncProducts(pb.SyncProductsRequest(page_size=1), metadata=bearer(service_token))
    assert first.next_page_token, "the test database holds more than one product"
    _, token = await sync(pricing_stub, service_token, "")

    def call(**fields: object) -> grpc.aio.UnaryUnaryCall:  # type: ignore[type-arg]
        return pricing_stub.SyncProducts(pb.SyncProductsRequest(**fields), metadata=bearer(service_token))

    def b64(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    await expect_invalid(call(page_size=-1), "page_size")
    await expect_invalid(call(page_size=1001), "page_size")
    await expect_invalid(call(sync_token="not a token!"), "sync_token")
    await expect_invalid(call(sync_token=b64("5:3:")), "sync_token")  # xmin past xmax
    await expect_invalid(call(sync_token=b64("3:9:7,5")), "sync_token")  # running ids out of order
    await expect_invalid(call(sync_token=b64("3:9:12")), "sync_token")  # a running id past xmax
    await expect_invalid(call(sync_token=b64("3:9:5'; DROP TABLE x")), "sync_token")
    await expect_invalid(call(sync_token="A" * 9000), "sync_token")
    await expect_invalid(call(sync_token=b64("\u0663:9:")), "sync_token")  # a digit, but not one Postgres reads
    page = json.loads(base64.urlsafe_b64decode(first.next_page_token + "=" * (-len(first.next_page_token) % 4)))
    for after in ("\u0000", "x" * 65, "a b"):  # no sku: Postgres can't even store a NUL
        await expect_invalid(call(page_token=b64(json.dumps([page[0], page[1], after]))), "page_token")
    assert page[2] and (await call(page_token=b64(json.dumps(page)))).products  # the token as given still reads
    await expect_invalid(call(page_token=b64("[1,2]")), "page_token")
    await expect_invalid(call(page_token="%%%"), "page_token")
    # A page of the whole catalog's sync, asked for as a page of another.
    await expect_invalid(call(sync_token=token, page_token=first.next_page_token), "page_token")


async def test_sync_is_for_services_and_operators_only(
    pricing_stub: PricingServiceStub, customer_token: str, admin_token: str
) -> None:
    admin = await pricing_stub.SyncProducts(pb.SyncProductsRequest(page_size=1), metadata=bearer(admin_token))
    assert len(admin.products) == 1
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await pricing_stub.SyncProducts(pb.SyncProductsRequest(), metadata=bearer(customer_token))
    assert exc_info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await pricing_stub.SyncProducts(pb.SyncProductsRequest())
    assert exc_info.value.code() == grpc.StatusCode.UNAUTHENTICATED
