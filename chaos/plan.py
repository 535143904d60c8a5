"""The fault schedule of a run, fixed by its seed (pure: no I/O, no clock).

Two parts, both drawn from ``random.Random(seed)``:

* in-process faults, a ``KASSA_FAULTS`` rule list set on every process of the mesh (with
  ``KASSA_FAULTS_SEED`` = the seed): crashes and errors at a few of ConfirmCheckout's steps, between
  an outbox publish and its mark-sent, between a consumer's effect and its ack, around the payment
  service's provider calls; the sandbox provider's errors and latency, and its webhooks duplicated,
  reordered and late. Probabilities scale with the run's size so a run sees a handful of each, and
  crash rules carry a limit, so the mesh keeps making progress;
* outside actions at fixed points of the run's progress (the share of checkouts finished), not at
  wall-clock times, so a slow machine replays the same schedule: SIGKILL of every mesh process at
  least once, Redis FLUSHALL and a Redis restart, a NATS restart, Postgres backends terminated.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from infra.faults import CONFIRM_STEPS, POINTS
from infra.faults import Plan as FaultPlan

__all__ = ["ACTION_KINDS", "Action", "Plan", "make_plan"]

ACTION_KINDS = ("kill", "redis_flush", "redis_restart", "nats_restart", "pg_terminate")
KILLABLE = ("warehouse", "pricing", "promotion", "sandbox", "payment", "order", "checkout", "gateway")


def _named(prefix: str, suffix: str) -> tuple[str, ...]:
    """The middle part of every fault point ``<prefix>.<name>.<suffix>``: what infra.faults offers, in order."""
    return tuple(
        sorted(
            p[len(prefix) + 1 : -len(suffix) - 1]
            for p in POINTS
            if p.startswith(f"{prefix}.") and p.endswith(f".{suffix}")
        )
    )


_CONSUMERS = _named("consumer", "after_effect")
_PAYMENT_OPS = _named("payment", "before_provider")
_OUTBOX = tuple(sorted(p.split(".", 1)[0] for p in POINTS if p.endswith(".outbox.after_publish")))
# Actions happen between these shares of the run, leaving its end for the clients to finish in peace.
_FIRST, _LAST = 0.05, 0.85


@dataclass(frozen=True, order=True)
class Action:
    """Do ``kind`` (to ``target``) once ``at`` of the run's checkouts have finished."""

    at: float
    kind: str
    target: str = ""

    def describe(self) -> str:
        return f"{self.kind}({self.target})" if self.target else self.kind


@dataclass(frozen=True)
class Plan:
    seed: int
    faults: str  # KASSA_FAULTS
    actions: tuple[Action, ...]

    def env(self) -> dict[str, str]:
        return {"KASSA_FAULTS": self.faults, "KASSA_FAULTS_SEED": str(self.seed)} if self.faults else {}

    def rules(self) -> list[str]:
        return [r for r in self.faults.split(",") if r]


def _p(expected: float, hits: int) -> str:
    """A probability giving about ``expected`` fires over ``hits`` passes, as a short decimal."""
    return f"{min(1.0, expected / max(hits, 1)):.4g}"


def _first_fire(rule: str, point: str, seed: int, horizon: int) -> int | None:
    """On which pass of ``point`` a fresh process fires ``rule`` (infra.faults' own draws), within ``horizon``."""
    plan = FaultPlan.parse(rule, seed)
    for passes in range(1, horizon + 1):
        if plan.draw(point) is not None:
            return passes
    return None


