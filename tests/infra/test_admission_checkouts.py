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
        "idle_s": 3.0,
        "target_s": 0.5,
        "interval_s": 1.0,
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


async def test_work_under_way_is_never_queued_or_refused_while_new_checkouts_are() -> None:
    clock = Clock()
    g = gate(clock, limit=1)
    g.leave(at_once(g.enter("under-way", new_work=True)), ended=False)
    waiters = [asyncio.create_task(g.enter("w0", new_work=True))]
    await settle()
    clock.now += 0.6  # the head has waited past the target: the interval starts, and two more join
    waiters += [asyncio.create_task(g.enter(k, new_work=True)) for k in ("w1", "w2")]
    await settle()
    clock.now += 1.0  # standing above the target for an interval, and grown: new checkouts refused on arrival
    assert refused_at_once(g.enter("late", new_work=True)).why == "queue_delay"
    assert g.queue.dropping
    # The checkout in progress calls on, and a caller with none in progress (an order lookup) too: at once.
    for key in ("under-way", "browsing"):
        call = at_once(g.enter(key, new_work=False))
        g.leave(call, ended=False)
    for task in waiters:
        task.cancel()
    await settle()


async def test_a_refusal_is_at_once_with_a_retry_after_of_at_least_a_second() -> None:
    clock = Clock()
    g = gate(clock, limit=1)
    g.leave(at_once(g.enter("a", new_work=True)), ended=False)
    waiters = [asyncio.create_task(g.enter("w0", new_work=True))]
    await settle()
    clock.now += 0.6
    waiters += [asyncio.create_task(g.enter(k, new_work=True)) for k in ("w1", "w2")]
    await settle()
    clock.now += 1.0
    refused = refused_at_once(g.enter(None, new_work=True))  # a guest token, refused before it waits
    assert refused.retry_after_s >= 1.0 and refused.retry_after_header.isdigit()
    assert (refused.in_flight, refused.waiting) == (1, 3)
    for task in waiters:
        task.cancel()
    await settle()


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
    g = gate(Clock(), limit=1, call_cap=3)
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


async def test_a_closed_crowd_is_not_refused_when_the_limit_falls_and_moves_checkouts_into_the_queue() -> None:
    clock = Clock()
    g = gate(clock, limit=2, max_limit=4)
    g.queue.limit = 4  # risen earlier
    tickets = {key: at_once(g.enter(key, new_work=True)) for key in "abcd"}
    waiters = [asyncio.create_task(g.enter(k, new_work=True)) for k in ("w0", "w1")]
    await settle()
    clock.now += 0.6  # the queue stands above the target: the interval starts as one more joins
    waiters.append(asyncio.create_task(g.enter("w2", new_work=True)))
    await settle()
    g.queue.limit = 2  # calls got slow: the limit falls
    for key in "ab":  # two checkouts end; their slots are over the limit now, and their buyers come back
        g.leave(tickets[key], ended=True)
    waiters += [asyncio.create_task(g.enter(k, new_work=True)) for k in ("a2", "b2")]
    await settle()
    clock.now += 1.0
    # More joined the queue than left it, but the crowd (in progress + waiting) did not grow: served, not refused.
    late = asyncio.create_task(g.enter("c2", new_work=True))
    await settle()
    assert not g.queue.dropping and not late.done() and g.queue.refused == 0
    for task in [*waiters, late]:
        task.cancel()
    await settle()


async def test_before_any_queue_the_rate_checkouts_end_at_decides_who_may_wait() -> None:
    clock = Clock()
    g = gate(clock, limit=1, max_wait_s=2.0)  # a new checkout joins while its expected wait is within 2 s
    for key in ("x", "y"):  # two checkouts end a second apart: slots free at 1/s
        g.leave(at_once(g.enter(key, new_work=True)), ended=True)
        clock.now += 1.0
    g.leave(at_once(g.enter("a", new_work=True)), ended=False)
    waiters = [asyncio.create_task(g.enter(k, new_work=True)) for k in ("w1", "w2")]  # 1 s and 2 s away
    await settle()
    assert g.waiting == 2
    refused = refused_at_once(g.enter("w3", new_work=True))  # 3 s away: refused on arrival, not after waiting
    assert refused.why == "max_wait" and refused.retry_after_s >= 1.0
    for task in waiters:
        task.cancel()
    await settle()


