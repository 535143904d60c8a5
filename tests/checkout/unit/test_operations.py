"""The pure parts of the operators' tools: what a DLQ payload shows, page tokens, and funnel rates."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from checkout.biz.checkout.operate import decode_page_token, page_token
from checkout.model.compensation import FailedCompensation, Operation
from checkout.model.funnel import Funnel
from checkout.service.checkout_admin_service import public_payload
from kernel.errors import InvalidArgument

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_a_payload_shows_no_personal_field_and_redacts_free_text() -> None:
    payload = {
        "payment_id": "p-1",
        "customer_email": "ada@example.com",
        "reason": "refused for ada@example.com",
        "draft": {"shipping_address": {"line1": "12 Analytical St"}, "lines": [{"sku": "KB-1", "notes": "x"}]},
    }
    shown = public_payload(payload)
    assert shown["payment_id"] == "p-1"
    assert "customer_email" not in shown and "shipping_address" not in shown["draft"]
    assert shown["draft"]["lines"] == [{"sku": "KB-1"}]
    assert "ada@example.com" not in str(shown)


def test_a_page_token_round_trips_and_anything_else_names_the_field() -> None:
    cid = "6f1c2b9e-4f7a-4d2c-9a51-0c1d2e3f4a5b"
    entry = FailedCompensation(cid, "s-1", Operation.CART_CLEANUP, {}, 0, "pending", "", created_at=T0)
    assert decode_page_token(page_token(entry)) == (T0, cid)
    not_an_id = page_token(
        FailedCompensation("c-1", "s-1", Operation.CART_CLEANUP, {}, 0, "pending", "", created_at=T0)
    )
    for bad in ("", "zz", "e30", "x" * 300, not_an_id):
        with pytest.raises(InvalidArgument) as err:
            decode_page_token(bad)
        assert err.value.field == "page_token"


def test_funnel_rates() -> None:
    funnel = Funnel(T0, T0, 10, 8, 3, {"PAYMENT_DECLINED": 1})
    assert (funnel.checkouts_failed, funnel.failure_rate) == (1, 0.25)
    assert Funnel(T0, T0).failure_rate == 0.0
