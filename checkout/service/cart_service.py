"""kassa.checkout.v1.CartService: customer carts; only their owner (or an admin/service) reaches them."""

from __future__ import annotations

import grpc

from checkout.biz.cart.manage import CartUseCases
from checkout.service.convert import cart_to_pb
from checkout.service.validation import check_cart_id, check_cart_line, check_remove_cart_item
from infra.auth import require_caller
from kassa.checkout.v1 import cart_service_pb2 as pb
from kassa.checkout.v1 import cart_service_pb2_grpc as pb_grpc

__all__ = ["CartServiceServicer"]


class CartServiceServicer(pb_grpc.CartServiceServicer):
    def __init__(self, carts: CartUseCases, *, max_item_quantity: int) -> None:
        """``max_item_quantity``: the policy's most of one sku a line holds (bootstrap passes it), for the
        request's own quantity check; the use case checks a line's summed quantity against the same policy."""
        self._carts = carts
        self._max_item_quantity = max_item_quantity

    async def CreateCart(
        self, request: pb.CreateCartRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateCartResponse:
        return pb.CreateCartResponse(cart=cart_to_pb(await self._carts.create(require_caller(), request.currency_code)))

    async def GetCart(self, request: pb.GetCartRequest, context: grpc.aio.ServicerContext) -> pb.GetCartResponse:
        caller = require_caller()
        return pb.GetCartResponse(cart=cart_to_pb(await self._carts.get(caller, check_cart_id(request.cart_id))))

    async def AddCartItem(
        self, request: pb.AddCartItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.AddCartItemResponse:
        caller = require_caller()
        cart_id, sku = check_cart_line(request, self._max_item_quantity)
        cart = await self._carts.add_item(caller, cart_id, sku, request.quantity)
        return pb.AddCartItemResponse(cart=cart_to_pb(cart))

    async def UpdateCartItem(
        self, request: pb.UpdateCartItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateCartItemResponse:
        caller = require_caller()
        cart_id, sku = check_cart_line(request, self._max_item_quantity)
        cart = await self._carts.update_item(caller, cart_id, sku, request.quantity)
        return pb.UpdateCartItemResponse(cart=cart_to_pb(cart))

    async def RemoveCartItem(
        self, request: pb.RemoveCartItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.RemoveCartItemResponse:
        caller = require_caller()
        cart_id, sku = check_remove_cart_item(request)
        cart = await self._carts.remove_item(caller, cart_id, sku)
        return pb.RemoveCartItemResponse(cart=cart_to_pb(cart))
