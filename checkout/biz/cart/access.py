"""Loading a cart for a caller: a customer reaches only their own carts."""

from __future__ import annotations

from checkout.biz.ports import UnitOfWork
from checkout.model.cart import Cart
from kernel.caller import Caller
from kernel.errors import NotFound

__all__ = ["load_owned_cart", "owned_cart"]


async def load_owned_cart(uow: UnitOfWork, caller: Caller, cart_id: str, *, items: bool = True) -> Cart:
    """Another customer's cart is reported as missing, so ids can't be probed. ``cart_id`` is a UUID in its
    canonical form (the servicer checked it: checkout.service.validation).

    ``items=False`` reads only the cart's own row (its ``items`` stay empty), for callers that lock
    the cart and read its lines in their own transaction anyway.
    """
    async with uow.read() as tx:
        cart = await (tx.carts.get(cart_id) if items else tx.carts.get_head(cart_id))
    return owned_cart(caller, cart_id, cart)


def owned_cart(caller: Caller, cart_id: str, cart: Cart | None) -> Cart:
    """``cart`` (as read for ``cart_id``) when the caller may reach it; NOT_FOUND when it is missing or another
    customer's, as :func:`load_owned_cart` answers."""
    if cart is None or not caller.owns(cart.customer_id):
        raise NotFound(f"cart {cart_id} not found", metadata={"cart_id": cart_id})
    return cart
