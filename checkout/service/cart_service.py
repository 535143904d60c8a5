"""kassa.checkout.v1.CartService: customer carts; only their owner (or an admin/service) reaches them."""

from __future__ import annotations

import grpc

from checkout.biz.cart.manage import CartUseCases
from checkout.service.convert import cart_to_pb, current_caller
from kassa.checkout.v1 import cart_service_pb2 as pb
from kassa.checkout.v1 import cart_service_pb2_grpc as pb_grpc

__all__ = ["CartServiceServicer"]


class CartServiceServicer(pb_grpc.CartServiceServicer):
    def __init__(self, carts: CartUseCases) -> None:
        self._carts = carts

    async def CreateCart(
        self, request: pb.CreateCartRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateCartResponse:
        return pb.CreateCartResponse(cart=cart_to_pb(await self._carts.create(current_caller(), request.currency_code)))

    async def GetCart(self, request: pb.GetCartRequest, context: grpc.aio.ServicerContext) -> pb.GetCartResponse:
        return pb.GetCartResponse(cart=cart_to_pb(await self._carts.get(current_caller(), request.cart_id)))

    async def AddCartItem(
        self, request: pb.AddCartItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.AddCartItemResponse:
        cart = await self._carts.add_item(current_caller(), request.cart_id, request.sku, request.quantity)
        return pb.AddCartItemResponse(cart=cart_to_pb(cart))

    async def UpdateCartItem(
        self, request: pb.UpdateCartItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateCartItemResponse:
        cart = await self._carts.update_item(current_caller(), request.cart_id, request.sku, request.quantity)
        return pb.UpdateCartItemResponse(cart=cart_to_pb(cart))

    async def RemoveCartItem(
        self, request: pb.RemoveCartItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.RemoveCartItemResponse:
        cart = await self._carts.remove_item(current_caller(), request.cart_id, request.sku)
        return pb.RemoveCartItemResponse(cart=cart_to_pb(cart))
