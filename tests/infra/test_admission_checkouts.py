"""A gateway's admission of new checkouts by the checkouts in progress (infra.admission.CheckoutAdmission).

A slot is a checkout from its admission (a guest token, or a new cart of a caller with none in progress) to
its end (ConfirmCheckout answered, an error, ``idle_s`` without a call); every later call of it goes at once,
never queued or refused for new checkouts. The clock is a fake one the test moves by hand: no timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from infra.admission import CheckoutAdmission, CheckoutPolicy, Overloaded, Ticket

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gate(clock: Clock, **overrides: Any) -> CheckoutAdmission:
    fields: dict[str, Any] = {
        "limit": 2,
        "call_cap": 6,
        "max_in_progress": 100,  # far from every test's crowd, unless a test is about it ("full")
        "idle_s": 3.0,  # before any checkout ended: 2 slots free per 3 s, so 3 waiters fit in max_wait
        "max_wait_s": 5.0,
        "latency_target_s": 0.0,  # a fixed limit, unless a test is about the adaptive one
    }
    fields.update(overrides)
    return CheckoutAdmission(CheckoutPolicy(**fields), clock=clock)


async def settle() -> None:
    """Let the waiting tasks run up to their next suspension."""
    for _ in range(5):
        await asyncio.sleep(0)


def at_once(coro: Coroutine[Any, Any, Ticket]) -> Ticket:
    """Run ``coro`` to its end without letting it suspend: it must not wait at all."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise AssertionError("it waited")


def refused_at_once(coro: Coroutine[Any, Any, Ticket]) -> Overloaded:
    """``coro`` raises Overloaded before it suspends: the refusal costs no wait."""
    with pytest.raises(Overloaded) as refused:
        coro.send(None)
    return refused.value


def _held(g: CheckoutAdmission, clock: Clock, seconds: float, n: int = 3) -> None:
    """``n`` checkouts, one after the other, each holding its slot ``seconds``."""
    for i in range(n):
        ticket = at_once(g.enter(f"done-{i}", new_work=True))
        clock.now += seconds
        g.leave(ticket, ended=True)


async def test_a_checkout_takes_one_slot_from_its_new_cart_to_the_answer_of_its_confirm() -> None:
    g = gate(Clock())
    cart = at_once(g.enter("alice", new_work=True))
    assert cart.new and (g.in_progress, g.tracks("alice")) == (1, True)
    g.leave(cart, ended=False)
    for _ in range(4):  # items, start, state, preview: the same checkout, no new slot
        call = at_once(g.enter("alice", new_work=False))
        assert not call.new
        g.leave(call, ended=False)
    assert g.in_progress == 1
    confirm = at_once(g.enter("alice", new_work=False))
    g.leave(confirm, ended=True)
    assert (g.in_progress, g.tracks("alice")) == (0, False)


async def test_a_second_new_cart_of_a_checkout_in_progress_is_work_under_way() -> None:
    g = gate(Clock(), limit=1)
    g.leave(at_once(g.enter("alice", new_work=True)), ended=False)
    waiter = asyncio.create_task(g.enter("bob", new_work=True))
    await settle()
    assert g.waiting == 1
    again = at_once(g.enter("alice", new_work=True))  # not queued behind bob
    assert not again.new and g.in_progress == 1
    g.leave(again, ended=False)
    waiter.cancel()


async def test_new_checkouts_beyond_the_limit_wait_in_fifo_order_for_checkouts_to_end() -> None:
    g = gate(Clock())
    first = at_once(g.enter("a", new_work=True))
    g.leave(at_once(g.enter("b", new_work=True)), ended=False)
    order: list[str] = []

    async def new(key: str) -> None:
        ticket = await g.enter(key, new_work=True)
        order.append(key)
        g.leave(ticket, ended=False)

    tasks = [asyncio.create_task(new(k)) for k in ("c", "d")]
    await settle()
    assert (g.waiting, order) == (2, [])
    g.leave(first, ended=True)  # a's first call failed: its checkout is over, c gets the slot
    await settle()
    assert order == ["c"]
    g.leave(at_once(g.enter("b", new_work=False)), ended=True)  # b confirmed
    await asyncio.gather(*tasks)
    assert order == ["c", "d"] and (g.in_progress, g.waiting) == (2, 0)


