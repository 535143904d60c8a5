"""StartCheckout: cart → checkout session with its stock reserved.

Protects DESIGN.md §4.1 (oversell: stock is reserved all or nothing in one batch before a session
exists) and §4.4 (stock leak: if the session can't be created after reserving, the reservation is
released, or queued in the DLQ when that fails). Prices are revalidated in one GetProducts call and
changes are reported to the caller, so the customer never pays a price they haven't seen.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from checkout.biz.cart.access import load_owned_cart
from checkout.biz.cart.recent import RecentCarts
from checkout.biz.checkout.compensations import Compensator
from checkout.biz.checkout.expiry import SessionExpiry
from checkout.biz.checkout.recent import RecentSessions
from checkout.biz.policy import CheckoutPolicy
from checkout.biz.ports import FunnelEvents, Gateways, NoFunnelEvents, UnitOfWork
from checkout.model.cart import Cart, CartStatus, PriceChange
from checkout.model.catalog import ProductsResult, ReserveLine
from checkout.model.compensation import Operation
from checkout.model.session import Session, SessionLine, SessionStatus
from kernel.caller import Caller
from kernel.errors import Aborted, FailedPrecondition, InvalidArgument, Reason, ResourceExhausted
from kernel.money import Money

__all__ = ["StartCheckout"]


class _LiveSessionExists(Exception):
    """Another StartCheckout for the same cart won the race."""


class StartCheckout:
    def __init__(
        self,
        uow: UnitOfWork,
        gateways: Gateways,
        policy: CheckoutPolicy,
        compensator: Compensator,
        expiry: SessionExpiry,
        *,
        funnel: FunnelEvents | None = None,
        recent: RecentSessions | None = None,
        recent_carts: RecentCarts | None = None,
    ) -> None:
        self._uow = uow
        self._g = gateways
        self._policy = policy
        self._compensator = compensator
        self._expiry = expiry
        self._funnel = funnel or NoFunnelEvents()
        self._recent = recent or RecentSessions(0)  # the sessions it opens, for UpdateCheckoutState
        self._recent_carts = recent_carts or RecentCarts(0)  # the carts AddCartItem keeps: one it freezes is dropped

    async def __call__(
        self, caller: Caller, cart_id: str, ship_to_country_code: str = ""
    ) -> tuple[Session, list[PriceChange]]:
        cart = await load_owned_cart(self._uow, caller, cart_id)
        if cart.status is CartStatus.CHECKOUT:
            live = await self._live_session(cart.cart_id)
            if live is not None:
                return live, []
            cart = await load_owned_cart(self._uow, caller, cart.cart_id)
        if cart.status is CartStatus.CONVERTED:
            raise FailedPrecondition(
                f"cart {cart.cart_id} was already turned into an order",
                reason=Reason.SESSION_NOT_OPEN,
                metadata={"cart_id": cart.cart_id},
            )
        if not cart.items:
            raise InvalidArgument("cart_id", "the cart is empty")
        if len(cart.items) > self._policy.max_cart_items:
            raise ResourceExhausted(
                f"a cart holds at most {self._policy.max_cart_items} lines", reason=Reason.CART_TOO_LARGE
            )

        found = await self._g.pricing.get_products([i.sku for i in cart.items], cart.currency_code)
        if found.missing_skus:
            raise FailedPrecondition(
                f"no longer sold: {', '.join(found.missing_skus)}",
                reason=Reason.OUT_OF_STOCK,
                metadata={"skus": ",".join(found.missing_skus)},
            )
        changes, version = await self._revalidate_prices(cart, found)

        session_id = str(uuid.uuid4())
        reserved = await self._g.inventory.reserve_stock(
            session_id,
            [ReserveLine(i.sku, i.quantity) for i in cart.items],
            ship_to_country_code,
            self._policy.reservation_ttl_seconds,
        )
        lines = [
            SessionLine(
                sku=r.sku,
                name=found.products[r.sku].name,
                quantity=r.quantity,
                unit_price_minor=found.products[r.sku].unit_price.amount_minor,
                warehouse_id=r.warehouse_id,
                origin=r.origin,
                weight_grams=found.products[r.sku].weight_grams,
                tax_class=found.products[r.sku].tax_class,
                category=found.products[r.sku].category,
                brand=found.products[r.sku].brand,
            )
            for r in reserved.reservations
        ]
        session = Session(
            session_id=session_id,
            cart_id=cart.cart_id,
            customer_id=cart.customer_id,
            currency_code=cart.currency_code,
            lines=lines,
            expires_at=reserved.expires_at,
        )
        try:
            # One statement, in autocommit: the cart moves only at the version priced, and the session is
            # created only with that move (a cart that already has a live session keeps its move to CHECKOUT,
            # which it is in already while that session lives).
            try:
                async with self._uow.single() as tx:
                    moved, created = await tx.sessions.create_holding_cart(
                        session, {CartStatus.ACTIVE, CartStatus.CHECKOUT}, version=version
                    )
            finally:
                # Frozen (or perhaps, when the statement's outcome is unknown): a copy kept as ACTIVE is not it.
                self._recent_carts.forget(cart.cart_id)
            if not moved:
                raise Aborted(
                    f"cart {cart.cart_id} changed while checkout started; start again",
                    reason=Reason.CHECKOUT_IN_PROGRESS,
                )
            if created is None:
                raise _LiveSessionExists
        except BaseException as exc:
            await self._compensator.attempt_or_record(
                session_id,
                Operation.RELEASE_RESERVATIONS,
                {"reservation_ref": session_id, "reason": "checkout session not created"},
            )
            if isinstance(exc, _LiveSessionExists):
                live = await self._live_session(cart.cart_id)
                if live is not None:
                    return live, []
                raise Aborted("another checkout of this cart is starting", reason=Reason.CHECKOUT_IN_PROGRESS) from None
            raise
        self._funnel.checkout_started()
        return self._recent.remember(created), changes

    async def _live_session(self, cart_id: str) -> Session | None:
        """The cart's OPEN session (idempotent repeat); an expired one is expired now, a confirming one refused."""
        async with self._uow.read() as tx:
            live = await tx.sessions.get_live_for_cart(cart_id)
        if live is None:
            return None
        if live.status is SessionStatus.CONFIRMING:
            raise Aborted(
                f"checkout session {live.session_id} is being confirmed",
                reason=Reason.CHECKOUT_IN_PROGRESS,
                metadata={"session_id": live.session_id},
            )
        if live.is_expired(datetime.now(UTC)):
            await self._expiry.expire_for_cart(cart_id)
            return None
        return live

    async def _revalidate_prices(self, cart: Cart, found: ProductsResult) -> tuple[list[PriceChange], int]:
        """Store changed prices in one transaction (only if the cart didn't change meanwhile)."""
        changes = [
            PriceChange(
                i.sku,
                Money(cart.currency_code, i.unit_price_minor),
                found.products[i.sku].unit_price,
            )
            for i in cart.items
            if found.products[i.sku].unit_price.amount_minor != i.unit_price_minor
        ]
        if not changes:
            return [], cart.version
        async with self._uow.transaction() as tx:
            version = await tx.carts.set_prices(
                cart.cart_id, {c.sku: c.new_price.amount_minor for c in changes}, version=cart.version
            )
        if version is None:
            raise Aborted(
                f"cart {cart.cart_id} changed while checkout started; start again",
                reason=Reason.CHECKOUT_IN_PROGRESS,
            )
        return changes, version
