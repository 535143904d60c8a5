"""The real composition root: both services registered, workers running, neighbours reached through adapters."""

from __future__ import annotations

import dataclasses

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers import bearer

from checkout.bootstrap import bootstrap
from infra.grpc_errors import error_info
from infra.runner import running_service
from kassa.checkout.v1 import cart_pb2, cart_service_pb2, cart_service_pb2_grpc

pytestmark = pytest.mark.integration


async def test_bootstrap_serves_and_translates_an_unreachable_neighbour(settings, customer_token) -> None:
    # Port 1 refuses connections: pricing is down.
    unreachable = dataclasses.replace(settings, addrs={**settings.addrs, "pricing": "127.0.0.1:1"})
    async with (
        running_service(bootstrap, unreachable, "127.0.0.1:0") as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("kassa.checkout.v1.CartService", "kassa.checkout.v1.CheckoutService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

        carts = cart_service_pb2_grpc.CartServiceStub(channel)
        md = bearer(customer_token)
        cart = (await carts.CreateCart(cart_service_pb2.CreateCartRequest(), metadata=md)).cart
        assert cart.currency_code == "USD"
        assert cart.status == cart_pb2.CART_STATUS_ACTIVE
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await carts.AddCartItem(
                cart_service_pb2.AddCartItemRequest(cart_id=cart.cart_id, sku="SKU-1", quantity=1), metadata=md
            )
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_info(err.value).reason == "UNAVAILABLE"
        unchanged = await carts.GetCart(cart_service_pb2.GetCartRequest(cart_id=cart.cart_id), metadata=md)
        assert list(unchanged.cart.items) == []