async def test_a_guest_checkout_is_admitted_before_its_subject_and_bound_to_it_when_minted() -> None:
    g = gate(Clock())
    guest = at_once(g.enter(None, new_work=True))
    assert guest.new and g.in_progress == 1
    g.leave(guest, ended=False, key="guest-1")
    assert g.tracks("guest-1")
    cart = at_once(g.enter("guest-1", new_work=True))  # its cart is part of the checkout the token began
    assert not cart.new and g.in_progress == 1
    g.leave(cart, ended=False)
    failed = at_once(g.enter(None, new_work=True))
    g.leave(failed, ended=True)  # no token minted: the slot goes back
    assert g.in_progress == 1


async def test_an_error_ends_the_checkout_and_its_later_calls_go_uncounted() -> None:
    g = gate(Clock(), limit=1)
    g.leave(at_once(g.enter("sold-out", new_work=True)), ended=False)
    start = at_once(g.enter("sold-out", new_work=False))
    g.leave(start, ended=True)  # StartCheckout: OUT_OF_STOCK
    assert (g.in_progress, g.tracks("sold-out")) == (0, False)
    later = at_once(g.enter("sold-out", new_work=False))  # the client carries on: served, not counted
    assert not later.tracked
    g.leave(later, ended=False)
    assert g.in_progress == 0


async def test_a_checkout_idle_for_idle_s_no_longer_holds_its_slot_but_one_with_a_call_in_flight_does() -> None:
    clock = Clock()
    g = gate(clock)
    g.leave(at_once(g.enter("walked-away", new_work=True)), ended=False)
    slow = at_once(g.enter("slow", new_work=True))  # its CreateCart is still in flight
    clock.now += 3.5
    assert g.expire() == 1
    assert (g.tracks("walked-away"), g.tracks("slow"), g.in_progress) == (False, True, 1)
    g.leave(slow, ended=False)
    clock.now += 3.5
    assert g.expire() == 1 and g.in_progress == 0


async def test_an_idle_checkout_ends_when_the_next_call_arrives_and_its_slot_admits_a_waiter() -> None:
    clock = Clock()
    g = gate(clock, limit=1)
    g.leave(at_once(g.enter("walked-away", new_work=True)), ended=False)
    waiter = asyncio.create_task(g.enter("next", new_work=True))
    await settle()
    assert g.waiting == 1
    clock.now += 3.5
    g.leave(at_once(g.enter("someone", new_work=False)), ended=False)  # any call looks for idle checkouts
    ticket = await waiter
    assert ticket.new and g.tracks("next") and not g.tracks("walked-away")


async def test_the_timer_ends_idle_checkouts_while_new_ones_wait_and_no_call_comes() -> None:
    clock = Clock()
    g = gate(clock, limit=1)
    g.leave(at_once(g.enter("walked-away", new_work=True)), ended=False)
    waiter = asyncio.create_task(g.enter("next", new_work=True))
    await settle()
    assert g._timer is not None  # armed for when the oldest checkout turns idle
    clock.now += 3.5
    g._timer.cancel()
    g._tick()  # what the timer runs, on time
    assert (await waiter).new and g._timer is None


async def test_calls_are_refused_only_at_the_cap_and_new_checkouts_waiting_are_not_counted() -> None:
    g = gate(Clock(), limit=1, call_cap=3, max_wait_s=10.0)
    g.leave(at_once(g.enter("a", new_work=True)), ended=False)
    waiters = [asyncio.create_task(g.enter(f"w{i}", new_work=True)) for i in range(2)]
    for _ in waiters:
        g.call_started()  # as the gateway counts their requests
    await settle()
    assert g.waiting == 2
    for _ in range(3):  # the waiting ones don't count: work under way has the whole cap
        g.call_started()
    with pytest.raises(Overloaded) as refused:
        g.call_started()
    assert refused.value.why == "hard_limit" and refused.value.retry_after_s >= 1.0
    g.call_ended()
    g.call_started()
    for task in waiters:
        task.cancel()
    await settle()


