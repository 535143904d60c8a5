"""Admission control at a service's edge: new work waits its turn, and is refused only when waiting stopped paying.

Without it, a saturated service accepts every call and runs them all slower, until nearly every call
outlives its deadline: the machine stays busy and almost no checkout completes. A static cap on calls in
flight that refuses at once (what Kassa had) fixes that, but turns buyers away in a burst the mesh would
have served a second later: 120 buyers racing for a hot product with 40 requests in flight got 10 to 56
refusals on a mesh with headroom.

So the calls that start new work (a guest token, a new cart: ``AdmissionPolicy.new_work``) run at once
while fewer than the current limit of calls are in flight, and otherwise **wait in a FIFO queue** for a
call to finish. The limit adapts (AIMD, every quarter second): while new work waits and nine in ten of the
calls let in finish within ``latency_target`` (half their deadline by default), it rises by a quarter, up
to ``max_limit`` (a quarter of the hard limit); when they get slower it falls by a fifth, down to the configured
``limit``. A burst the mesh can carry is so let in; a load it can't is held at a concurrency where calls
still meet their deadlines. Refusal is decided by how long the queue makes new work wait, after CoDel
(Nichols & Jacobson, "Controlling Queue Delay", 2012):

- a burst that drains is a good queue: a wait shorter than ``target`` is never refused, and a longer one
  only when the queue has stayed above ``target`` for a whole ``interval`` and grew meanwhile (more calls
  joined it than left it: arrivals outrun the mesh, and waiting longer only adds delay). A queue that
  stands without growing is a closed crowd taking turns (a flash sale's buyers): it is served, its wait
  bounded by ``max_wait``;
- while the queue is standing (CoDel's "dropping" state) new work is refused **on arrival**, before it
  waits at all, so a refusal costs the client one round trip; the queue drains, and the first arrival
  that finds it shorter than ``target`` (or empty) ends the state;
- a wait never exceeds ``max_wait``: an arrival whose expected wait (its place in the queue over the
  recent admission rate) is longer is refused at once, and a waiter still queued after ``max_wait`` (or
  after the caller's own deadline) is refused then.

CoDel proper drops at the head of the queue, at a rising rate; here the refusal is at the tail and of
every arrival while the state lasts, because a refused call should not have waited first (a refusal's
cost is what the issue bounds), and the queue is short enough that the state ends within one drain.

No library did this (checked on PyPI: aioadaptive, adaptio, ace-concurrency, adaptive-concurrency,
aimd-limiter, async-throttle): they throttle a client's own outgoing calls or a worker pool, none queues a
server's incoming calls by priority or refuses them by queueing delay.

Every other call (a checkout under way: StartCheckout, ConfirmCheckout, AddCartItem on an existing
cart, webhooks never come here at all) is never queued, never waits behind new work and is refused only
at ``hard_limit`` calls in flight, far above ``limit``: new carts are never let in by making the
customers who already have one wait or fail.

A refusal carries how long to wait before retrying (:attr:`Overloaded.retry_after_s`): the time the
queue needs to drain at the recent admission rate, at least 1 s. Nothing is written before a call is
admitted, so a refused call can always be retried.

**At the gateway the slots are checkouts, not calls** (:class:`CheckoutAdmission`). A limit on calls in flight
cannot see a checkout between two of its calls, so it lets in more checkouts than it means, and their later
calls pile up behind each other until they meet the hard limit or their deadlines (the gateway had that: at
10x overload it completed 37 % of the mesh's maximum, and refused after seconds). So the gateway counts
**checkouts in progress**: a slot is taken when a new checkout is admitted (a guest token, or a new cart of a
caller with none in progress) and given back when it ends: ConfirmCheckout answered, any of its calls answered
with an error, or ``idle_s`` with no call of it (a client that walked away). A later call is tied to its
checkout by the caller's token subject, which the gateway verifies anyway: a dict lookup per call, no I/O. The
same FIFO queue and adaptive limit (an :class:`Admission` whose in-flight count is checkouts, the limit adapting
on the latency of the calls of checkouts in progress) does the waiting, but **without CoDel**: a queue that
stands or grows refuses no one (a closed crowd's initial burst, or buyers who walked away holding their slots
until idle, looked like one). A new checkout is refused only on arrival, when its expected wait (its place in
the queue, plus the checkouts over a fallen limit, over the rate checkouts end at: ``limit`` per how long the
last 32 held their slot, ``idle_s`` before any has ended) is longer than ``max_wait``; a checkout that joined
the queue is served, let in past the limit if it waited out ``max_wait`` all the same (while the checkouts in
progress are under the room half the services' cap on calls leaves; past it, it waits on). A closed crowd is never
more than its buyers in the queue, so its expected wait stays bounded and it queues; an open overload lengthens
the queue until the expected wait passes ``max_wait`` and is refused from there, fast and with Retry-After. A
walked-away buyer holds its slot at most ``idle_s`` past its last call, and that longer hold is in the rate the
wait is expected at.

One instance per server (per gateway process: each replica admits on its own), on its event loop: no locking.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from infra.metrics import ADMISSION_REFUSALS

__all__ = ["Admission", "AdmissionPolicy", "CheckoutAdmission", "CheckoutPolicy", "Overloaded", "Ticket"]

# Admissions from the queue remembered to estimate its drain rate, and how old the oldest may be.
_RATE_SAMPLES = 32
_RATE_HORIZON_S = 5.0
# A queue grows when over an interval more than this many times as many calls joined it as left it (and at
# least two): a closed crowd's queue moves by a few either way, arrivals outrunning the mesh by more.
_GROWING = 1.25
# Retry-After is whole seconds: at least 1, and never an invitation to wait longer than this.
_MIN_RETRY_AFTER_S = 1.0
_MAX_RETRY_AFTER_S = 30.0
# How often the adaptive limit moves: several times per CoDel interval, so a limit with room to grow gets
# there before a burst's queue counts as standing.
_ADAPT_EVERY_S = 0.25
# ... over at least this many calls, so one slow call is no verdict on the mesh.
_MIN_SAMPLES = 8
# Calls in flight per checkout in progress that the gateway's call cap always leaves room for.
_CALLS_PER_CHECKOUT = 2


@dataclass(frozen=True)
class AdmissionPolicy:
    # Calls in flight from which calls to ``new_work`` methods wait in the queue; 0 admits everything at once.
    limit: int = 0
    # Full gRPC method names ("/pkg.Service/Method"), or the gateway's route keys, that start new work.
    new_work: frozenset[str] = field(default_factory=frozenset)
    # Calls in flight at which any call is refused, work under way too; 0: 8 x ``limit``.
    hard_limit: int = 0
    # CoDel's target: a wait in the queue shorter than this is never refused.
    target_s: float = 0.5
    # CoDel's interval: how long waits must stay above ``target_s`` before arrivals are refused.
    interval_s: float = 1.0
    # No call waits longer than this in the queue.
    max_wait_s: float = 5.0
    # The limit adapts (AIMD) so 90 % of admitted calls finish within this; 0: ``limit`` is fixed.
    latency_target_s: float = 2.5
    # How far the adaptive limit may rise; 0: a quarter of the hard limit (:attr:`max_limit`).
    ceiling: int = 0

    def __post_init__(self) -> None:
        if self.limit < 0 or self.hard_limit < 0:
            raise ValueError("limit and hard_limit must not be negative")
        if self.hard_limit and self.hard_limit < self.limit:
            raise ValueError("hard_limit must be at least limit")
        if not 0 < self.target_s <= self.max_wait_s:
            raise ValueError("target_s must be > 0 and at most max_wait_s")
        if self.interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        if self.latency_target_s < 0:
            raise ValueError("latency_target_s must not be negative")
        if self.ceiling < 0:
            raise ValueError("ceiling must not be negative")

    @property
    def cap(self) -> int:
        """Calls in flight at which every call is refused."""
        return self.hard_limit or 8 * self.limit

    @property
    def max_limit(self) -> int:
        """How far the adaptive limit may rise: a quarter of the hard limit, so work under way keeps its headroom
        (the flows let in keep calling after their new cart, and they must not meet the hard limit)."""
        if self.latency_target_s <= 0:
            return self.limit
        return max(self.limit, self.ceiling or self.cap // 4)


class Overloaded(Exception):
    """A call refused for load; ``why`` is "queue_delay", "max_wait" or "hard_limit"."""

    def __init__(self, why: str, retry_after_s: float, in_flight: int, waiting: int) -> None:
        super().__init__(f"refused ({why}): {in_flight} in flight, {waiting} waiting")
        self.why = why
        self.retry_after_s = retry_after_s
        self.in_flight = in_flight
        self.waiting = waiting

    @property
    def retry_after_header(self) -> str:
        """Retry-After as HTTP wants it: whole seconds."""
        return str(math.ceil(self.retry_after_s))


@dataclass(eq=False)
class _Waiter:
    future: asyncio.Future[None]
    since: float
    late: bool = False  # waited out max_wait and waits on for room (_CheckoutQueue)


class Admission:
    """The calls in flight, the adaptive limit and the queue of new work waiting for a slot.

    ``await acquire(method)`` returns when the call may run, with the time it was admitted (pass it to
    :meth:`release` once the call is over, so its latency steers the limit), or raises :class:`Overloaded`.
    When the call is admitted at once it does not suspend.
    """

    def __init__(self, policy: AdmissionPolicy, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._queue: deque[_Waiter] = deque()
        self._admitted_from_queue: deque[float] = deque(maxlen=_RATE_SAMPLES)
        self._above_since: float | None = None
        self._since_counts = (0, 0)  # (queued, admitted from the queue) when the interval began
        self.admitted_from_queue = 0
        self.dropping = False
        self.limit = policy.limit
        self._window = _LatencyWindow(clock())
        self.in_flight = 0
        self.refused = 0
        self.queued = 0

    @property
    def waiting(self) -> int:
        return len(self._queue)

    async def acquire(self, method: str, *, budget_s: float | None = None) -> float:
        """Admit the call now, after a wait in the queue (new work only), or raise :class:`Overloaded`.

        ``budget_s`` is how long the caller can wait at most (what is left of its deadline); the wait is
        bounded by the smaller of it and the policy's ``max_wait_s``. Returns the time of admission.
        """
        policy = self.policy
        now = self._clock()
        if policy.limit <= 0:
            self.in_flight += 1
            return now
        if method not in policy.new_work:
            if self.in_flight >= policy.cap:
                raise self._refuse("hard_limit", now)
            self.in_flight += 1
            return now
        self._observe(now - self._queue[0].since if self._queue else 0.0, now)
        if not self._queue and self.in_flight < self.limit:
            self.in_flight += 1
            return now
        self._window.pressed = True
        if self.dropping:
            raise self._refuse("queue_delay", now)
        wait_s = policy.max_wait_s if budget_s is None else min(policy.max_wait_s, budget_s)
        expected = self._expected_wait(len(self._queue) + 1, now)
        if wait_s <= 0 or (expected is not None and expected > wait_s):
            raise self._refuse("max_wait", now)
        await self._wait(now, wait_s)
        return self._clock()

    def sample(self, latency_s: float) -> None:
        """A latency of the work the admitted calls stand for, measured elsewhere (:class:`CheckoutAdmission`: a call
        of a checkout in progress): it steers the adaptive limit as a released call's would."""
        if self.policy.latency_target_s > 0:
            self._adapt(latency_s)
            self._admit_waiters()

    def refusal(self, why: str) -> Overloaded:
        """An :class:`Overloaded` for ``why``, counted, with the Retry-After the queue's drain rate gives."""
        return self._refuse(why, self._clock())

    def release(self, admitted_at: float | None = None) -> None:
        """A call admitted by :meth:`acquire` at ``admitted_at`` finished: its slot goes to the head of the queue.

        With ``admitted_at``, the call's latency is a sample for the adaptive limit.
        """
        self.in_flight -= 1
        if admitted_at is not None and self.policy.latency_target_s > 0:
            self._adapt(self._clock() - admitted_at)
        self._admit_waiters()

    # -- internals ---------------------------------------------------------------------------------

    def _adapt(self, latency_s: float) -> None:
        """AIMD, every ``_ADAPT_EVERY_S``: a 90th percentile latency of admitted calls over the target lowers the
        limit by a fifth (not below ``policy.limit``); under it, while new work had to wait, the limit rises by a
        quarter (not above ``policy.max_limit``). A mesh whose calls still finish well within their deadlines
        so serves a flash sale's crowd instead of queueing it until it is refused."""
        now = self._clock()
        window = self._window
        window.add(latency_s)
        if now - window.started < _ADAPT_EVERY_S:
            return
        if window.count < _MIN_SAMPLES:
            return
        if window.p90() > self.policy.latency_target_s:
            self.limit = max(self.policy.limit, int(self.limit * 0.8))
        elif window.pressed or self._queue:
            self.limit = min(self.policy.max_limit, self.limit + max(1, self.limit // 4))
        self._window = _LatencyWindow(now)

    async def _wait(self, now: float, wait_s: float) -> None:
        waiter = _Waiter(asyncio.get_running_loop().create_future(), now)
        self._queue.append(waiter)
        self.queued += 1
        try:
            await asyncio.wait([waiter.future], timeout=wait_s)
            if not waiter.future.done() and self._waits_on(waiter):
                await asyncio.wait([waiter.future])  # never cancels the future: _abandon tells a slot from none
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise
        if not waiter.future.done():
            self._waited_out(waiter)

    def _waits_on(self, waiter: _Waiter) -> bool:
        """Whether ``waiter``, which waited as long as it may and was not admitted, waits on instead (no)."""
        return False

    def _waited_out(self, waiter: _Waiter) -> None:
        """The waiter waited as long as it may and was not admitted: refused."""
        self._abandon(waiter)
        raise self._refuse("max_wait", self._clock())

    def _abandon(self, waiter: _Waiter) -> None:
        """The waiter gave up (timed out or its caller went away): leave the queue, or give back its slot."""
        if waiter.future.done():
            self.release()  # admitted in the same instant: the slot is ours to give back
            return
        waiter.future.cancel()
        self._queue.remove(waiter)

    def _admit_waiters(self) -> None:
        while self._queue and self.in_flight < self.limit:
            waiter = self._queue.popleft()
            now = self._clock()
            self.in_flight += 1
            self.admitted_from_queue += 1
            self._admitted_from_queue.append(now)
            self._observe(now - waiter.since, now)
            waiter.future.set_result(None)

    def _observe(self, sojourn_s: float, now: float) -> None:
        """CoDel's state from one wait: below target resets it; above it for a whole interval while the queue
        grew (more joined it than left it), refuse arrivals.

        A queue that stands but does not grow is a closed crowd waiting its turn (a flash sale's buyers, each
        starting the next step when the last one is answered): refusing them adds no capacity, it only turns
        buyers away, and ``max_wait`` still bounds their wait. A queue that grows is arrivals outrunning the
        mesh, and waiting longer would only add delay.
        """
        if sojourn_s < self.policy.target_s:
            self._above_since = None
            self.dropping = False
        elif self._above_since is None:
            self._start_interval(now)
        elif now - self._above_since >= self.policy.interval_s:
            joined = self.queued - self._since_counts[0]
            left = self.admitted_from_queue - self._since_counts[1]
            if joined > max(_GROWING * left, left + 1):
                self.dropping = True
            elif not self.dropping:
                self._start_interval(now)  # standing, not growing: judge the next interval afresh

    def _start_interval(self, now: float) -> None:
        self._above_since = now
        self._since_counts = (self.queued, self.admitted_from_queue)

    def _expected_wait(self, position: int, now: float) -> float | None:
        """How long the ``position``-th in the queue would wait at the recent admission rate; None if unknown."""
        recent = self._admitted_from_queue
        while recent and now - recent[0] > _RATE_HORIZON_S:
            recent.popleft()
        if len(recent) < 2 or recent[-1] <= recent[0]:
            return None
        rate = (len(recent) - 1) / (recent[-1] - recent[0])
        return position / rate

    def _drain_s(self, now: float) -> float | None:
        """How long the queue needs to drain (what a refusal's Retry-After says); None if unknown."""
        return self._expected_wait(len(self._queue), now) if self._queue else None

    def _refuse(self, why: str, now: float) -> Overloaded:
        self.refused += 1
        ADMISSION_REFUSALS.labels(why).inc()
        drain = self._drain_s(now)
        retry = min(_MAX_RETRY_AFTER_S, max(_MIN_RETRY_AFTER_S, drain if drain is not None else self.policy.interval_s))
        return Overloaded(why, retry, self.in_flight, len(self._queue))


class _LatencyWindow:
    """Latencies of the calls finished since ``started``, and whether new work had to wait meanwhile."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.samples: list[float] = []
        self.pressed = False

    def add(self, latency_s: float) -> None:
        self.samples.append(latency_s)

    @property
    def count(self) -> int:
        return len(self.samples)

    def p90(self) -> float:
        """The 90th percentile (nearest rank): the slow calls, which a mean of many fast ones would hide."""
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)] if ordered else 0.0


# The one kind of new work a CheckoutAdmission's queue admits: a checkout.
_NEW_CHECKOUT = "checkout"


class _CheckoutQueue(Admission):
    """The queue of new checkouts of a :class:`CheckoutAdmission`: an :class:`Admission` whose slots are checkouts
    in progress, without CoDel.

    A new checkout is refused only on arrival, when its expected wait is longer than ``max_wait``: its place in
    the queue, plus the checkouts over a fallen limit that must end before the queue moves at all, over the rate
    checkouts end at, ``limit`` per how long the last ones held their slot (Little's law: steady from the first
    checkout that ended, where the gaps between the last few ends swing with their bursts; and known before a
    queue forms); before any has ended, a slot is held ``hold_s``. No queue standing or growing refuses
    anyone: a closed crowd (a flash sale's buyers, each starting anew only when its last call was answered) is at
    most as many as its buyers in the queue, so its expected wait stays bounded and it always queues; arrivals
    outrunning the mesh make the queue as long as ``max_wait`` of checkouts ending and are refused from there.
    A checkout that joined the queue is served: one still waiting after ``max_wait`` is let in past the limit
    (it joined on an estimate that said it would be, and a refusal now would cost it the whole wait).
    """

    def __init__(self, policy: AdmissionPolicy, *, clock: Callable[[], float], hold_s: float, room: int) -> None:
        super().__init__(policy, clock=clock)
        self._hold_s = hold_s
        self._room = room
        self._held: deque[float] = deque(maxlen=_RATE_SAMPLES)  # how long the last checkouts held their slot
        self.admitted_late = 0  # let in past the limit after waiting out max_wait

    def end(self, admitted_at: float) -> None:
        """The checkout admitted at ``admitted_at`` ended: its slot goes to the head of the queue, and how long it
        held it to the estimate of how fast slots free (:meth:`release` gives back a slot no checkout held)."""
        self._held.append(self._clock() - admitted_at)
        self.release()

    def _observe(self, sojourn_s: float, now: float) -> None:
        """No CoDel: a long wait alone refuses no checkout (only the expected wait on arrival does)."""

    def _expected_wait(self, position: int, now: float) -> float:
        held = sum(self._held) / len(self._held) if self._held else self._hold_s
        return (position + max(0, self.in_flight - self.limit)) * held / max(1, self.limit)

    def _drain_s(self, now: float) -> float:
        return self._expected_wait(len(self._queue), now)

    def _waited_out(self, waiter: _Waiter) -> None:
        waiter.future.cancel()
        self._queue.remove(waiter)
        self.in_flight += 1
        self.admitted_from_queue += 1
        self.admitted_late += 1

    def _waits_on(self, waiter: _Waiter) -> bool:
        """Let in past the limit only below the room: with as many checkouts in progress, their calls would meet the
        services' cap, where work under way is refused. It waits on, still in its place, for the room to have
        space (:meth:`_admit_waiters`) or the limit to admit it, whichever comes first: served, never refused."""
        if self.in_flight < self._room:
            return False
        waiter.late = True
        return True

    def _admit_waiters(self) -> None:
        super()._admit_waiters()
        while self._queue and self._queue[0].late and self.in_flight < self._room:
            waiter = self._queue.popleft()
            self.in_flight += 1
            self.admitted_from_queue += 1
            self.admitted_late += 1
            waiter.future.set_result(None)


@dataclass(frozen=True)
class CheckoutPolicy:
    """How a gateway admits new checkouts by the checkouts it has in progress (:class:`CheckoutAdmission`)."""

    # Checkouts in progress from which a new one waits in the queue; 0 admits everything at once.
    limit: int = 16
    # How far the adaptive limit may rise; 0: twice ``limit`` (what checkout's own admission rises to, so the
    # CreateCart of a checkout admitted here seldom waits there).
    max_limit: int = 0
    # Calls in flight at which any call is refused, work under way too; 0: 8 x ``limit``.
    call_cap: int = 0
    # Checkouts in progress past which none that waited out ``max_wait`` is let in past the limit (it waits on for
    # room); 0: ``cap`` / 2. Set it to half the services' own cap on calls in flight (a checkout may have two in
    # flight), so the calls of checkouts admitted here never meet that cap, where work under way would be refused.
    max_in_progress: int = 0
    # A checkout with no call for this long is over as far as admission goes (its client walked away); before
    # any checkout ended, one is expected to hold its slot this long.
    idle_s: float = 3.0
    # A new checkout whose expected wait in the queue is longer than this is refused on arrival.
    max_wait_s: float = 5.0
    # The limit adapts (AIMD) so 90 % of the calls of checkouts in progress finish within this; 0: fixed.
    latency_target_s: float = 2.5

    def __post_init__(self) -> None:
        if self.limit < 0 or self.max_limit < 0 or self.call_cap < 0 or self.max_in_progress < 0:
            raise ValueError("limit, max_limit, call_cap and max_in_progress must not be negative")
        if self.max_limit and self.max_limit < self.limit:
            raise ValueError("max_limit must be at least limit")
        if self.idle_s <= 0:
            raise ValueError("idle_s must be > 0")
        if self.max_wait_s <= 0:
            raise ValueError("max_wait_s must be > 0")

    @property
    def cap(self) -> int:
        """Calls in flight at which every call is refused."""
        return self.call_cap or 8 * self.limit

    @property
    def room(self) -> int:
        """Checkouts in progress past which none is let in past the limit."""
        return self.max_in_progress or max(1, self.cap // _CALLS_PER_CHECKOUT)

    def queue_policy(self) -> AdmissionPolicy:
        """The queue of new checkouts: an :class:`Admission` whose slots are checkouts in progress."""
        return AdmissionPolicy(
            limit=self.limit,
            new_work=frozenset({_NEW_CHECKOUT}),
            target_s=self.max_wait_s,  # no CoDel (_CheckoutQueue): its target is never consulted
            max_wait_s=self.max_wait_s,
            latency_target_s=self.latency_target_s,
            ceiling=self.max_limit or 2 * self.limit,
        )


@dataclass(eq=False)
class _Checkout:
    calls: int  # calls of it in flight
    last: float  # when a call of it last started or ended
    since: float  # when it was admitted


@dataclass(eq=False)
class Ticket:
    """One call through :class:`CheckoutAdmission`: hand it back to :meth:`CheckoutAdmission.leave`."""

    key: str | None  # the checkout it belongs to (the caller's token subject); None: not known (yet)
    new: bool  # it was admitted as a new checkout, taking a slot
    started: float
    tracked: bool = False  # it counts as a call of a checkout in progress


class CheckoutAdmission:
    """New checkouts admitted by the checkouts in progress, at a gateway (one instance per process, no locking).

    A call-in-flight limit cannot see a checkout between two of its calls, so it lets more checkouts in than it
    means, and their later calls pile up (what the gateway had: 37 % of the mesh's maximum completed at 10x
    overload, refusals after seconds). Here a slot is a **checkout in progress**: taken when a new checkout is
    admitted (a guest token, or a new cart by a caller with none in progress) and given back when it ends: its
    ConfirmCheckout answered, any of its calls answered with an error (a client mostly gives up there: sold
    out; one that carries on is still served, only no longer counted), or no call of it for ``idle_s`` (the
    client walked away; a call in flight keeps it alive). New checkouts beyond the limit wait in the queue,
    FIFO, and are refused only on arrival, when their expected wait is over ``max_wait``, so the refusal is fast
    and carries Retry-After; one that joined is served: past ``max_wait`` it is let in past the limit, but only while
    the checkouts in progress are fewer than ``room`` (half the services' cap on calls, so the calls of the
    checkouts admitted here, two in flight each at most, never meet it); otherwise it waits on for room. The limit
    adapts (AIMD) on the latency of the calls of
    checkouts in progress, from ``limit`` up to ``max_limit``.

    A later call is tied to its checkout by its caller's token subject (verified anyway, no I/O): a dict lookup
    and a move in an ordered dict per call, which is also how idle checkouts are found (the least recently
    touched first). A guest's checkout is admitted before its subject exists and bound to it when the token is
    minted (:meth:`leave` with ``key``). Work under way (any call of a checkout in progress, or of a caller
    with none: webhooks never come here) is never queued or refused for new checkouts; every call is refused
    only at the call cap (:attr:`call_cap`), which grows with the checkouts in progress.
    """

    def __init__(self, policy: CheckoutPolicy, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self.queue = _CheckoutQueue(policy.queue_policy(), clock=clock, hold_s=policy.idle_s, room=policy.room)
        self._progress: OrderedDict[str, _Checkout] = OrderedDict()
        self._timer: asyncio.TimerHandle | None = None
        self.calls_in_flight = 0
        # Guest-token requests (new checkouts before they have a subject), counted apart: see call_started.
        self.arrivals_in_flight = 0
        self._arrivals_waiting = 0

    @property
    def in_progress(self) -> int:
        """Checkouts admitted and not over (a guest's before its token is minted included)."""
        return self.queue.in_flight

    @property
    def limit(self) -> int:
        return self.queue.limit

    @property
    def waiting(self) -> int:
        return self.queue.waiting

    def tracks(self, key: str) -> bool:
        return key in self._progress

    def call_started(self, *, arrival: bool = False) -> None:
        """Any call: refused (:class:`Overloaded`, "hard_limit") at :attr:`call_cap` calls in flight, new checkouts
        waiting in the queue not counted (they do nothing while they wait, and they must not push the calls of
        checkouts under way over the cap).

        ``arrival``: a guest token's request, a new checkout by definition, which has its own cap (the policy's). A
        flood of them, still on their way to the queue (authenticated, rate-limited) on a saturated gateway, so
        never pushes the calls of checkouts under way over theirs: those are not refused to make room for new
        carts."""
        if arrival:
            if self.policy.limit > 0 and self.arrivals_in_flight - self._arrivals_waiting >= self.policy.cap:
                raise self.queue.refusal("hard_limit")
            self.arrivals_in_flight += 1
            return
        waiting = self.queue.waiting - self._arrivals_waiting
        if self.policy.limit > 0 and self.calls_in_flight - waiting >= self.call_cap:
            raise self.queue.refusal("hard_limit")
        self.calls_in_flight += 1

    @property
    def call_cap(self) -> int:
        """Calls in flight of checkouts under way at which one is refused: the policy's cap (``call_cap``, or 8 x
        ``limit``), or twice the checkouts in progress when that is more. A checkout that waited out ``max_wait``
        is let in past the limit, as promised, and under a sustained overload such checkouts add up (154 in
        progress at a limit of 32 in a 10x run); a fixed cap then refused their calls, work under way, to make
        room for nothing. Twice: a client may have a second call in flight, not a flood of them."""
        return max(self.policy.cap, _CALLS_PER_CHECKOUT * self.in_progress)

    def call_ended(self, *, arrival: bool = False) -> None:
        if arrival:
            self.arrivals_in_flight -= 1
        else:
            self.calls_in_flight -= 1

    async def enter(self, key: str | None, *, new_work: bool) -> Ticket:
        """A call of the checkout ``key`` (None: a guest's, before its token) starts.

        A call of a checkout in progress, or any call not ``new_work``, goes at once. New work of a caller
        with no checkout in progress is a new checkout: admitted now, after a wait in the queue, or refused
        with :class:`Overloaded`.
        """
        now = self._clock()
        self.expire(now)
        entry = self._progress.get(key) if key is not None else None
        if entry is not None:
            entry.calls += 1
            entry.last = now
            self._progress.move_to_end(key)  # type: ignore[arg-type]
            return Ticket(key, new=False, started=now, tracked=True)
        if not new_work:
            return Ticket(key, new=False, started=now)
        if self.queue.in_flight >= self.queue.limit > 0:
            self._arm()  # the queue waits for checkouts to end, idle ones too
        if key is None:
            self._arrivals_waiting += 1  # call_started counts a guest's wait apart from other new checkouts'
            try:
                await self.queue.acquire(_NEW_CHECKOUT)
            finally:
                self._arrivals_waiting -= 1
            return Ticket(None, new=True, started=self._clock())
        await self.queue.acquire(_NEW_CHECKOUT)
        now = self._clock()
        entry = self._progress.get(key)
        if entry is not None:  # the same caller's other new cart got in first: one checkout, one slot
            self.queue.release()
            entry.calls += 1
            entry.last = now
            self._progress.move_to_end(key)
            return Ticket(key, new=False, started=now, tracked=True)
        self._progress[key] = _Checkout(calls=1, last=now, since=now)
        return Ticket(key, new=True, started=now, tracked=True)

    def leave(self, ticket: Ticket, *, ended: bool, key: str | None = None) -> None:
        """The call of ``ticket`` was answered; ``ended``: its checkout is over (ConfirmCheckout answered, an
        error, a guest token not minted). ``key`` binds a new guest checkout to the subject just minted."""
        now = self._clock()
        key = ticket.key if ticket.key is not None else key
        if ticket.tracked:
            self.queue.sample(now - ticket.started)
        entry = self._progress.get(key) if key is not None else None
        if ticket.new and ticket.key is None:  # a guest's checkout: bind it, or give its slot back
            if ended or key is None or entry is not None:
                self.queue.release()
            else:
                self._progress[key] = _Checkout(calls=0, last=now, since=ticket.started)
            return
        if entry is None or not ticket.tracked:
            return  # not counted (or already over: ended by another call, or idle)
        if ended:
            del self._progress[key]  # type: ignore[arg-type]
            self.queue.end(entry.since)
            return
        entry.calls -= 1
        entry.last = now
        self._progress.move_to_end(key)  # type: ignore[arg-type]

    def expire(self, now: float | None = None) -> int:
        """End the checkouts with no call in flight and none for ``idle_s``; returns how many."""
        now = self._clock() if now is None else now
        horizon = now - self.policy.idle_s
        progress = self._progress
        ended = 0
        while progress:
            key, entry = next(iter(progress.items()))
            if entry.last > horizon:
                break
            if entry.calls > 0:  # a call of it is in flight (a slow one): not idle
                entry.last = now
                progress.move_to_end(key)
                continue
            del progress[key]
            self.queue.end(entry.since)
            ended += 1
        return ended

    def _arm(self) -> None:
        """While new checkouts wait, end idle ones on time even when no call comes to do it."""
        if self._timer is not None or not self._progress:
            return
        oldest = next(iter(self._progress.values())).last
        delay = max(0.05, oldest + self.policy.idle_s - self._clock())
        self._timer = asyncio.get_running_loop().call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.expire()
        if self.queue.waiting:
            self._arm()
