"""The carts this process wrote last, as written: what AddCartItem checks a line on and writes it at the kept
version without reading the cart first (:mod:`checkout.biz.cart.manage`).

Shared by the cart use cases, which keep what they write, and StartCheckout, which drops the cart it freezes: a
kept cart is ACTIVE as far as this process knows. Only a write guarded by the kept version may rely on one (every
change of a cart bumps it), so a cart changed meanwhile, here or by another replica, is handled as it is now.

A copy serves the next calls of one checkout flow only: it is kept for ``ttl_seconds`` at most, at most
``max_entries`` of them, and a cart of more than ``max_lines`` lines is not kept at all (its calls read it).
"""

from __future__ import annotations

from dataclasses import replace

from checkout.biz.kept import KeptWrites
from checkout.model.cart import Cart, CartStatus
from kernel.caller import Caller

__all__ = ["RecentCarts"]


class RecentCarts(KeptWrites[Cart]):
    """Up to ``max_entries`` carts of at most ``max_lines`` lines, each for ``ttl_seconds`` after it was written
    (0 entries keeps none). ``forget(cart_id)`` drops one that left ACTIVE here, or was found so."""

    def remember(self, cart: Cart) -> Cart:
        """Keep a copy of ``cart`` as just written (unless a later version of it is kept already); ``cart``."""
        if cart.status is not CartStatus.ACTIVE or len(cart.items) > self._max_lines:
            self._kept.pop(cart.cart_id)
            return cart
        kept = self._kept.get(cart.cart_id)
        if kept is None or kept.version <= cart.version:
            self._kept.put(cart.cart_id, replace(cart, items=list(cart.items)))
        return cart

    def recall(self, caller: Caller, cart_id: str) -> Cart | None:
        """The caller's ACTIVE cart as this process last wrote it, if kept (it may have changed since)."""
        kept = self._kept.get(cart_id)
        if kept is None or kept.status is not CartStatus.ACTIVE or not caller.owns(kept.customer_id):
            return None
        return kept
