"""Cart use cases: create, read, add, change and remove lines.

The request's own checks (a sku's form, a quantity within 1..max_item_quantity) are the servicer's
(checkout.service.validation), run before these are called; each use case refuses, naming the field, what
needs the catalog or the cart (an unknown sku, a line summing past the maximum) before anything is written
(DESIGN.md §4.6), and protects ownership (one customer never reads or changes another's cart). A cart frozen
by a checkout session is refused with CHECKOUT_IN_PROGRESS, so a session's reserved lines always match its cart.

AddCartItem on a cart this process wrote last (:class:`~checkout.biz.cart.recent.RecentCarts`: the latest carts it
wrote, as written, dropped when StartCheckout freezes one) skips the read: the checks run on the cart as kept and
the line is written only if the cart is still ACTIVE at that version (every change of a cart bumps it, its owner
and currency never change). A cart that moved on meanwhile comes back from that same statement as it is now, and
is checked and written as one read first would have been. A request the kept cart would refuse, and one whose
pricing call fails, go the way of a fresh read (which refuses a frozen cart before it asks pricing): so every
answer, a refusal or a failure included, is the one the cart as it is now gives.
"""

from __future__ import annotations

import uuid

from checkout.biz.cart.access import load_owned_cart, owned_cart
from checkout.biz.cart.recent import RecentCarts
from checkout.biz.policy import CheckoutPolicy
from checkout.biz.ports import FunnelEvents, NoFunnelEvents, ProductLookup, UnitOfWork
from checkout.model.cart import Cart, CartItem, CartStatus
from checkout.model.catalog import Product
from kernel.caller import Caller
from kernel.errors import FailedPrecondition, InvalidArgument, NotFound, Reason, ResourceExhausted
from kernel.money import validate_currency

__all__ = ["CartUseCases"]


def _frozen(cart_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"cart {cart_id} is being checked out or was converted; it can't change",
        reason=Reason.CHECKOUT_IN_PROGRESS,
        metadata={"cart_id": cart_id},
    )


