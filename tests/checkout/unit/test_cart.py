"""Cart use cases: validation names the field and writes nothing; carts belong to their owner."""

from __future__ import annotations

import pytest

from checkout.biz.cart.manage import CartUseCases
from checkout.model.cart import Cart, CartStatus
from checkout.service.validation import check_cart_id, check_cart_line, check_remove_cart_item
from kassa.checkout.v1 import cart_service_pb2 as pb
from kernel.caller import Caller
from kernel.errors import FailedPrecondition, InvalidArgument, NotFound, Reason, ResourceExhausted, Unavailable

pytestmark = pytest.mark.unit


async def _add(world, cart_id: str, sku: str, quantity: int) -> Cart:
    """AddCartItem as CartServiceServicer runs it: the request's checks, then the use case."""
    request = pb.AddCartItemRequest(cart_id=cart_id, sku=sku, quantity=quantity)
    checked_id, checked_sku = check_cart_line(request, world.policy.max_item_quantity)
    return await world.carts.add_item(world.customer, checked_id, checked_sku, quantity)


async def _update(world, cart_id: str, sku: str, quantity: int) -> Cart:
    """UpdateCartItem as CartServiceServicer runs it."""
    request = pb.UpdateCartItemRequest(cart_id=cart_id, sku=sku, quantity=quantity)
    checked_id, checked_sku = check_cart_line(request, world.policy.max_item_quantity)
    return await world.carts.update_item(world.customer, checked_id, checked_sku, quantity)


async def _remove(world, cart_id: str, sku: str) -> Cart:
    """RemoveCartItem as CartServiceServicer runs it."""
    request = pb.RemoveCartItemRequest(cart_id=cart_id, sku=sku)
    checked_id, checked_sku = check_remove_cart_item(request)
    return await world.carts.remove_item(world.customer, checked_id, checked_sku)


async def test_add_item_snapshots_the_catalog_price_and_sums_quantities(world) -> None:
    world.pricing.add("SKU-A", 1250)
    cart = await world.carts.create(world.customer, "")
    assert cart.currency_code == "USD"
    await world.carts.add_item(world.customer, cart.cart_id, "SKU-A", 2)
    cart = await world.carts.add_item(world.customer, cart.cart_id, "SKU-A", 3)
    assert [(i.sku, i.quantity, i.unit_price_minor) for i in cart.items] == [("SKU-A", 5, 1250)]
    assert cart.subtotal.amount_minor == 6250


@pytest.mark.parametrize("quantity", [0, -1, 10**9])
async def test_out_of_range_quantity_names_the_field_and_writes_nothing(world, quantity: int) -> None:
    world.pricing.add("SKU-A", 100)
    cart = await world.carts.create(world.customer, "USD")
    with pytest.raises(InvalidArgument) as err:
        await _add(world, cart.cart_id, "SKU-A", quantity)
    assert err.value.field == "quantity"
    assert (await world.carts.get(world.customer, cart.cart_id)).items == []


async def test_unknown_sku_is_refused_before_anything_is_written(world) -> None:
    cart = await world.carts.create(world.customer, "USD")
    with pytest.raises(InvalidArgument) as err:
        await world.carts.add_item(world.customer, cart.cart_id, "NOPE", 1)
    assert err.value.field == "sku"
    assert "unknown sku" in err.value.message
    assert (await world.carts.get(world.customer, cart.cart_id)).items == []


@pytest.mark.parametrize("sku", ["SKU\x00A", "SKU A", "SKU\nA", "SKÜ", "x" * 65])
async def test_a_malformed_sku_is_refused_by_its_own_rule_before_pricing_is_asked(world, sku: str) -> None:
    """Not pricing's refusal (which names pricing's field, skus[0]) nor "unknown sku": the catalog's sku rule."""
    cart = await world.carts.create(world.customer, "USD")
    for call in (
        _add(world, cart.cart_id, sku, 1),
        _update(world, cart.cart_id, sku, 1),
        _remove(world, cart.cart_id, sku),
    ):
        with pytest.raises(InvalidArgument) as err:
            await call
        assert err.value.field == "sku"
        assert "A-Z a-z 0-9" in err.value.message
    assert (await world.carts.get(world.customer, cart.cart_id)).items == []


async def test_summed_quantity_above_the_maximum_is_refused(world) -> None:
    world.pricing.add("SKU-A", 100)
    cart = await world.carts.create(world.customer, "USD")
    await world.carts.add_item(world.customer, cart.cart_id, "SKU-A", 990)
    with pytest.raises(InvalidArgument) as err:
        await world.carts.add_item(world.customer, cart.cart_id, "SKU-A", 10)
    assert err.value.field == "quantity"
    assert (await world.carts.get(world.customer, cart.cart_id)).items[0].quantity == 990