async def test_a_flood_of_guest_arrivals_never_gets_a_call_of_a_checkout_under_way_refused() -> None:
    g = gate(Clock(), limit=1, call_cap=3, max_wait_s=10.0)
    g.leave(at_once(g.enter("a", new_work=True)), ended=False)
    for _ in range(3):  # guest-token requests on their way to the queue (authenticating, rate-limited)
        g.call_started(arrival=True)
    with pytest.raises(Overloaded) as refused:  # arrivals are refused at the cap on their own count ...
        g.call_started(arrival=True)
    assert refused.value.why == "hard_limit"
    for _ in range(3):  # ... and the calls of checkouts under way still have the whole cap
        g.call_started()
    with pytest.raises(Overloaded):
        g.call_started()
    # A guest waiting in the queue does nothing: it frees its arrival's place, never a call's.
    waiter = asyncio.create_task(g.enter(None, new_work=True))
    await settle()
    assert g.waiting == 1
    g.call_started(arrival=True)
    with pytest.raises(Overloaded):
        g.call_started()
    g.call_ended()
    g.call_started()
    g.call_ended(arrival=True)
    assert (g.calls_in_flight, g.arrivals_in_flight) == (3, 3)
    waiter.cancel()
    await settle()
    assert g.waiting == 0 and g._arrivals_waiting == 0


async def test_the_limit_rises_while_new_checkouts_wait_and_calls_are_fast_and_falls_when_they_are_slow() -> None:
    clock = Clock()
    g = gate(clock, limit=4, max_limit=8, latency_target_s=1.0)
    for key in "abcd":
        g.leave(at_once(g.enter(key, new_work=True)), ended=False)
    waiter = asyncio.create_task(g.enter("e", new_work=True))
    await settle()
    assert g.waiting == 1

    def calls(seconds: float, n: int = 8) -> None:
        for i in range(n):
            ticket = at_once(g.enter("abcd"[i % 4], new_work=False))
            clock.now += seconds / n
            g.leave(ticket, ended=False)

    calls(0.3)  # 8 fast calls in a quarter second of the fake clock: the limit rises, e waits no more
    assert g.limit == 5
    await waiter
    for _ in range(8):
        calls(0.3)
    assert g.limit == 5  # nobody waits: no reason to rise
    for _ in range(3):
        for i in range(8):
            ticket = at_once(g.enter("abcd"[i % 4], new_work=False))
            clock.now += 0.2
            ticket.started -= 2.0  # a call of 2 s, over the 1 s target
            g.leave(ticket, ended=False)
    assert g.limit == 4  # down, never below the configured limit


async def test_off_with_a_limit_of_zero() -> None:
    g = gate(Clock(), limit=0, call_cap=0)
    for i in range(50):
        g.call_started()
        g.leave(at_once(g.enter(f"k{i}", new_work=True)), ended=False)
    assert g.waiting == 0


def test_a_policy_that_makes_no_sense_is_refused() -> None:
    with pytest.raises(ValueError):
        CheckoutPolicy(limit=4, max_limit=2)
    with pytest.raises(ValueError):
        CheckoutPolicy(idle_s=0)
    with pytest.raises(ValueError):
        CheckoutPolicy(limit=-1)
    assert CheckoutPolicy(limit=4).cap == 32 and CheckoutPolicy(limit=4).queue_policy().max_limit == 8


async def test_before_any_queue_how_long_checkouts_held_their_slot_decides_who_may_wait() -> None:
    clock = Clock()
    g = gate(clock, limit=1, max_wait_s=2.0)  # a new checkout joins while its expected wait is within 2 s
    _held(g, clock, 1.0)  # checkouts held the one slot a second each: slots free at 1/s
    g.leave(at_once(g.enter("a", new_work=True)), ended=False)
    waiters = [asyncio.create_task(g.enter(k, new_work=True)) for k in ("w1", "w2")]  # 1 s and 2 s away
    await settle()
    assert g.waiting == 2
    refused = refused_at_once(g.enter("w3", new_work=True))  # 3 s away: refused on arrival, not after waiting
    assert refused.why == "max_wait" and refused.retry_after_s >= 1.0
    for task in waiters:
        task.cancel()
    await settle()