def _crash(point: str, seed: int, checkouts: int) -> str:
    """A crash rule at ``point`` whose first crash falls late in a process's life, but within the run.

    ``#1`` bounds a rule per process, and every restarted process draws the same sequence again (the
    generator is seeded by the seed and the point), so a crash on an early pass would come back in every
    new process, a crash loop the run never meant. The draws are known in advance, and the pass of the
    first crash only moves later as the probability drops, so the probability is searched (bisection on
    its logarithm) for a first crash between an eighth and half of the run's passes; when the draws jump
    past that window, the rarer side is taken (a crash late in the run, or none), never an early one.
    """
    low, high = checkouts // 8, max(checkouts // 2, 1)
    lo, hi = -9.0, 0.0  # log10 of the probability
    rare = f"{point}=crash@1e-09#1"
    for _ in range(40):
        mid = (lo + hi) / 2
        rule = f"{point}=crash@{10**mid:.4g}#1"
        first = _first_fire(rule, point, seed, checkouts)
        if first is not None and low <= first <= high:
            return rule
        if first is None or first > high:
            lo, rare = mid, rule  # too rare: more likely
        else:
            hi = mid  # too early: less likely
    # No probability puts the first crash in the window (the draws jump past it): late or none, never early.
    return rare


def _fault_rules(rng: random.Random, seed: int, checkouts: int) -> list[str]:
    rules: list[str] = []
    steps = rng.sample(CONFIRM_STEPS, 4)
    for step in steps[:2]:
        when = rng.choice(("before", "after"))
        rules.append(_crash(f"checkout.confirm.{when}_{step}", seed, checkouts))
    for step in steps[2:]:
        when = rng.choice(("before", "after"))
        rules.append(f"checkout.confirm.{when}_{step}=error@{_p(4, checkouts)}")
    for service in rng.sample(_OUTBOX, 2):
        rules.append(_crash(f"{service}.outbox.after_publish", seed, checkouts))
    for consumer in rng.sample(_CONSUMERS, 2):
        rules.append(_crash(f"consumer.{consumer}.after_effect", seed, checkouts))
    for op in rng.sample(("authorize", "capture"), 1):
        rules.append(_crash(f"payment.{op}.after_provider", seed, checkouts))
    for op in rng.sample(_PAYMENT_OPS, 2):
        rules.append(f"payment.{op}.{rng.choice(('before', 'after'))}_provider=error@{_p(3, checkouts)}")
    # The provider misbehaving: errors and latency on its API, its webhooks duplicated, reordered and late.
    rules.append(f"sandbox.authorize=error@{_p(6, checkouts)}")
    rules.append(f"sandbox.capture=error@{_p(4, checkouts)}")
    rules.append(f"sandbox.{rng.choice(('authorize', 'capture'))}=delay:{rng.choice((1, 2, 3))}@{_p(8, checkouts)}")
    rules.append("sandbox.webhook=duplicate@0.1")
    rules.append("sandbox.webhook=reorder@0.05")
    rules.append("sandbox.webhook=delay:1.5@0.05")
    unknown = [r for r in rules if r.split("=", 1)[0] not in POINTS]
    if unknown:  # pragma: no cover - the lists above follow infra.faults.POINTS
        raise ValueError(f"no such fault points: {unknown}")
    return rules


def _actions(rng: random.Random, checkouts: int) -> list[Action]:
    def at() -> float:
        return round(rng.uniform(_FIRST, _LAST), 4)

    actions = [Action(at(), "kill", name) for name in KILLABLE]
    # One more kill per 500 checkouts, of the processes a checkout leans on most.
    actions += [
        Action(at(), "kill", rng.choice(("checkout", "payment", "order", "warehouse"))) for _ in range(checkouts // 500)
    ]
    actions += [Action(at(), "redis_flush") for _ in range(2)]
    actions += [Action(at(), "redis_restart"), Action(at(), "nats_restart")]
    actions += [Action(at(), "pg_terminate") for _ in range(2)]
    return sorted(actions)


def make_plan(seed: int, checkouts: int, *, faults: bool = True, actions: bool = True) -> Plan:
    """The schedule of a run of ``checkouts`` under ``seed``; the same arguments give the same plan."""
    rng = random.Random(seed)
    rules = _fault_rules(rng, seed, checkouts) if faults else []
    steps = _actions(random.Random(f"{seed}:actions"), checkouts) if actions else []
    return Plan(seed=seed, faults=",".join(rules), actions=tuple(steps))


def due(actions: Sequence[Action], done_share: float, fired: int) -> list[Action]:
    """The actions whose point the run has passed and that have not fired yet (``fired`` of them did)."""
    return [a for a in actions[fired:] if a.at <= done_share]