async def test_after_an_overload_only_a_short_queue_may_form_so_no_waiter_waits_out_max_wait() -> None:
    clock = Clock()
    g = gate(clock, limit=1, max_wait_s=10.0)
    assert g.queue._may_wait(10.0, clock.now) == 10.0  # a closed crowd may wait its turn up to max_wait
    g.leave(at_once(g.enter("a", new_work=True)), ended=False)
    waiters = [asyncio.create_task(g.enter("w0", new_work=True))]
    await settle()
    clock.now += 0.6
    waiters += [asyncio.create_task(g.enter(k, new_work=True)) for k in ("w1", "w2")]
    await settle()
    clock.now += 1.0
    assert refused_at_once(g.enter("late", new_work=True)).why == "queue_delay"  # growing: an overload
    for task in waiters:  # the queue drains (here: its waiters give up) ...
        task.cancel()
    await settle()
    g.leave(at_once(g.enter("a", new_work=False)), ended=True)
    g.leave(at_once(g.enter("b", new_work=True)), ended=False)  # ... and the first arrival ends the state
    assert not g.queue.dropping
    # For five intervals after, a new checkout may only expect to wait an interval: the queue stays short.
    assert g.queue._may_wait(10.0, clock.now + 4.9) == 1.0
    assert g.queue._may_wait(10.0, clock.now + 5.1) == 10.0


async def test_a_checkout_that_joined_the_queue_is_served_even_past_max_wait_and_never_refused_after_waiting() -> None:
    g = gate(Clock(), limit=1, target_s=0.005, max_wait_s=0.01)  # a real-time bound, waited out for sure
    g.leave(at_once(g.enter("a", new_work=True)), ended=False)
    ticket = await g.enter("late", new_work=True)
    assert ticket.new and g.tracks("late")
    assert (g.in_progress, g.waiting, g.queue.admitted_late, g.queue.refused) == (2, 0, 1, 0)
    assert g.queue.admitted_from_queue == 1  # it left the queue: the demand (in progress + waiting) did not grow


async def test_while_no_checkout_ended_lately_the_queue_is_at_most_four_times_the_limit() -> None:
    g = gate(Clock(), limit=1)
    g.leave(at_once(g.enter("a", new_work=True)), ended=False)
    waiters = [asyncio.create_task(g.enter(f"w{i}", new_work=True)) for i in range(4)]
    await settle()
    assert g.waiting == 4
    assert refused_at_once(g.enter("w4", new_work=True)).why == "max_wait"
    for task in waiters:
        task.cancel()
    await settle()


async def test_a_crowd_a_little_larger_than_a_moment_ago_is_not_yet_an_overload() -> None:
    clock = Clock()
    g = gate(clock, limit=8, call_cap=64)  # a margin of a quarter of the limit: 2 checkouts
    for i in range(8):
        g.leave(at_once(g.enter(f"k{i}", new_work=True)), ended=False)
    waiters = [asyncio.create_task(g.enter("w0", new_work=True))]
    await settle()
    clock.now += 0.6
    waiters += [asyncio.create_task(g.enter(k, new_work=True)) for k in ("w1", "w2")]
    await settle()
    clock.now += 1.0
    waiters.append(asyncio.create_task(g.enter("w3", new_work=True)))  # two more than left: served in turn
    await settle()
    assert not g.queue.dropping and g.waiting == 4
    waiters += [asyncio.create_task(g.enter(k, new_work=True)) for k in ("w4", "w5")]
    await settle()
    clock.now += 1.0  # the next interval: three joined (w3 to w5), none left, over the margin: an overload
    assert refused_at_once(g.enter("late", new_work=True)).why == "queue_delay"
    for task in waiters:
        task.cancel()
    await settle()
