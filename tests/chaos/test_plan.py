"""The chaos run's pure parts: a seed fixes the schedule, rules name real fault points, fired faults are counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.faultlog import count_fired
from chaos.plan import KILLABLE, due, make_plan
from chaos.report import replay_command
from infra.faults import Plan as FaultPlan

pytestmark = pytest.mark.unit


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    assert make_plan(42, 200) == make_plan(42, 200)
    assert make_plan(42, 200) != make_plan(43, 200)


def test_every_process_is_killed_and_every_outside_fault_is_planned_within_the_run() -> None:
    plan = make_plan(5, 2000)
    kinds = {a.kind for a in plan.actions}
    assert kinds == {"kill", "redis_flush", "redis_restart", "nats_restart", "pg_terminate"}
    assert set(KILLABLE) <= {a.target for a in plan.actions if a.kind == "kill"}
    assert list(plan.actions) == sorted(plan.actions)
    assert all(0 < a.at < 1 for a in plan.actions)


def test_the_rules_load_in_infra_faults_and_crashes_are_bounded() -> None:
    plan = make_plan(9, 200)
    parsed = FaultPlan.parse(plan.faults, plan.seed)
    assert parsed.rules
    assert all(rule.limit == 1 for rule in parsed.rules if rule.kind == "crash")
    assert {"duplicate", "reorder"} <= {rule.kind for rule in parsed.rules if rule.pattern == "sandbox.webhook"}
    assert plan.env() == {"KASSA_FAULTS": plan.faults, "KASSA_FAULTS_SEED": "9"}
    assert make_plan(9, 200, faults=False).env() == {}


def test_actions_fall_due_by_the_share_of_checkouts_done() -> None:
    actions = make_plan(3, 1000).actions
    assert due(actions, 0.0, 0) == []
    assert due(actions, 1.0, 0) == list(actions)
    first = actions[0]
    assert due(actions, first.at, 0)[0] == first
    assert first not in due(actions, 1.0, 1)


def test_fired_faults_are_counted_from_the_logs(tmp_path: Path) -> None:
    (tmp_path / "checkout.log").write_text(
        "kassa fault: crash at checkout.confirm.after_authorize (pid 12)\n"
        '{"level": "warning", "msg": "fault: error at payment.capture.before_provider"}\n'
        '{"level": "warning", "msg": "fault: delay 1.500s at sandbox.authorize"}\n'
        '{"level": "warning", "msg": "fault: duplicate at sandbox.webhook"}\n'
        "nothing to see\n"
    )
    assert count_fired([tmp_path, tmp_path / "missing"]) == {
        ("crash", "checkout.confirm.after_authorize"): 1,
        ("error", "payment.capture.before_provider"): 1,
        ("delay", "sandbox.authorize"): 1,
        ("duplicate", "sandbox.webhook"): 1,
    }


def test_the_replay_command_pins_the_seed_and_keeps_the_other_options() -> None:
    assert replay_command(["--checkouts", "200", "--seed", "7"], 7) == "python -m chaos --seed 7 --checkouts 200"
    assert replay_command(["--checkouts", "200"], 11) == "python -m chaos --seed 11 --checkouts 200"


def test_a_crash_rule_first_fires_late_in_a_process_life_so_restarts_do_not_loop() -> None:
    checkouts = 2000
    plan = make_plan(4242, checkouts)  # its after_confirm_stock draws jump from pass 29 past the window
    crashes = [rule for rule in FaultPlan.parse(plan.faults, plan.seed).rules if rule.kind == "crash"]
    assert crashes
    for rule in crashes:
        fresh = FaultPlan.parse(f"{rule.pattern}=crash@{rule.probability}#1", plan.seed)
        first = next((i for i in range(1, checkouts + 1) if fresh.draw(rule.pattern)), None)
        assert first is None or first >= checkouts // 8, (rule.pattern, first)