async def test_too_many_lines_is_cart_too_large(world_with) -> None:
    world = world_with(max_cart_items=2)
    for sku in ("A", "B", "C"):
        world.pricing.add(sku, 100)
    cart = await world.carts.create(world.customer, "USD")
    await world.carts.add_item(world.customer, cart.cart_id, "A", 1)
    await world.carts.add_item(world.customer, cart.cart_id, "B", 1)
    with pytest.raises(ResourceExhausted) as err:
        await world.carts.add_item(world.customer, cart.cart_id, "C", 1)
    assert err.value.reason == Reason.CART_TOO_LARGE
    # an existing line can still grow
    cart = await world.carts.add_item(world.customer, cart.cart_id, "A", 1)
    assert len(cart.items) == 2


async def test_update_and_remove_lines(world) -> None:
    world.pricing.add("SKU-A", 100)
    world.pricing.add("SKU-B", 200)
    cart = await world.carts.create(world.customer, "USD")
    await world.carts.add_item(world.customer, cart.cart_id, "SKU-A", 1)
    await world.carts.add_item(world.customer, cart.cart_id, "SKU-B", 1)
    cart = await world.carts.update_item(world.customer, cart.cart_id, "SKU-A", 7)
    assert cart.item("SKU-A").quantity == 7
    with pytest.raises(InvalidArgument) as err:
        await _update(world, cart.cart_id, "SKU-A", 0)
    assert err.value.field == "quantity"
    with pytest.raises(NotFound):
        await world.carts.update_item(world.customer, cart.cart_id, "SKU-Z", 1)
    cart = await world.carts.remove_item(world.customer, cart.cart_id, "SKU-B")
    assert [i.sku for i in cart.items] == ["SKU-A"]
    again = await world.carts.remove_item(world.customer, cart.cart_id, "SKU-B")
    assert [i.sku for i in again.items] == ["SKU-A"]


async def test_another_customer_gets_not_found_and_privileged_callers_may_read(world) -> None:
    world.pricing.add("SKU-A", 100)
    cart = await world.carts.create(world.customer, "USD")
    intruder = Caller("cust-mallory")
    with pytest.raises(NotFound):
        await world.carts.get(intruder, cart.cart_id)
    with pytest.raises(NotFound):
        await world.carts.add_item(intruder, cart.cart_id, "SKU-A", 1)
    assert (await world.carts.get(Caller("admin", privileged=True), cart.cart_id)).cart_id == cart.cart_id


async def test_bad_currency_and_bad_cart_id_name_their_fields(world) -> None:
    with pytest.raises(InvalidArgument) as err:
        await world.carts.create(world.customer, "usdollar")
    assert err.value.field == "currency_code"
    with pytest.raises(InvalidArgument) as err:
        await world.carts.get(world.customer, check_cart_id("not-a-uuid"))  # as CartServiceServicer.GetCart does
    assert err.value.field == "cart_id"


async def test_a_cart_in_checkout_is_frozen(world) -> None:
    session = await world.ready_session()
    with pytest.raises(FailedPrecondition) as err:
        await world.carts.add_item(world.customer, session.cart_id, "SKU-1", 1)
    assert err.value.reason == Reason.CHECKOUT_IN_PROGRESS
    assert (await world.carts.get(world.customer, session.cart_id)).status is CartStatus.CHECKOUT


async def test_a_frozen_cart_is_refused_as_frozen_with_pricing_down_even_when_kept_as_active(world) -> None:
    """A replica whose kept copy still says ACTIVE (no one told it of the freeze): pricing failing on the kept path
    leaves the answer to the cart as it is now, which is frozen."""
    world.carts = CartUseCases(world.uow, world.pricing, world.policy)  # keeps carts of its own, told of nothing
    world.pricing.add("SKU-1", 1000)
    world.inventory.stock["SKU-1"] = 5
    cart = await world.carts.create(world.customer, "USD")
    await world.carts.add_item(world.customer, cart.cart_id, "SKU-1", 1)
    await world.start(world.customer, cart.cart_id)
    world.pricing.fail["get_products"] = Unavailable("pricing is down")
    with pytest.raises(FailedPrecondition) as err:
        await world.carts.add_item(world.customer, cart.cart_id, "SKU-1", 1)
    assert err.value.reason is Reason.CHECKOUT_IN_PROGRESS


async def test_start_checkout_drops_the_kept_copy_of_the_cart_it_freezes(world) -> None:
    world.pricing.add("SKU-1", 1000)
    world.inventory.stock["SKU-1"] = 5
    cart = await world.carts.create(world.customer, "USD")
    await world.carts.add_item(world.customer, cart.cart_id, "SKU-1", 1)
    assert world.recent_carts.recall(world.customer, cart.cart_id) is not None
    await world.start(world.customer, cart.cart_id)
    assert world.recent_carts.recall(world.customer, cart.cart_id) is None
    asked = len(world.pricing.calls)
    with pytest.raises(FailedPrecondition) as err:
        await world.carts.add_item(world.customer, cart.cart_id, "SKU-1", 1)
    assert err.value.reason is Reason.CHECKOUT_IN_PROGRESS
    assert len(world.pricing.calls) == asked  # refused on the read, before pricing is asked
