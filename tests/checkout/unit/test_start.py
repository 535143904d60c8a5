"""StartCheckout: one price batch, one reservation batch, one live session per cart."""

from __future__ import annotations

import pytest

from checkout.model.cart import CartStatus
from checkout.model.session import SessionStatus
from kernel.caller import Caller
from kernel.errors import FailedPrecondition, InvalidArgument, NotFound, Reason

pytestmark = pytest.mark.unit


async def _cart(world, items=(("SKU-1", 2), ("SKU-2", 1))):
    for sku, _ in items:
        world.pricing.add(sku, 1000)
        world.inventory.stock[sku] = 10
    cart = await world.carts.create(world.customer, "USD")
    for sku, quantity in items:
        await world.carts.add_item(world.customer, cart.cart_id, sku, quantity)
    return cart


async def test_start_revalidates_prices_reserves_in_one_batch_and_freezes_the_cart(world) -> None:
    cart = await _cart(world)
    world.pricing.add("SKU-2", 1500)  # the price moved since it was added
    world.pricing.calls.clear()

    session, changes = await world.start(world.customer, cart.cart_id)

    assert world.pricing.count("get_products") == 1
    assert world.inventory.count("reserve_stock") == 1
    ref, lines, ttl = world.inventory.calls[0][1]
    assert ref == session.session_id
    assert ttl == world.policy.reservation_ttl_seconds
    assert sorted((ln.sku, ln.quantity) for ln in lines) == [("SKU-1", 2), ("SKU-2", 1)]
    assert [(c.sku, c.old_price.amount_minor, c.new_price.amount_minor) for c in changes] == [("SKU-2", 1000, 1500)]
    assert session.status is SessionStatus.OPEN
    assert {ln.sku: (ln.unit_price_minor, ln.warehouse_id) for ln in session.lines} == {
        "SKU-1": (1000, "wh-1"),
        "SKU-2": (1500, "wh-1"),
    }
    assert all(ln.origin.city == "Reno" for ln in session.lines)
    cart_now = await world.carts.get(world.customer, cart.cart_id)
    assert cart_now.status is CartStatus.CHECKOUT
    assert cart_now.item("SKU-2").unit_price_minor == 1500


async def test_starting_again_returns_the_open_session(world) -> None:
    cart = await _cart(world)
    first, _ = await world.start(world.customer, cart.cart_id)
    again, changes = await world.start(world.customer, cart.cart_id)
    assert again.session_id == first.session_id
    assert changes == []
    assert world.inventory.count("reserve_stock") == 1


async def test_out_of_stock_passes_through_and_leaves_the_cart_active(world) -> None:
    cart = await _cart(world)
    world.inventory.stock["SKU-2"] = 0
    with pytest.raises(FailedPrecondition) as err:
        await world.start(world.customer, cart.cart_id)
    assert err.value.reason == Reason.OUT_OF_STOCK
    assert "SKU-2" in err.value.metadata["skus"]
    assert (await world.carts.get(world.customer, cart.cart_id)).status is CartStatus.ACTIVE
    assert world.uow.state.sessions == {}
    assert world.inventory.held == {}


async def test_losing_the_race_releases_its_own_reservation_and_returns_the_winner(world) -> None:
    cart = await _cart(world)
    winner, _ = await world.start(world.customer, cart.cart_id)
    # Simulate a concurrent start that read the cart while it was still ACTIVE.
    world.uow.state.carts[cart.cart_id].status = CartStatus.ACTIVE
    session, _ = await world.start(world.customer, cart.cart_id)
    assert session.session_id == winner.session_id
    losers = [ref for ref in world.inventory.held if ref != winner.session_id]
    assert len(losers) == 1
    assert world.inventory.held[losers[0]].status == "RELEASED"
    assert world.inventory.held[winner.session_id].status == "ACTIVE"


async def test_a_session_that_cannot_be_stored_releases_its_reservation(world) -> None:
    cart = await _cart(world)

    async def broken_create(*_args, **_kwargs):
        raise RuntimeError("database unavailable")

    original = world.uow.single

    class BrokenSessions:
        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            return broken_create if name == "create_holding_cart" else getattr(self._inner, name)

    import contextlib

    class BrokenUnitOfWork:
        @contextlib.asynccontextmanager
        async def single(self):
            async with original() as tx:
                tx.sessions = BrokenSessions(tx.sessions)
                yield tx

        def transaction(self):
            return world.uow.transaction()

        def read(self):
            return world.uow.read()

    world.start._uow = BrokenUnitOfWork()
    with pytest.raises(RuntimeError):
        await world.start(world.customer, cart.cart_id)
    (ref,) = world.inventory.held
    assert world.inventory.held[ref].status == "RELEASED"
    assert (await world.carts.get(world.customer, cart.cart_id)).status is CartStatus.ACTIVE


async def test_empty_cart_other_customer_and_converted_cart_are_refused(world) -> None:
    empty = await world.carts.create(world.customer, "USD")
    with pytest.raises(InvalidArgument) as err:
        await world.start(world.customer, empty.cart_id)
    assert err.value.field == "cart_id"
    cart = await _cart(world)
    with pytest.raises(NotFound):
        await world.start(Caller("cust-mallory"), cart.cart_id)
    world.uow.state.carts[cart.cart_id].status = CartStatus.CONVERTED
    with pytest.raises(FailedPrecondition):
        await world.start(world.customer, cart.cart_id)
    assert world.inventory.held == {}


async def test_an_expired_session_is_expired_and_checkout_starts_afresh(world) -> None:
    from datetime import UTC, datetime, timedelta

    cart = await _cart(world)
    old, _ = await world.start(world.customer, cart.cart_id)
    world.uow.state.sessions[old.session_id].expires_at = datetime.now(UTC) - timedelta(seconds=1)
    new, _ = await world.start(world.customer, cart.cart_id)
    assert new.session_id != old.session_id
    assert world.uow.state.sessions[old.session_id].status is SessionStatus.EXPIRED
    assert world.inventory.held[old.session_id].status == "RELEASED"
