"""Pricing and promotion calls per use case, before (the separate calls, ``optimistic=False``) and after (promotions on
the held prices, checked by one QuoteOrder), with a coupon; and a price that changed is still caught by confirm."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import tests.checkout.conftest as harness
from checkout.biz.checkout.pricing_engine import PricingEngine
from checkout.model.catalog import OrderStatus
from checkout.model.session import SessionStatus
from kernel.errors import Aborted, Reason
from kernel.money import percent_of

pytestmark = pytest.mark.unit

# Calls to pricing and promotion that compute totals (promotion's reserve/confirm usage are the saga's own).
TOTALS = ("get_products", "quote_shipping", "quote_order", "calculate_tax", "validate")


def _world(monkeypatch: pytest.MonkeyPatch, *, optimistic: bool) -> harness.World:
    monkeypatch.setattr(harness, "PricingEngine", functools.partial(PricingEngine, optimistic=optimistic))
    world = harness.make_world()
    world.pricing.add("SKU-1", 1000, category="books")
    world.pricing.add("SKU-2", 2550, category="toys")
    world.promotion.add("SAVE10", 10)
    return world


async def _counted(world: harness.World, step: Callable[[], Awaitable[Any]]) -> tuple[Any, dict[str, int]]:
    before = {m: world.pricing.count(m) + world.promotion.count(m) for m in TOTALS}
    result = await step()
    counts = {m: world.pricing.count(m) + world.promotion.count(m) - before[m] for m in TOTALS}
    return result, {m: n for m, n in counts.items() if n}


async def _checkout(world: harness.World) -> dict[str, dict[str, int]]:
    """The flow with a coupon: AddCartItem x2, StartCheckout and UpdateCheckoutState (ready_session), PreviewOrder,
    ConfirmCheckout; calls per use case."""
    counts: dict[str, dict[str, int]] = {}
    session, counts["add x2+start+update"] = await _counted(
        world, lambda: world.ready_session((("SKU-1", 2), ("SKU-2", 1)), codes=("SAVE10",))
    )
    _, counts["preview"] = await _counted(world, lambda: world.state.preview(world.customer, session.session_id))
    result, counts["confirm"] = await _counted(world, lambda: world.confirm_session(session))
    assert result.order_status == OrderStatus.CONFIRMED
    assert result.grand_total_minor == session.preview.grand_total_minor
    return counts


async def test_a_checkout_with_a_coupon_makes_fewer_pricing_and_promotion_calls(monkeypatch) -> None:
    before = await _checkout(_world(monkeypatch, optimistic=False))
    after = await _checkout(_world(monkeypatch, optimistic=True))
    assert before == {
        # AddCartItem x2 and StartCheckout: GetProducts each; UpdateCheckoutState: 4
        "add x2+start+update": {"get_products": 4, "quote_shipping": 1, "validate": 1, "calculate_tax": 1},
        "preview": {"get_products": 1, "quote_shipping": 1, "validate": 1, "calculate_tax": 1},  # 4
        "confirm": {"get_products": 1, "quote_shipping": 1, "validate": 1, "calculate_tax": 1},  # 4
    }
    assert after == {
        # the same 3 GetProducts; update: no shipping quoted for this shipment yet, so QuoteShipping first (3)
        "add x2+start+update": {"get_products": 3, "quote_shipping": 1, "validate": 1, "quote_order": 1},
        "preview": {"validate": 1, "quote_order": 1},  # 2
        "confirm": {"validate": 1, "quote_order": 1},  # 2
    }


async def test_both_paths_confirm_the_same_order(monkeypatch) -> None:
    drafts = []
    for optimistic in (False, True):
        world = _world(monkeypatch, optimistic=optimistic)
        await _checkout(world)
        (draft,) = [args[0] for name, args in world.order.calls if name == "create_order"]
        lines = [(ln.sku, ln.quantity, ln.unit_price_minor) for ln in draft.lines]
        drafts.append(
            (draft.subtotal_minor, draft.discount_minor, draft.shipping_minor, draft.tax_minor,
             draft.grand_total_minor, draft.discounts, lines)
        )  # fmt: skip
    assert drafts[0] == drafts[1]
    assert drafts[0][1] > 0


async def test_another_replica_with_no_shipping_guess_confirms_in_three_calls(monkeypatch) -> None:
    world = _world(monkeypatch, optimistic=True)
    session = await world.ready_session((("SKU-1", 2),), codes=("SAVE10",))
    fresh = PricingEngine(world.pricing, world.promotion, 2.0)
    monkeypatch.setattr(world.confirm, "_engine", fresh)
    result, counts = await _counted(world, lambda: world.confirm_session(session))
    assert result.order_status == OrderStatus.CONFIRMED
    assert counts == {"quote_shipping": 1, "validate": 1, "quote_order": 1}


@pytest.mark.parametrize("optimistic", [False, True])
async def test_a_price_changed_before_confirm_is_caught_with_a_coupon(monkeypatch, optimistic: bool) -> None:
    """The session holds the old price: promotions is asked again with the new one, and the total the customer saw
    no longer matches, so nothing is reserved or charged and the session reopens with the new totals."""
    world = _world(monkeypatch, optimistic=optimistic)
    session = await world.ready_session((("SKU-1", 2), ("SKU-2", 1)), codes=("SAVE10",))
    world.pricing.add("SKU-1", 1100, category="books")
    with pytest.raises(Aborted) as err:
        await world.confirm_session(session)
    assert err.value.reason == Reason.PRICE_CHANGED
    # 2 x 1100 + 2550 = 4750, 10 % off 475, shipping 500 (one parcel), tax 10 % (half up) of 4750 - 475 + 500
    assert err.value.metadata["actual"] == str(4775 + percent_of(4775, 1000))
    for gateway, method in ((world.promotion, "reserve_usage"), (world.payment, "authorize")):
        assert gateway.count(method) == 0, method
    stored = world.uow.state.sessions[session.session_id]
    assert stored.status is SessionStatus.OPEN
    assert stored.preview.grand_total_minor == int(err.value.metadata["actual"])
    (*_, last_validate) = [args for name, args in world.promotion.calls if name == "validate"]
    assert {ln.sku: ln.unit_price.amount_minor for ln in last_validate[1]} == {"SKU-1": 1100, "SKU-2": 2550}
    result = await world.confirm(world.customer, session.session_id, "key-2", stored.preview.grand_total)
    assert result.order_status == OrderStatus.CONFIRMED
