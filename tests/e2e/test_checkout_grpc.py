"""The same flow over gRPC straight to the services, as backend teams call Kassa: with kassa-client.

The async and the sync client each place a whole order; refusals arrive as the SDK's typed exceptions
(InvalidArgument naming the field, OutOfStock with the skus, Unauthenticated without a token).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from e2e.support import make_catalog, make_coupon, stock_of

import kassa_client
from infra.auth import mint_token
from kassa.order.v1 import order_pb2
from kassa.payment.v1 import payment_pb2
from kassa_client import Address, AsyncKassaClient, KassaClient, Money

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

ADDRESS = Address(name="Grace Hopper", line1="2 Navy Yard", city="Newark", postal_code="07102", country_code="US")


def customer(mesh: Any, prefix: str) -> str:
    return mint_token(mesh.env["KASSA_JWT_SECRET"], f"{prefix}-{uuid.uuid4().hex[:8]}")


async def test_happy_path_with_the_async_client(mesh: Any) -> None:
    skus = await make_catalog(mesh)
    coupon = await make_coupon(mesh)
    async with AsyncKassaClient(
        mesh.addr("checkout"), orders_target=mesh.addr("order"), token=customer(mesh, "backend")
    ) as kassa:
        cart = await kassa.carts.create(currency_code="USD")
        for s, q in zip(skus, [2, 1, 1], strict=True):
            await kassa.carts.add_item(cart.cart_id, sku=s, quantity=q)
        sid = (await kassa.checkout.start(cart.cart_id)).session.session_id
        session = await kassa.checkout.update_state(
            sid,
            email="grace@example.com",
            shipping_address=ADDRESS,
            shipping_method="express",
            payment_method="tok_visa",
            promotion_codes=[coupon],
        )
        assert session.shipping_method == "express"
        preview = await kassa.checkout.preview(sid)
        assert preview.discount_total.amount_minor > 0
        key = uuid.uuid4().hex
        result = await kassa.checkout.confirm(sid, expected_grand_total=preview.grand_total, idempotency_key=key)
        assert result.order_status == order_pb2.ORDER_STATUS_CONFIRMED
        assert result.payment_status == payment_pb2.PAYMENT_STATUS_CAPTURED
        # The same key again is the same order, not a second one.
        again = await kassa.checkout.confirm(sid, expected_grand_total=preview.grand_total, idempotency_key=key)
        assert again.order_id == result.order_id
        order = await kassa.orders.get(result.order_id)
        assert order.status == order_pb2.ORDER_STATUS_CONFIRMED
        assert order.totals.grand_total == result.grand_total
        assert sorted((line.sku, line.quantity) for line in order.lines) == sorted(zip(skus, [2, 1, 1], strict=True))
        assert order.shipping_method == "express"
        assert result.order_id in [o.order_id for o in (await kassa.orders.list()).orders]


def _checkout_blocking(checkout_addr: str, order_addr: str, token: str, skus: list[str]) -> tuple[Any, Any]:
    with KassaClient(checkout_addr, orders_target=order_addr, token=token) as kassa:
        cart = kassa.carts.create(currency_code="USD")
        kassa.carts.add_item(cart.cart_id, sku=skus[0], quantity=3)
        kassa.carts.update_item(cart.cart_id, sku=skus[0], quantity=1)
        sid = kassa.checkout.start(cart.cart_id).session.session_id
        kassa.checkout.update_state(
            sid,
            email="ada@example.com",
            shipping_address=ADDRESS,
            shipping_method="standard",
            payment_method="tok_visa",
        )
        preview = kassa.checkout.preview(sid)
        result = kassa.checkout.confirm(sid, expected_grand_total=preview.grand_total)
        return result, kassa.orders.get(result.order_id)


async def test_happy_path_with_the_sync_client(mesh: Any) -> None:
    skus = await make_catalog(mesh, n=1)
    result, order = await asyncio.to_thread(
        _checkout_blocking, mesh.addr("checkout"), mesh.addr("order"), customer(mesh, "sync"), skus
    )
    assert result.order_status == order_pb2.ORDER_STATUS_CONFIRMED
    assert order.status == order_pb2.ORDER_STATUS_CONFIRMED
    assert [(line.sku, line.quantity) for line in order.lines] == [(skus[0], 1)]


async def test_refusals_are_typed_exceptions(mesh: Any) -> None:
    skus = await make_catalog(mesh, n=2, on_hand=1)
    checkout = mesh.addr("checkout")
    async with (
        AsyncKassaClient(checkout, token=customer(mesh, "alice")) as alice,
        AsyncKassaClient(checkout, token=customer(mesh, "bob")) as bob,
        AsyncKassaClient(checkout) as anonymous,
    ):
        cart = await alice.carts.create(currency_code="USD")

        with pytest.raises(kassa_client.InvalidArgument) as invalid:
            await alice.carts.add_item(cart.cart_id, sku=skus[0], quantity=0)
        assert (invalid.value.reason, invalid.value.field) == ("INVALID_ARGUMENT", "quantity")

        with pytest.raises((kassa_client.NotFound, kassa_client.PermissionDenied)):
            await bob.carts.get(cart.cart_id)

        with pytest.raises(kassa_client.Unauthenticated):
            await anonymous.carts.get(cart.cart_id)

        for s in skus:
            await alice.carts.add_item(cart.cart_id, sku=s, quantity=2)
        with pytest.raises(kassa_client.OutOfStock) as out:
            await alice.checkout.start(cart.cart_id)
        assert set(out.value.metadata["skus"].split(",")) == set(skus)
        assert all(out.value.metadata[f"available.{s}"] == "1" for s in skus)
        assert [v[1] for v in (await stock_of(mesh, skus)).values()] == [0, 0]

        with pytest.raises(kassa_client.InvalidArgument) as wrong:
            await alice.checkout.confirm(
                str(uuid.uuid4()), expected_grand_total=Money(currency_code="EUR", amount_minor=-1)
            )
        assert wrong.value.field.startswith("expected_grand_total")
