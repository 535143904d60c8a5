"""Fault injection at named points, for chaos runs and for tests that must hit one exact moment.

Off unless configured: ``KASSA_FAULTS`` lists rules, comma-separated, each
``<point>=<kind>[:<arg>][@<probability>][#<limit>]``::

    KASSA_FAULTS="checkout.confirm.after_authorize=crash@0.05,payment.capture.before_provider=error@0.1"

* ``point`` is one of :data:`POINTS`, or a shell-style pattern (``*.outbox.after_publish``) that
  matches at least one of them; a rule that names no known point refuses to load, so a typo never
  silently turns a chaos run into a calm one.
* ``kind``: ``crash`` ends the process at once with :data:`CRASH_EXIT_CODE` (``os._exit``: no
  cleanup, no flush, no rollback beyond what the servers do for a dead client), ``error`` raises
  :class:`InjectedFault`, ``delay:<seconds>`` waits and then carries on. Any other kind (the sandbox
  provider's ``duplicate`` and ``reorder`` for webhooks, say) is returned to the caller to act on.
* ``probability`` (default 1) is drawn from a generator seeded by ``KASSA_FAULTS_SEED`` (default 0)
  and the point's name, so the same calls at one point draw the same faults in every run. A process a
  supervisor restarted draws anew: ``devstack.mesh`` sets ``KASSA_FAULTS_GENERATION`` to its restart number,
  which is mixed into the seed (a crash drawn early would otherwise recur in every restart: a crash loop
  the schedule never meant).
* ``limit`` caps how many times the rule fires in this process (``crash#1``: the first time only).

When nothing is configured, :func:`hit` and :func:`ahit` return after one comparison.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import random
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "CRASH_EXIT_CODE",
    "POINTS",
    "Fault",
    "FaultConfigError",
    "InjectedFault",
    "Plan",
    "ahit",
    "configure",
    "hit",
    "load",
]

log = logging.getLogger("kassa.faults")

# A process that died at a fault point exits with this code, so a supervisor's log tells it from a real crash.
CRASH_EXIT_CODE = 86

# ConfirmCheckout's steps (DESIGN.md §3), each with a before_ and an after_ point.
CONFIRM_STEPS = (
    "validate",
    "recalculate",
    "reserve_promotion",
    "extend_reservations",
    "authorize",
    "create_order",
    "confirm_stock",
    "capture",
    "finalize",
)
_OUTBOX_SERVICES = ("checkout", "order", "payment", "warehouse", "promotion")
_CONSUMERS = (
    "checkout-payments",
    "order-payments",
    "payment-order-events",
    "warehouse-order-events",
    "promotion-order-events",
    "notification-orders",
    "notification-payments",
    "payment-fulfilment",
)
_PAYMENT_OPS = ("authorize", "capture", "void", "refund")

POINTS: frozenset[str] = frozenset(
    [f"checkout.confirm.{when}_{step}" for step in CONFIRM_STEPS for when in ("before", "after")]
    # Between JetStream's PubAck and marking the row sent.
    + [f"{service}.outbox.after_publish" for service in _OUTBOX_SERVICES]
    # Between a consumer's effect and its ack.
    + [f"consumer.{name}.after_effect" for name in _CONSUMERS]
    # Around each provider call of the payment service; after_provider is before its result is committed.
    + [f"payment.{op}.{when}_provider" for op in _PAYMENT_OPS for when in ("before", "after")]
    # The sandbox provider's own behaviour: its API answers (error, delay) and its webhooks (duplicate, reorder, delay).
    + [f"sandbox.{op}" for op in _PAYMENT_OPS]
    + ["sandbox.webhook"]
)


class FaultConfigError(ValueError):
    """``KASSA_FAULTS`` is malformed or names no known point."""


class InjectedFault(RuntimeError):
    """Raised by an ``error`` rule: a stand-in for any failure at that point."""

    def __init__(self, point: str) -> None:
        super().__init__(f"fault injected at {point}")
        self.point = point


@dataclass
class Fault:
    """One rule: at points matching ``pattern``, do ``kind`` with ``probability``, at most ``limit`` times."""

    pattern: str
    kind: str
    arg: str = ""
    probability: float = 1.0
    limit: int | None = None
    fired: int = 0

    @property
    def seconds(self) -> float:
        """The argument of ``delay:<seconds>``."""
        return float(self.arg or 0)


@dataclass
class Plan:
    rules: list[Fault]
    seed: int = 0
    generation: int = 0
    _rngs: dict[str, random.Random] = field(default_factory=dict)
    _by_point: dict[str, list[Fault]] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str, seed: int = 0, generation: int = 0) -> Plan:
        rules = [_parse_rule(part.strip()) for part in spec.split(",") if part.strip()]
        return cls(rules, seed, generation)

    def draw(self, point: str) -> Fault | None:
        """The rule that fires at ``point`` now, if any (the first matching rule whose draw succeeds)."""
        rules = self._by_point.get(point)
        if rules is None:
            rules = self._by_point[point] = [r for r in self.rules if fnmatch.fnmatchcase(point, r.pattern)]
        for rule in rules:
            if rule.limit is not None and rule.fired >= rule.limit:
                continue
            if rule.probability < 1.0:
                rng = self._rngs.get(point)
                if rng is None:
                    key = f"{self.seed}:{point}" if not self.generation else f"{self.seed}:{self.generation}:{point}"
                    rng = self._rngs[point] = random.Random(key)
                if rng.random() >= rule.probability:
                    continue
            rule.fired += 1
            return rule
        return None


def _parse_rule(text: str) -> Fault:
    pattern, sep, action = text.partition("=")
    pattern = pattern.strip()
    if not sep or not pattern or not action:
        raise FaultConfigError(f"KASSA_FAULTS: {text!r} is not <point>=<kind>[:<arg>][@<probability>][#<limit>]")
    if not any(fnmatch.fnmatchcase(point, pattern) for point in POINTS):
        raise FaultConfigError(f"KASSA_FAULTS: {pattern!r} names no fault point; known: {', '.join(sorted(POINTS))}")
    action, _, limit_text = action.partition("#")
    action, _, probability_text = action.partition("@")
    kind, _, arg = action.partition(":")
    try:
        probability = float(probability_text) if probability_text else 1.0
        limit = int(limit_text) if limit_text else None
        if kind == "delay":
            float(arg)
    except ValueError as exc:
        raise FaultConfigError(f"KASSA_FAULTS: {text!r}: {exc}") from exc
    if not kind:
        raise FaultConfigError(f"KASSA_FAULTS: {text!r} has no kind (crash, error, delay:<seconds>, ...)")
    if not 0.0 <= probability <= 1.0:
        raise FaultConfigError(f"KASSA_FAULTS: {text!r}: probability must be within 0..1")
    if limit is not None and limit < 1:
        raise FaultConfigError(f"KASSA_FAULTS: {text!r}: limit must be at least 1")
    return Fault(pattern, kind, arg, probability, limit)


@dataclass
class _Installed:
    """This process's plan; ``loaded`` is False until the environment was read (lazily, on the first hit)."""

    plan: Plan | None = None
    loaded: bool = False


