"""The same flow over gRPC straight to the services, as backend teams call Kassa."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from e2e.support import grpc_reason, make_catalog, make_coupon, stock_of

from infra.auth import mint_token
from kassa.checkout.v1 import cart_service_pb2 as cart_pb
from kassa.checkout.v1 import cart_service_pb2_grpc as cart_grpc
from kassa.checkout.v1 import checkout_service_pb2 as co_pb
from kassa.checkout.v1 import checkout_service_pb2_grpc as co_grpc
from kassa.common.v1 import address_pb2, money_pb2
from kassa.order.v1 import order_pb2
from kassa.order.v1 import order_service_pb2 as order_pb
from kassa.order.v1 import order_service_pb2_grpc as order_grpc
from kassa.payment.v1 import payment_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

ADDRESS = address_pb2.Address(
    name="Grace Hopper", line1="2 Navy Yard", city="Newark", postal_code="07102", country_code="US"
)


def md(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def test_happy_path_over_grpc(mesh: Any) -> None:
    skus = await make_catalog(mesh)
    coupon = await make_coupon(mesh)
    token = mint_token(mesh.env["KASSA_JWT_SECRET"], f"backend-{uuid.uuid4().hex[:8]}")
    async with (
        grpc.aio.insecure_channel(mesh.addr("checkout")) as ch,
        grpc.aio.insecure_channel(mesh.addr("order")) as och,
    ):
        carts, checkout, orders = (
            cart_grpc.CartServiceStub(ch),
            co_grpc.CheckoutServiceStub(ch),
            order_grpc.OrderServiceStub(och),
        )
        cart = (
            await carts.CreateCart(cart_pb.CreateCartRequest(currency_code="USD"), metadata=md(token), timeout=10)
        ).cart
        for s, q in zip(skus, [2, 1, 1], strict=True):
            await carts.AddCartItem(
                cart_pb.AddCartItemRequest(cart_id=cart.cart_id, sku=s, quantity=q), metadata=md(token), timeout=10
            )
        started = await checkout.StartCheckout(
            co_pb.StartCheckoutRequest(cart_id=cart.cart_id), metadata=md(token), timeout=10
        )
        sid = started.session.session_id
        updated = await checkout.UpdateCheckoutState(
            co_pb.UpdateCheckoutStateRequest(
                session_id=sid, email="grace@example.com", shipping_address=ADDRESS, shipping_method="express",
                payment_method="tok_visa", promotion_codes=[coupon],
            ),
            metadata=md(token),
            timeout=10,
        )  # fmt: skip
        assert updated.session.shipping_method == "express"
        preview = (
            await checkout.PreviewOrder(co_pb.PreviewOrderRequest(session_id=sid), metadata=md(token), timeout=10)
        ).preview
        assert preview.discount_total.amount_minor > 0
        result = await checkout.ConfirmCheckout(
            co_pb.ConfirmCheckoutRequest(
                session_id=sid, idempotency_key=uuid.uuid4().hex, expected_grand_total=preview.grand_total
            ),
            metadata=md(token),
            timeout=30,
        )
        assert result.order_status == order_pb2.ORDER_STATUS_CONFIRMED
        assert result.payment_status == payment_pb2.PAYMENT_STATUS_CAPTURED
        order = (
            await orders.GetOrder(order_pb.GetOrderRequest(order_id=result.order_id), metadata=md(token), timeout=10)
        ).order
        assert order.status == order_pb2.ORDER_STATUS_CONFIRMED
        assert order.totals.grand_total == result.grand_total
        assert sorted((line.sku, line.quantity) for line in order.lines) == sorted(zip(skus, [2, 1, 1], strict=True))
        assert order.shipping_method == "express"


async def test_grpc_errors_carry_error_info(mesh: Any) -> None:
    skus = await make_catalog(mesh, n=2, on_hand=1)
    alice = mint_token(mesh.env["KASSA_JWT_SECRET"], f"alice-{uuid.uuid4().hex[:8]}")
    bob = mint_token(mesh.env["KASSA_JWT_SECRET"], f"bob-{uuid.uuid4().hex[:8]}")
    async with grpc.aio.insecure_channel(mesh.addr("checkout")) as ch:
        carts, checkout = cart_grpc.CartServiceStub(ch), co_grpc.CheckoutServiceStub(ch)
        cart = (
            await carts.CreateCart(cart_pb.CreateCartRequest(currency_code="USD"), metadata=md(alice), timeout=10)
        ).cart

        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await carts.AddCartItem(
                cart_pb.AddCartItemRequest(cart_id=cart.cart_id, sku=skus[0], quantity=0),
                metadata=md(alice),
                timeout=10,
            )
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert grpc_reason(exc.value) == ("INVALID_ARGUMENT", {"field": "quantity"})

        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await carts.GetCart(cart_pb.GetCartRequest(cart_id=cart.cart_id), metadata=md(bob), timeout=10)
        assert exc.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED)

        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await carts.GetCart(cart_pb.GetCartRequest(cart_id=cart.cart_id), timeout=10)
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED

        for s in skus:
            await carts.AddCartItem(
                cart_pb.AddCartItemRequest(cart_id=cart.cart_id, sku=s, quantity=2), metadata=md(alice), timeout=10
            )
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await checkout.StartCheckout(
                co_pb.StartCheckoutRequest(cart_id=cart.cart_id), metadata=md(alice), timeout=10
            )
        assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        reason, meta = grpc_reason(exc.value)
        assert reason == "OUT_OF_STOCK"
        assert set(meta["skus"].split(",")) == set(skus)
        assert all(meta[f"available.{s}"] == "1" for s in skus)
        assert [v[1] for v in (await stock_of(mesh, skus)).values()] == [0, 0]

        wrong_currency = money_pb2.Money(currency_code="EUR", amount_minor=1)
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await checkout.ConfirmCheckout(
                co_pb.ConfirmCheckoutRequest(
                    session_id=str(uuid.uuid4()), idempotency_key="", expected_grand_total=wrong_currency
                ),
                metadata=md(alice),
                timeout=10,
            )
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert grpc_reason(exc.value)[1]["field"] == "idempotency_key"
