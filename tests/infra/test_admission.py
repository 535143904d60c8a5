"""Admission control: new work waits in a FIFO queue for a free slot, is refused by queueing delay
(CoDel) or past the hard bound on a wait, and work under way is admitted at once up to the hard limit.

The clock is a fake one the test moves by hand, so "waited 600 ms" is a fact of the test, not a timing.
"""

from __future__ import annotations

import asyncio

import pytest

from infra.admission import Admission, AdmissionPolicy, Overloaded

pytestmark = pytest.mark.unit

NEW = "/kassa.checkout.v1.CartService/CreateCart"
UNDER_WAY = "/kassa.checkout.v1.CheckoutService/ConfirmCheckout"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gate(clock: Clock, **overrides: object) -> Admission:
    fields: dict[str, object] = {
        "limit": 2,
        "new_work": frozenset({NEW}),
        "hard_limit": 6,
        "target_s": 0.5,
        "interval_s": 1.0,
        "max_wait_s": 5.0,
        "latency_target_s": 0.0,  # a fixed limit, unless a test is about the adaptive one
    }
    fields.update(overrides)
    return Admission(AdmissionPolicy(**fields), clock=clock)  # type: ignore[arg-type]


async def settle() -> None:
    """Let the waiting tasks run up to their next suspension."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_below_the_limit_new_work_is_admitted_without_waiting() -> None:
    g = gate(Clock())
    await g.acquire(NEW)
    await g.acquire(NEW)
    assert (g.in_flight, g.waiting, g.queued, g.refused) == (2, 0, 0, 0)


async def test_the_queue_admits_in_fifo_order_as_slots_free() -> None:
    g = gate(Clock())
    await g.acquire(NEW)
    await g.acquire(NEW)
    order: list[int] = []

    async def wait(i: int) -> None:
        await g.acquire(NEW)
        order.append(i)

    tasks = [asyncio.create_task(wait(i)) for i in range(4)]
    await settle()
    assert (g.waiting, order) == (4, [])

    g.release()  # one slot frees: the first waiter, and only it, gets it
    await settle()
    assert (order, g.in_flight, g.waiting) == ([0], 2, 3)
    g.release()
    g.release()
    await settle()
    assert order == [0, 1, 2]
    g.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3]
    assert (g.in_flight, g.waiting, g.refused) == (2, 0, 0)


async def test_a_newcomer_does_not_overtake_the_queue_when_a_slot_is_free() -> None:
    g = gate(Clock(), limit=1)
    await g.acquire(NEW)
    first = asyncio.create_task(g.acquire(NEW))
    await settle()
    g.in_flight -= 1  # a slot is free but nobody handed it out yet (as between two events)
    second = asyncio.create_task(g.acquire(NEW))
    await settle()
    assert not first.done() and not second.done()
    g.in_flight += 1
    g.release()
    await settle()
    assert first.done() and not second.done()
    g.release()
    await second


async def test_work_under_way_is_admitted_at_once_while_new_work_waits_and_refused_only_at_the_hard_limit() -> None:
    g = gate(Clock())
    await g.acquire(NEW)
    await g.acquire(NEW)
    waiting = asyncio.create_task(g.acquire(NEW))
    await settle()
    for _ in range(4):  # up to the hard limit of 6, ahead of the waiting cart
        await g.acquire(UNDER_WAY)
    assert (g.in_flight, g.waiting) == (6, 1)
    with pytest.raises(Overloaded) as refused:
        await g.acquire(UNDER_WAY)
    assert refused.value.why == "hard_limit" and refused.value.retry_after_s >= 1
    for _ in range(5):
        g.release()
    await waiting  # the cart gets a slot once under the limit again
    assert g.in_flight == 2


async def test_a_short_burst_waits_and_is_never_refused() -> None:
    clock = Clock()
    g = gate(clock)
    await g.acquire(NEW)
    await g.acquire(NEW)
    tasks = [asyncio.create_task(g.acquire(NEW)) for _ in range(3)]
    await settle()
    clock.now += 0.4  # below the target: a good queue
    for _ in range(3):
        g.release()
        await settle()
    await asyncio.gather(*tasks)
    assert (g.refused, g.dropping) == (0, False)


async def test_a_growing_queue_above_target_for_a_whole_interval_refuses_arrivals_at_once() -> None:
    clock = Clock()
    g = gate(clock)
    await g.acquire(NEW)
    await g.acquire(NEW)
    head = asyncio.create_task(g.acquire(NEW))
    await settle()

    clock.now += 0.6  # the head has waited past the target: the interval starts, nothing refused yet
    more = [asyncio.create_task(g.acquire(NEW)) for _ in range(2)]  # and the queue grows, nothing leaving it
    await settle()
    assert not any(t.done() for t in more) and not g.dropping

    clock.now += 1.0  # still above the target a whole interval later, and grown: arrivals outrun the mesh
    with pytest.raises(Overloaded) as refused:
        await g.acquire(NEW)  # refused on arrival, without waiting
    assert refused.value.why == "queue_delay"
    assert refused.value.retry_after_s >= 1 and refused.value.retry_after_header.isdigit()
    assert (g.dropping, g.waiting, g.refused) == (True, 3, 1)

    # Under-way work is not refused for it.
    await g.acquire(UNDER_WAY)
    g.release()

    # The queue drains (the ones already in it are served); an arrival that finds it empty ends the state.
    for task in (head, *more):
        g.release()
        await task
    g.release()
    g.release()
    await g.acquire(NEW)
    assert not g.dropping
    assert g.in_flight == 1


async def test_a_standing_queue_that_does_not_grow_is_a_crowd_taking_turns_and_is_served() -> None:
    """A flash sale's buyers: each one admitted is replaced by the next arrival, so the wait stays above the
    target interval after interval, but the queue does not grow: refusing them would only turn buyers away."""
    clock = Clock()
    g = gate(clock, limit=2, target_s=0.5, interval_s=1.0, max_wait_s=30.0)
    await g.acquire(NEW)
    await g.acquire(NEW)
    queue = [asyncio.create_task(g.acquire(NEW)) for _ in range(4)]
    await settle()
    for _ in range(12):  # six intervals, the head always waiting about 0.8 s
        clock.now += 0.5
        g.release()
        await settle()
        queue.append(asyncio.create_task(g.acquire(NEW)))
        await settle()
    assert (g.refused, g.dropping) == (0, False)
    assert g.waiting == 4
    for _ in range(4):
        g.release()
    await asyncio.gather(*queue)
    assert g.refused == 0


async def test_a_wait_past_the_hard_bound_is_refused() -> None:
    g = gate(Clock(), max_wait_s=0.05, target_s=0.01)
    await g.acquire(NEW)
    await g.acquire(NEW)
    with pytest.raises(Overloaded) as refused:
        await g.acquire(NEW)  # nobody releases: refused when the (real) 50 ms wait bound runs out
    assert refused.value.why == "max_wait"
    assert (g.waiting, g.in_flight, g.refused) == (0, 2, 1)


async def test_an_arrival_whose_expected_wait_exceeds_the_bound_is_refused_at_once() -> None:
    clock = Clock()
    g = gate(clock, limit=1, max_wait_s=2.0, target_s=0.5, interval_s=100.0)
    await g.acquire(NEW)
    tasks = [asyncio.create_task(g.acquire(NEW)) for _ in range(3)]
    await settle()
    for _ in range(3):  # the queue drains at one admission per second
        clock.now += 1.0
        g.release()
        await settle()
    await asyncio.gather(*tasks)
    queued = [asyncio.create_task(g.acquire(NEW)) for _ in range(2)]
    await settle()
    assert g.waiting == 2
    with pytest.raises(Overloaded) as refused:
        await g.acquire(NEW)  # third in line at 1/s: 3 s expected, over the 2 s bound
    assert refused.value.why == "max_wait"
    assert refused.value.retry_after_s == pytest.approx(2.0)
    for task in queued:
        task.cancel()
    await asyncio.gather(*queued, return_exceptions=True)
    assert g.waiting == 0


async def test_a_caller_whose_deadline_is_shorter_gives_up_sooner() -> None:
    g = gate(Clock(), limit=1)
    await g.acquire(NEW)
    with pytest.raises(Overloaded):
        await g.acquire(NEW, budget_s=0.0)
    assert g.waiting == 0


async def test_a_cancelled_waiter_leaves_the_queue_and_the_next_one_gets_the_slot() -> None:
    g = gate(Clock(), limit=1)
    await g.acquire(NEW)
    gone = asyncio.create_task(g.acquire(NEW))
    stays = asyncio.create_task(g.acquire(NEW))
    await settle()
    gone.cancel()
    await settle()
    assert g.waiting == 1
    g.release()
    await stays
    assert (g.in_flight, g.waiting) == (1, 0)


async def test_a_waiter_cancelled_just_after_admission_gives_its_slot_back() -> None:
    g = gate(Clock(), limit=1)
    await g.acquire(NEW)
    unlucky = asyncio.create_task(g.acquire(NEW))
    nxt = asyncio.create_task(g.acquire(NEW))
    await settle()
    g.release()  # the slot goes to ``unlucky`` ...
    unlucky.cancel()  # ... whose caller goes away before it runs
    await settle()
    assert unlucky.cancelled()
    await nxt  # the slot passed on
    assert (g.in_flight, g.waiting) == (1, 0)


async def test_no_limit_admits_everything_and_still_counts() -> None:
    g = Admission(AdmissionPolicy())
    for _ in range(1000):
        await g.acquire(NEW)
    assert (g.in_flight, g.refused, g.waiting) == (1000, 0, 0)


@pytest.mark.parametrize(
    "fields",
    [
        {"limit": -1},
        {"limit": 4, "hard_limit": 3},
        {"target_s": 0.0},
        {"target_s": 2.0, "max_wait_s": 1.0},
        {"interval_s": 0.0},
    ],
)
def test_a_nonsensical_policy_is_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AdmissionPolicy(**fields)  # type: ignore[arg-type]


def test_the_hard_limit_defaults_to_eight_times_the_limit() -> None:
    assert AdmissionPolicy(limit=16).cap == 128
    assert AdmissionPolicy(limit=16, hard_limit=40).cap == 40


async def _calls(g: Admission, clock: Clock, n: int, latency_s: float, method: str = UNDER_WAY) -> None:
    """``n`` calls under way that each take ``latency_s``, one after the other."""
    for _ in range(n):
        admitted = await g.acquire(method)
        clock.now += latency_s
        g.release(admitted)


async def test_the_limit_rises_while_new_work_waits_and_calls_stay_fast_and_the_queue_is_let_in() -> None:
    clock = Clock()
    g = gate(clock, limit=2, hard_limit=40, latency_target_s=1.0)
    assert g.policy.max_limit == 10
    await g.acquire(NEW)
    await g.acquire(NEW)
    waiting = [asyncio.create_task(g.acquire(NEW)) for _ in range(6)]
    await settle()
    assert g.waiting == 6
    await _calls(g, clock, 8, 0.04)  # a window of fast calls while new work waited: the limit rises
    await settle()
    assert g.limit > 2
    for _ in range(10):
        await _calls(g, clock, 8, 0.04)
        await settle()
    await asyncio.gather(*waiting)  # everyone got in without a slot being freed
    assert (g.in_flight, g.waiting, g.refused) == (8, 0, 0)
    assert g.limit <= g.policy.max_limit


async def test_the_limit_falls_back_when_calls_get_slow_but_not_below_the_configured_one() -> None:
    clock = Clock()
    g = gate(clock, limit=2, hard_limit=40, latency_target_s=1.0)
    g.limit = 16
    for _ in range(20):
        await _calls(g, clock, 8, 1.5)  # slower than the target
    assert g.limit == 2


async def test_the_limit_does_not_rise_when_nothing_waits() -> None:
    clock = Clock()
    g = gate(clock, limit=2, hard_limit=40, latency_target_s=1.0)
    for _ in range(10):
        await _calls(g, clock, 8, 0.04, method=NEW)
    assert g.limit == 2


async def test_a_fixed_limit_never_moves() -> None:
    clock = Clock()
    g = gate(clock, limit=2, hard_limit=40, latency_target_s=0.0)
    await g.acquire(NEW)
    await g.acquire(NEW)
    waiting = asyncio.create_task(g.acquire(NEW))
    await settle()
    await _calls(g, clock, 40, 0.04)
    assert g.limit == 2 and not waiting.done()
    waiting.cancel()