_installed = _Installed()


def load(environ: Mapping[str, str] | None = None) -> Plan | None:
    """Read ``KASSA_FAULTS``, ``KASSA_FAULTS_SEED`` and ``KASSA_FAULTS_GENERATION`` (entry points call this at
    start-up to refuse a bad rule)."""
    env = os.environ if environ is None else environ
    spec = env.get("KASSA_FAULTS", "").strip()
    seed = _integer(env, "KASSA_FAULTS_SEED")
    generation = _integer(env, "KASSA_FAULTS_GENERATION")
    return configure(spec or None, seed, generation)


def _integer(env: Mapping[str, str], name: str) -> int:
    text = env.get(name, "").strip() or "0"
    try:
        return int(text)
    except ValueError as exc:
        raise FaultConfigError(f"{name} must be an integer, got {text!r}") from exc


def configure(spec: str | None, seed: int = 0, generation: int = 0) -> Plan | None:
    """Install a plan in this process (``None`` turns faults off); tests use it to hit one point."""
    plan = Plan.parse(spec, seed, generation) if spec else None
    _installed.plan, _installed.loaded = plan, True
    if plan is not None:
        log.warning("fault injection is ON: %s (seed %d, generation %d)", spec, seed, generation)
    return plan


def _draw(point: str) -> Fault | None:
    if not _installed.loaded:
        load()
    plan = _installed.plan
    return None if plan is None else plan.draw(point)


def _fire(point: str, rule: Fault) -> Fault | None:
    if rule.kind == "crash":
        # Written straight to the file descriptor: logging handlers may buffer, and nothing after this runs.
        os.write(2, f"kassa fault: crash at {point} (pid {os.getpid()})\n".encode())
        sys.stderr.flush()
        os._exit(CRASH_EXIT_CODE)
    if rule.kind == "error":
        log.warning("fault: error at %s", point)
        raise InjectedFault(point)
    log.warning("fault: %s at %s", f"delay {rule.seconds:.3f}s" if rule.kind == "delay" else rule.kind, point)
    return rule


def _fired(point: str) -> Fault | None:
    """The rule that fires at ``point`` now, after crashing or raising for it; ``None`` when nothing fires."""
    if _installed.loaded and _installed.plan is None:
        return None
    rule = _draw(point)
    return None if rule is None else _fire(point, rule)


def hit(point: str) -> Fault | None:
    """Pass a fault point in synchronous code: crash, raise, sleep, or return a caller-handled rule."""
    rule = _fired(point)
    if rule is None or rule.kind != "delay":
        return rule
    time.sleep(rule.seconds)
    return None


async def ahit(point: str) -> Fault | None:
    """:func:`hit` for coroutines: a delay sleeps without blocking the event loop."""
    rule = _fired(point)
    if rule is None or rule.kind != "delay":
        return rule
    await asyncio.sleep(rule.seconds)
    return None