class CartUseCases:
    """``recent``: the carts this process wrote last, kept as written for AddCartItem to write at their version
    without reading them first (shared with StartCheckout, which drops a cart it freezes); by default its own."""

    def __init__(
        self,
        uow: UnitOfWork,
        pricing: ProductLookup,
        policy: CheckoutPolicy,
        *,
        funnel: FunnelEvents | None = None,
        recent: RecentCarts | None = None,
    ) -> None:
        self._uow = uow
        self._pricing = pricing
        self._policy = policy
        self._funnel = funnel or NoFunnelEvents()
        self._recent = recent if recent is not None else RecentCarts()

    async def create(self, caller: Caller, currency_code: str) -> Cart:
        currency = (currency_code or self._policy.default_currency).strip().upper()
        if (problem := validate_currency(currency)) is not None:
            raise InvalidArgument("currency_code", problem)
        cart = Cart(cart_id=str(uuid.uuid4()), customer_id=caller.subject, currency_code=currency)
        async with self._uow.single() as tx:
            created = await tx.carts.create(cart)
        self._funnel.cart_created()
        return self._recent.remember(created)

    async def get(self, caller: Caller, cart_id: str) -> Cart:
        return await load_owned_cart(self._uow, caller, cart_id)

    async def add_item(self, caller: Caller, cart_id: str, sku: str, quantity: int) -> Cart:
        """Adds to the sku's line at the catalog's current price; unknown skus are refused up front. ``sku`` and
        ``quantity`` are checked by the servicer."""
        cart: Cart | None = None
        looked_up: tuple[str, Product | None] | None = None  # (currency, product): a cart's currency never changes
        if (kept := self._recent.recall(caller, cart_id)) is not None:
            # The cart as this process wrote it last: checked as kept, written only if still at that version
            # (one statement, which reads the cart as it is now when not). What the kept cart would refuse, and a
            # pricing call that fails, are left to the fresh read below (which refuses a frozen cart before it asks
            # pricing), so a refusal or failure is always the one the current cart gives.
            try:
                looked_up = (kept.currency_code, await self._product(sku, kept.currency_code))
            except Exception:
                kept = None
        if kept is not None and looked_up is not None:
            item = self._fitting(kept, sku, quantity, looked_up[1])
            if item is not None:
                async with self._uow.single() as tx:
                    written, current = await tx.carts.put_item_or_read(kept.cart_id, item, version=kept.version)
                if written:
                    assert current is not None
                    return self._recent.remember(current)
                cart = owned_cart(caller, cart_id, current)
        if cart is None:
            cart = await load_owned_cart(self._uow, caller, cart_id)
        if cart.status is not CartStatus.ACTIVE:
            self._recent.forget(cart.cart_id)
            raise _frozen(cart.cart_id)
        if looked_up is None or looked_up[0] != cart.currency_code:
            looked_up = (cart.currency_code, await self._product(sku, cart.currency_code))
        product = looked_up[1]
        if product is None:
            raise InvalidArgument("sku", f"unknown sku {sku!r}")
        # The line is checked against the cart as read (one snapshot of the cart and its lines) and written in
        # one statement only if the cart is still ACTIVE at that version: every change of a cart's lines bumps its
        # version, so the checks held for the cart the line joins. A cart that changed meanwhile (or was frozen)
        # takes the locked path, which checks and refuses on the cart as it is now.
        item = self._line(cart, sku, quantity, product.name, product.unit_price.amount_minor)
        async with self._uow.single() as tx:
            written_head = await tx.carts.put_item_at(cart.cart_id, item, version=cart.version)
        if written_head is not None:
            written_head.items = list(cart.items)
            written_head.put(item)  # the cart as just written, without reading it back
            return self._recent.remember(written_head)
        async with self._uow.transaction() as tx:
            locked = await tx.carts.lock_active(cart.cart_id)
            if locked is None:
                self._recent.forget(cart.cart_id)
                raise _frozen(cart.cart_id)
            item = self._line(locked, sku, quantity, product.name, product.unit_price.amount_minor)
            await tx.carts.upsert_item(cart.cart_id, item)
        locked.put(item)
        return self._recent.remember(locked)

    async def _product(self, sku: str, currency_code: str) -> Product | None:
        found = await self._pricing.get_products([sku], currency_code)
        return found.products.get(sku)

    def _fitting(self, cart: Cart, sku: str, quantity: int, product: Product | None) -> CartItem | None:
        """The line :meth:`_line` would write on ``cart``; None for an unknown sku or one it would refuse."""
        if product is None:
            return None
        try:
            return self._line(cart, sku, quantity, product.name, product.unit_price.amount_minor)
        except (InvalidArgument, ResourceExhausted):
            return None

    def _line(self, cart: Cart, sku: str, quantity: int, name: str, unit_price_minor: int) -> CartItem:
        """The sku's line once ``quantity`` more is added to ``cart``; refused past the per-sku or per-cart limit."""
        existing = cart.item(sku)
        total = quantity + (existing.quantity if existing else 0)
        if total > self._policy.max_item_quantity:
            raise InvalidArgument(
                "quantity", f"the line would hold {total}; at most {self._policy.max_item_quantity} per sku"
            )
        if existing is None and len(cart.items) >= self._policy.max_cart_items:
            raise ResourceExhausted(
                f"a cart holds at most {self._policy.max_cart_items} lines",
                reason=Reason.CART_TOO_LARGE,
                metadata={"max_cart_items": str(self._policy.max_cart_items)},
            )
        return CartItem(sku, name, total, unit_price_minor)

    async def update_item(self, caller: Caller, cart_id: str, sku: str, quantity: int) -> Cart:
        """Sets the line's quantity (1..max); removing a line is RemoveCartItem."""
        cart = await load_owned_cart(self._uow, caller, cart_id, items=False)
        async with self._uow.transaction() as tx:
            locked = await tx.carts.lock_active(cart.cart_id)
            if locked is None:
                raise _frozen(cart.cart_id)
            existing = locked.item(sku)
            if existing is None:
                raise NotFound(f"sku {sku!r} is not in cart {cart.cart_id}", metadata={"sku": sku})
            item = CartItem(sku, existing.name, quantity, existing.unit_price_minor)
            await tx.carts.upsert_item(cart.cart_id, item)
        locked.put(item)
        return self._recent.remember(locked)

    async def remove_item(self, caller: Caller, cart_id: str, sku: str) -> Cart:
        """Idempotent: removing a line that is already gone returns the cart unchanged."""
        cart = await load_owned_cart(self._uow, caller, cart_id, items=False)
        async with self._uow.transaction() as tx:
            locked = await tx.carts.lock_active(cart.cart_id)
            if locked is None:
                raise _frozen(cart.cart_id)
            await tx.carts.delete_item(cart.cart_id, sku)
        locked.drop(sku)
        return self._recent.remember(locked)
