"""kassa check's money rule (§4.3) on snapshots: a sold order keeps its total, less what Kassa refunded of it."""

from __future__ import annotations

from devstack.check import PaymentRow, Snapshot, _money_checks


def _snapshot(received: int, refunded_at_provider: int, refunded_by_kassa: int) -> Snapshot:
    return Snapshot(
        orders={"o1": ("s1", "CONFIRMED", "card", 2806)},
        payments=[PaymentRow("p1", "PARTIALLY_REFUNDED", "o1", "pi_1", refunded_by_kassa)],
        intents=[
            {
                "id": "pi_1",
                "status": "succeeded",
                "amount_received": received,
                "amount_refunded": refunded_at_provider,
                "metadata": {"kassa_session_id": "s1", "kassa_order_id": "o1"},
            }
        ],
    )


def _kept_finding(snap: Snapshot):
    (finding,) = [f for f in _money_checks(snap) if f.name == "no_capture_without_order"]
    return finding


def test_a_partial_refund_of_a_sold_order_keeps_the_rest_legitimately() -> None:
    assert _kept_finding(_snapshot(2806, 100, 100)).passed


def test_a_sold_order_short_of_its_total_without_a_refund_fails() -> None:
    finding = _kept_finding(_snapshot(2706, 0, 0))
    assert not finding.passed
    assert any("captured 2706 of 2806" in line for line in finding.offenders)


def test_money_refunded_at_the_provider_that_kassa_never_recorded_fails() -> None:
    assert not _kept_finding(_snapshot(2806, 100, 0)).passed
