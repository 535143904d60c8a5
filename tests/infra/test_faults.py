"""Fault points: off by default, exact when configured, reproducible by seed, and a crash really ends the process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from infra import faults

pytestmark = pytest.mark.unit

POINT = "checkout.confirm.after_authorize"


@pytest.fixture(autouse=True)
def _no_faults_after() -> Iterator[None]:
    yield
    faults.configure(None)


def test_nothing_fires_when_unset() -> None:
    assert faults.load({}) is None
    assert faults.hit(POINT) is None


def test_error_raises_at_the_named_point_only() -> None:
    faults.configure(f"{POINT}=error")
    assert faults.hit("checkout.confirm.before_authorize") is None
    with pytest.raises(faults.InjectedFault) as raised:
        faults.hit(POINT)
    assert raised.value.point == POINT


def test_a_limit_fires_that_many_times_then_never() -> None:
    faults.configure(f"{POINT}=error#2")
    for _ in range(2):
        with pytest.raises(faults.InjectedFault):
            faults.hit(POINT)
    assert faults.hit(POINT) is None


def test_a_pattern_covers_every_matching_point_and_other_kinds_go_to_the_caller() -> None:
    faults.configure("sandbox.webhook=duplicate,*.outbox.after_publish=error")
    rule = faults.hit("sandbox.webhook")
    assert rule is not None and rule.kind == "duplicate"
    for service in ("order", "payment"):
        with pytest.raises(faults.InjectedFault):
            faults.hit(f"{service}.outbox.after_publish")


def test_the_same_seed_draws_the_same_faults() -> None:
    def draws(seed: int) -> list[bool]:
        faults.configure(f"{POINT}=drop@0.3", seed)
        return [faults.hit(POINT) is not None for _ in range(200)]

    first = draws(7)
    assert first == draws(7)
    assert first != draws(8)
    assert 30 < sum(first) < 90  # about 30% of 200


def test_a_restarted_process_draws_anew_and_each_generation_replays() -> None:
    def draws(generation: str) -> list[bool]:
        env = {"KASSA_FAULTS": f"{POINT}=drop@0.3", "KASSA_FAULTS_SEED": "7", "KASSA_FAULTS_GENERATION": generation}
        faults.load(env)
        return [faults.hit(POINT) is not None for _ in range(200)]

    fresh = draws("0")
    assert fresh == draws("")  # no generation: a process nobody restarted
    assert draws("1") != fresh
    assert draws("1") == draws("1")


async def test_delay_waits_and_carries_on() -> None:
    faults.configure(f"{POINT}=delay:0.01")
    assert await faults.ahit(POINT) is None
    assert faults.configure(f"{POINT}=delay:0.01").rules[0].seconds == 0.01  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "spec",
    [
        "checkout.confirm.after_authorise=crash",  # a typo names no point
        f"{POINT}",  # no kind
        f"{POINT}=error@1.5",
        f"{POINT}=error#0",
        f"{POINT}=delay:soon",
    ],
)
def test_a_bad_rule_refuses_to_load(spec: str) -> None:
    with pytest.raises(faults.FaultConfigError):
        faults.load({"KASSA_FAULTS": spec})


@pytest.mark.parametrize("name", ["KASSA_FAULTS_SEED", "KASSA_FAULTS_GENERATION"])
def test_a_bad_seed_refuses_to_load(name: str) -> None:
    with pytest.raises(faults.FaultConfigError, match=name):
        faults.load({"KASSA_FAULTS": f"{POINT}=error", name: "x"})


def test_crash_ends_the_process_with_its_own_exit_code() -> None:
    code = f"from infra import faults; faults.hit({POINT!r}); print('survived')"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"KASSA_FAULTS": f"{POINT}=crash", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == faults.CRASH_EXIT_CODE
    assert "survived" not in result.stdout
    assert f"crash at {POINT}" in result.stderr
