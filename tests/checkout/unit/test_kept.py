"""What checkout keeps of its own writes: bounded by count and by time, and never a large cart or session."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from checkout.biz.cart.recent import RecentCarts
from checkout.biz.checkout.recent import RecentSessions
from checkout.biz.checkout.settle import Settlement
from checkout.biz.kept import Kept
from checkout.model.cart import Cart, CartItem, CartStatus
from checkout.model.session import Session, SessionLine, SessionStatus
from kernel.address import Address
from kernel.caller import Caller

pytestmark = pytest.mark.unit

ADA = Caller("cust-ada")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _cart(cart_id: str, lines: int = 1) -> Cart:
    return Cart(cart_id, ADA.subject, "USD", items=[CartItem(f"SKU-{i}", "x", 1, 100) for i in range(lines)])


def _session(session_id: str, lines: int = 1, *, expires_in: float = 900.0) -> Session:
    now = datetime.now(UTC)
    return Session(
        session_id=session_id,
        cart_id="c",
        customer_id=ADA.subject,
        currency_code="USD",
        lines=[SessionLine(f"SKU-{i}", "x", 1, 100, "w", Address()) for i in range(lines)],
        expires_at=now + timedelta(seconds=expires_in),
        updated_at=now,
    )


def test_the_oldest_entry_goes_first_past_the_count() -> None:
    kept: Kept[str, int] = Kept(2, 60.0, clock=Clock())
    kept.put("a", 1)
    kept.put("b", 2)
    kept.put("a", 3)  # put again: now the newest
    kept.put("c", 4)
    assert (kept.get("a"), kept.get("b"), kept.get("c")) == (3, None, 4)
    assert len(kept) == 2


def test_an_entry_lapses_after_its_time_and_the_lapsed_are_dropped() -> None:
    clock = Clock()
    kept: Kept[str, int] = Kept(10, 60.0, clock=clock)
    kept.put("a", 1)
    clock.now += 30
    kept.put("b", 2)
    kept.put("short", 3, ttl_seconds=5)
    clock.now += 29.9
    assert kept.get("a") == 1
    assert kept.get("short") is None  # its own, shorter time
    clock.now += 0.1
    assert kept.get("a") is None
    assert kept.get("b") == 2
    clock.now += 30
    kept.put("c", 3)  # a put drops what lapsed before it, oldest first
    assert len(kept) == 1
    assert kept.get("b") is None


def test_nothing_is_kept_with_no_room_or_no_time() -> None:
    none: Kept[str, int] = Kept(0, 60.0)
    none.put("a", 1)
    assert none.get("a") is None
    kept: Kept[str, int] = Kept(10, 60.0)
    kept.put("a", 1)
    kept.put("a", 2, ttl_seconds=0)  # no time left: what was kept goes too
    assert kept.get("a") is None


def test_recent_carts_lapse_and_keep_no_large_cart() -> None:
    clock = Clock()
    carts = RecentCarts(2, ttl_seconds=60.0, max_lines=3, clock=clock)
    carts.remember(_cart("small", 3))
    assert carts.recall(ADA, "small") is not None
    carts.remember(_cart("small", 4))  # grown past the bound: the older copy goes too
    assert carts.recall(ADA, "small") is None
    carts.remember(_cart("a"))
    carts.remember(_cart("b"))
    carts.remember(_cart("c"))
    assert [carts.recall(ADA, c) is not None for c in "abc"] == [False, True, True]
    clock.now += 60
    assert carts.recall(ADA, "c") is None
    carts.remember(_cart("d"))
    carts.forget("d")
    assert carts.recall(ADA, "d") is None
    carts.remember(Cart("frozen", ADA.subject, "USD", status=CartStatus.CHECKOUT))
    assert carts.recall(ADA, "frozen") is None


def test_recent_sessions_lapse_never_outlive_their_expiry_and_keep_no_large_session() -> None:
    clock = Clock()
    sessions = RecentSessions(2, ttl_seconds=60.0, max_lines=3, clock=clock)
    sessions.remember(_session("s", 3))
    assert sessions.recall(ADA, "s") is not None
    sessions.remember(_session("big", 4))
    assert sessions.recall(ADA, "big") is None
    sessions.remember(_session("soon", expires_in=10))
    clock.now += 10  # the session's own expiry, before the map's time
    assert sessions.recall(ADA, "soon") is None
    assert sessions.recall(ADA, "s") is not None
    clock.now += 50
    assert sessions.recall(ADA, "s") is None
    for sid in ("a", "b", "c"):
        sessions.remember(_session(sid))
    assert [sessions.recall(ADA, s) is not None for s in "abc"] == [False, True, True]


def test_sessions_ended_here_are_remembered_for_a_while() -> None:
    clock = Clock()
    settlement = Settlement(
        *(cast(Any, None),) * 4, remember_ended=2, remember_seconds=60.0, clock=clock
    )  # fmt: skip
    for sid in ("a", "b", "c"):
        settlement._remember(sid, SessionStatus.COMPLETED)
    assert [settlement.ended_here(s) for s in "abc"] == [None, SessionStatus.COMPLETED, SessionStatus.COMPLETED]
    clock.now += 60
    assert settlement.ended_here("c") is None