async def test_before_any_checkout_ended_a_slot_is_expected_to_free_once_per_idle_s() -> None:
    g = gate(Clock(), limit=1)  # 1 slot per 3 s: a first waiter expects 3 s, a second 6 s, over the 5 s bound
    g.leave(at_once(g.enter("a", new_work=True)), ended=False)
    waiter = asyncio.create_task(g.enter("w1", new_work=True))
    await settle()
    refused = refused_at_once(g.enter("w2", new_work=True))
    assert (refused.why, refused.retry_after_header, g.waiting) == ("max_wait", "3", 1)
    waiter.cancel()
    await settle()


async def test_an_open_overload_is_refused_on_arrival_with_a_retry_after_once_the_queue_holds_max_wait() -> None:
    clock = Clock()
    g = gate(clock, limit=2, max_wait_s=5.0)
    _held(g, clock, 2.0)  # 2 slots, each checkout holding one 2 s: checkouts end at 1/s
    for key in "ab":
        g.leave(at_once(g.enter(key, new_work=True)), ended=False)
    # Ten times what the mesh ends in the next 5 s arrive at once: 5 s of them queue, every other is refused
    # before it waits, told to come back when the queue has drained.
    waiters = [asyncio.create_task(g.enter(f"w{i}", new_work=True)) for i in range(5)]
    await settle()
    refusals = [refused_at_once(g.enter(f"r{i}", new_work=True)) for i in range(45)]
    assert g.waiting == 5 and not any(t.done() for t in waiters)
    assert {(r.why, r.retry_after_header) for r in refusals} == {("max_wait", "5")}
    assert g.queue.refused == 45
    # The queue drains as checkouts end; an arrival that finds it shorter joins again.
    g.leave(at_once(g.enter("a", new_work=False)), ended=True)
    clock.now += 1.0
    g.leave(at_once(g.enter("b", new_work=False)), ended=True)
    await settle()
    assert [t.done() for t in waiters] == [True, True, False, False, False]
    late = asyncio.create_task(g.enter("late", new_work=True))
    await settle()
    assert g.waiting == 4 and not late.done()
    for task in [*waiters, late]:
        task.cancel()
    await settle()


async def test_work_under_way_is_never_queued_or_refused_while_new_checkouts_are() -> None:
    clock = Clock()
    g = gate(clock, limit=1, max_wait_s=2.0)
    _held(g, clock, 1.0)
    g.leave(at_once(g.enter("under-way", new_work=True)), ended=False)
    waiters = [asyncio.create_task(g.enter(k, new_work=True)) for k in ("w1", "w2")]
    await settle()
    assert refused_at_once(g.enter("late", new_work=True)).why == "max_wait"
    # The checkout in progress calls on, and a caller with none in progress (an order lookup) too: at once.
    for key in ("under-way", "browsing"):
        for _ in range(20):
            g.leave(at_once(g.enter(key, new_work=False)), ended=False)
    assert g.queue.refused == 1 and g.in_progress == 1
    for task in waiters:
        task.cancel()
    await settle()


async def test_checkouts_let_in_past_the_limit_after_waiting_raise_the_call_cap_with_them() -> None:
    # A real-time bound, waited out for sure (as in the test below): each late checkout is let in past the limit.
    g = gate(Clock(), limit=1, call_cap=2, max_wait_s=0.01, idle_s=0.001)
    g.leave(at_once(g.enter("a", new_work=True)), ended=False)
    for key in ("b", "c"):
        g.leave(await g.enter(key, new_work=True), ended=False)
    assert (g.in_progress, g.queue.admitted_late, g.call_cap) == (3, 2, 6)
    for _ in range(6):  # each of the three may have a second call in flight: all are work under way
        g.call_started()
    with pytest.raises(Overloaded) as refused:  # a seventh is more than that: the cap still holds
        g.call_started()
    assert refused.value.why == "hard_limit"
    g.leave(at_once(g.enter("c", new_work=False)), ended=True)  # c's checkout ends: the cap follows it down
    assert g.call_cap == 4


