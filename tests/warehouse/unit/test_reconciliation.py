from __future__ import annotations

import io

import pytest

from warehouse.model.reconciliation import Problem, ReconcileReport, ReconcileStatus, StockAudit, with_problems
from warehouse.reconcile import EXIT_CODES, EXIT_FAILED, format_report, main

pytestmark = pytest.mark.unit

LEAK = StockAudit("A", "w1", on_hand=10, reserved=5, active_reserved=3)
SHORT = StockAudit("B", "w1", on_hand=10, reserved=1, active_reserved=4)
OVERSOLD = StockAudit("C", "w2", on_hand=2, reserved=0, active_reserved=4)
FINE = StockAudit("D", "w1", on_hand=3, reserved=3, active_reserved=3)


def test_problems_name_each_broken_rule() -> None:
    assert (LEAK.drift, LEAK.problems) == (2, (Problem.RESERVED_DRIFT,))
    assert (SHORT.drift, SHORT.problems) == (-3, (Problem.RESERVED_DRIFT,))
    assert OVERSOLD.problems == (Problem.RESERVED_DRIFT, Problem.OVERSOLD)
    assert FINE.problems == ()
    broken = StockAudit("E", "w1", on_hand=-1, reserved=-2, active_reserved=0)
    assert broken.problems == (Problem.RESERVED_DRIFT, Problem.NEGATIVE_ON_HAND, Problem.NEGATIVE_RESERVED)
    assert StockAudit("F", "w1", 1, 3, 1).problems == (Problem.RESERVED_DRIFT, Problem.RESERVED_OVER_ON_HAND)


def test_only_rows_whose_reservations_fit_on_hand_are_repairable() -> None:
    assert LEAK.repairable and SHORT.repairable and FINE.repairable
    assert not OVERSOLD.repairable
    assert not StockAudit("E", "w1", on_hand=-1, reserved=0, active_reserved=0).repairable


def test_status_is_the_worst_outcome() -> None:
    assert ReconcileReport(4, ()).status is ReconcileStatus.CLEAN
    assert ReconcileReport(4, (LEAK, SHORT)).status is ReconcileStatus.DRIFT
    assert ReconcileReport(4, (LEAK, SHORT), (LEAK,)).status is ReconcileStatus.DRIFT
    assert ReconcileReport(4, (LEAK, SHORT), (LEAK, SHORT)).status is ReconcileStatus.REPAIRED
    assert ReconcileReport(4, (LEAK, OVERSOLD), (LEAK,)).status is ReconcileStatus.OVERSOLD
    assert [EXIT_CODES[s] for s in ReconcileStatus] == [2, 1, 0, 0]


def test_with_problems_keeps_flagged_rows_in_lock_order() -> None:
    assert with_problems([OVERSOLD, FINE, SHORT, LEAK]) == [LEAK, SHORT, OVERSOLD]


def test_report_table_says_what_was_done_per_row() -> None:
    text = format_report(ReconcileReport(7, (LEAK, OVERSOLD), (LEAK,)), repair=True)
    header, leak, oversold, verdict = text.splitlines()
    assert header.split() == ["sku", "warehouse", "on_hand", "reserved", "active", "drift", "problems", "action"]
    assert leak.split()[:7] == ["A", "w1", "10", "5", "3", "+2", "reserved_drift"]
    assert leak.endswith("repaired: reserved 5 -> 3")
    assert "reserved_drift,oversold" in oversold and oversold.endswith("needs an operator (on_hand untouched)")
    assert verdict == "checked 7 stock row(s): 1 row(s) oversold or unrepairable"
    assert format_report(ReconcileReport(7, (SHORT,)), repair=False).splitlines()[1].endswith("run with --repair")
    assert format_report(ReconcileReport(7, ()), repair=False) == "checked 7 stock row(s): no drift"


def test_cli_without_a_database_or_with_bad_flags_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KASSA_DATABASE_URL", raising=False)
    out = io.StringIO()

    assert main([], out=out) == EXIT_FAILED
    assert "KASSA_DATABASE_URL" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad:
        main(["--fix"], out=out)
    assert bad.value.code == EXIT_FAILED
    assert out.getvalue() == ""


def test_cli_reports_an_unreachable_database_as_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--database-url", "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"])
    assert code == EXIT_FAILED
    assert "the check failed: OperationalError" in capsys.readouterr().err