async def test_past_max_wait_a_checkout_is_let_in_past_the_limit_only_below_the_room_and_otherwise_waits_on() -> None:
    """Checkouts let in past the limit added up under a sustained overload (154 at a limit of 32 in a 10x run), and
    their calls met checkout's own cap on calls in flight, which refused work under way. Past the room (by default
    half the cap: two calls in flight each) one that waited out ``max_wait`` waits on in its place instead, never
    refused, and is let in as soon as a checkout ends; the calls of those in progress stay within the cap."""
    # A real-time bound, waited out for sure: b and c are let in past the limit of 1, as promised.
    g = gate(Clock(), limit=1, call_cap=6, max_in_progress=0, max_wait_s=0.01, idle_s=0.001)
    assert g.policy.room == 3
    g.leave(at_once(g.enter("a", new_work=True)), ended=False)
    for key in ("b", "c"):
        g.leave(await g.enter(key, new_work=True), ended=False)
    assert (g.in_progress, g.queue.admitted_late) == (3, 2)
    d = asyncio.create_task(g.enter("d", new_work=True))
    await asyncio.wait([d], timeout=0.1)  # ten times its bound
    assert not d.done() and (g.in_progress, g.waiting, g.queue.refused) == (3, 1, 0)
    assert g.call_cap == g.policy.cap == 6  # the cap never had to grow past the policy's
    for _ in range(6):  # each of the three with two calls in flight: all served
        g.call_started()
    g.leave(at_once(g.enter("a", new_work=False)), ended=True)  # a ends: d takes its place at once
    await settle()
    assert d.done() and d.result().new
    assert (g.in_progress, g.waiting, g.queue.admitted_late, g.queue.refused) == (3, 0, 3, 0)


async def test_a_checkout_that_joined_the_queue_is_served_even_past_max_wait_and_never_refused_after_waiting() -> None:
    # A real-time bound, waited out for sure; before any checkout ended one is expected every idle_s (1 ms).
    g = gate(Clock(), limit=1, max_wait_s=0.01, idle_s=0.001)
    g.leave(at_once(g.enter("a", new_work=True)), ended=False)
    ticket = await g.enter("late", new_work=True)
    assert ticket.new and g.tracks("late")
    assert (g.in_progress, g.waiting, g.queue.admitted_late, g.queue.refused) == (2, 0, 1, 0)


@pytest.mark.parametrize("walk_away", [False, True], ids=["half-walk-away", "all-walk-away"])
async def test_a_closed_crowd_is_never_refused_even_when_its_buyers_walk_away_holding_their_slots(
    walk_away: bool,
) -> None:
    """The e2e flash sale on the fake clock: 40 buyers, 16 slots (the gateway's limit), a 10 s bound on a wait.
    Each checkout runs a second; then it confirms, or its buyer walks away (every other one, or all as in the e2e
    test), holding the slot until idle (3 s); each buyer starts a new checkout at once, so the queue refills
    while walked-away slots idle. The idle timeout bounds how long they hold a slot, and so the wait."""
    clock = Clock()
    g = gate(clock, limit=16, call_cap=400, max_wait_s=10.0, idle_s=3.0)
    running: dict[str, float] = {}  # a checkout admitted -> when
    tasks: list[asyncio.Task[None]] = []
    served = 0

    def arrive() -> None:
        key = f"buyer-{len(tasks)}"

        async def buy() -> None:
            g.leave(await g.enter(key, new_work=True), ended=False)
            running[key] = clock.now

        tasks.append(asyncio.create_task(buy()))

    for _ in range(40):
        arrive()
    await settle()
    longest = 0.0
    deepest = 0
    for _ in range(240):  # a minute, in quarter seconds
        clock.now += 0.25
        for key, since in list(running.items()):
            if clock.now - since >= 1.0:
                del running[key]
                served += 1
                if served % 2 and not walk_away:
                    g.leave(at_once(g.enter(key, new_work=False)), ended=True)  # confirmed
                arrive()  # the buyer (either kind) comes back for a new checkout
        g.expire()
        await settle()
        longest = max(longest, clock.now - min((w.since for w in g.queue._queue), default=clock.now))
        deepest = max(deepest, g.waiting)
    assert g.queue.refused == 0 and g.queue.admitted_late == 0  # none refused, none waited out the bound
    assert g.queue.refused == 0 and g.queue.admitted_late == 0  # none refused, none waited out the bound
    assert deepest >= 30 and longest <= 8.0  # it did queue (36 or 40 deep), and waited well within 10 s
    assert served >= 300  # 486 or 320 checkouts in the minute
    for task in tasks:
        task.cancel()
    await settle()
