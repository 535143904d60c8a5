"""infra.audit's pure parts: the request summary (masking, limits, hostile input), page tokens, queries."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.ext.asyncio import create_async_engine

from infra import audit
from kassa.audit.v1 import audit_service_pb2 as audit_pb
from kassa.common.v1 import address_pb2, money_pb2
from kassa.order.v1 import order_pb2
from kassa.order.v1 import order_service_pb2 as order_pb
from kassa.payment.v1 import payment_service_pb2 as pay_pb
from kassa.promotion.v1 import promotion_pb2
from kassa.promotion.v1 import promotion_service_pb2 as promo_pb
from kassa.warehouse.v1 import inventory_service_pb2 as inv_pb
from kernel.errors import InvalidArgument

pytestmark = pytest.mark.unit


def test_personal_data_and_secrets_are_redacted_but_an_address_keeps_its_country() -> None:
    request = order_pb.CreateOrderRequest(
        customer_id="cust-1",
        email="ada@example.com",
        notes="ring twice",
        payment_method="tok_visa",
        shipping_address=address_pb2.Address(name="Ada", line1="1 Main St", phone="+1 555", country_code="US"),
        lines=[order_pb2.OrderLine(sku="KB-1", name="Keyboard", quantity=2)],
    )

    summary = audit.summarize(request)

    assert summary["customer_id"] == "cust-1"
    assert summary["email"] == summary["notes"] == summary["payment_method"] == "<redacted>"
    assert summary["shipping_address"] == {
        "name": "<redacted>",
        "line1": "<redacted>",
        "phone": "<redacted>",
        "country_code": "US",
    }
    assert summary["lines"] == [{"sku": "KB-1", "name": "Keyboard", "quantity": "2"}]
    text = json.dumps(summary)
    assert "ada@example.com" not in text and "Main" not in text and "tok_visa" not in text


def test_personal_data_inside_free_text_is_masked_too() -> None:
    request = order_pb.CancelOrderRequest(
        order_id="o-1", reason="customer ada@example.com called from +44 20 7946 0958"
    )
    error = InvalidArgument("email", "bob@example.org is not deliverable")
    action = audit.AdminAction(actor="ops", actor_role="admin", action="x", request=audit.summarize(request))

    row = action.row(audit.Outcome.REFUSED, error)

    text = json.dumps(row)
    assert "ada@example.com" not in text and "7946 0958" not in text and "bob@example.org" not in text
    assert row["request"]["order_id"] == "o-1" and row["request"]["reason"].startswith("customer a***@example.com")
    assert row["reason"] == "INVALID_ARGUMENT"


def test_a_webhook_payload_and_signature_are_never_kept() -> None:
    summary = audit.summarize(
        pay_pb.HandleWebhookRequest(provider="sandbox", payload=b'{"email": "x@y.z"}', signature="t=1,v1=abc")
    )

    assert summary == {"provider": "sandbox", "payload": "<redacted>", "signature": "<redacted>"}


def test_hostile_input_is_stored_safely() -> None:
    request = inv_pb.SetStockRequest(
        items=[inv_pb.StockSetting(sku="a\x00b" + "x" * 5000, warehouse_id="w", on_hand=2**62) for _ in range(60)]
    )
    promotion = promotion_pb2.Promotion(code="C", type=99)
    promotion.starts_at.CopyFrom(Timestamp(seconds=10**13))

    summary = audit.summarize(request)
    promo = audit.summarize(promo_pb.CreatePromotionRequest(promotion=promotion))

    items = summary["items"]
    assert len(items) == 51 and items[-1] == "+10 more"
    assert "\x00" not in items[0]["sku"] and len(items[0]["sku"]) == 200 and items[0]["sku"].endswith("…")
    assert items[0]["on_hand"] == str(2**62)
    assert promo["promotion"]["type"] == 99  # an undefined enum number, as sent
    assert promo["promotion"]["starts_at"] == {"seconds": str(10**13), "nanos": 0}
    json.dumps(summary)  # what jsonb gets


def test_well_formed_timestamps_and_money_read_as_proto3_json() -> None:
    promotion = promotion_pb2.Promotion(code="C", amount_off=money_pb2.Money(currency_code="USD", amount_minor=500))
    promotion.ends_at.FromDatetime(datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC))

    summary = audit.summarize(promo_pb.CreatePromotionRequest(promotion=promotion))

    assert summary["promotion"]["ends_at"] == "2027-01-02T03:04:05Z"
    assert summary["promotion"]["amount_off"] == {"currency_code": "USD", "amount_minor": "500"}


def test_request_targets_are_the_ids_a_request_names() -> None:
    assert audit.request_targets(pay_pb.RefundPaymentRequest(order_id="o-1", idempotency_key="k")) == ["orders/o-1"]
    assert audit.request_targets(pay_pb.RefundPaymentRequest(payment_id="p-1")) == ["payments/p-1"]
    assert audit.request_targets(pay_pb.RefundPaymentRequest(order_id="o\x00")) == []
    assert audit.request_targets(inv_pb.SetStockRequest()) == []


def test_page_tokens_round_trip_and_anything_else_is_refused_by_name() -> None:
    at = datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=UTC)
    assert audit.decode_page_token(audit.page_token(at, 42)) == (at, 42)
    for bad in ("bogus", "e30", "x" * 300, audit.page_token(at, 1)[:-3]):
        with pytest.raises(InvalidArgument) as err:
            audit.decode_page_token(bad)
        assert err.value.field == "page_token"


def test_queries_are_checked_by_field() -> None:
    assert audit.query_from_pb(audit_pb.ListAuditEntriesRequest()).page_size == audit.DEFAULT_PAGE_SIZE
    assert audit.query_from_pb(audit_pb.ListAuditEntriesRequest(page_size=10**6)).page_size == audit.MAX_PAGE_SIZE
    cases = {
        "page_size": audit_pb.ListAuditEntriesRequest(page_size=-1),
        "actor": audit_pb.ListAuditEntriesRequest(actor="a\x00"),
        "action": audit_pb.ListAuditEntriesRequest(action="x" * 300),
        "start_time": audit_pb.ListAuditEntriesRequest(start_time=Timestamp(seconds=-(10**12))),
    }
    for field, request in cases.items():
        with pytest.raises(InvalidArgument) as err:
            audit.query_from_pb(request)
        assert err.value.field == field


def test_which_calls_are_audited() -> None:
    # An engine connects only when used: this one never is.
    engine = create_async_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    trail = audit.AuditTrail(engine, audit.audit_log_table(sa.MetaData()), service="warehouse", reads=["CheckStock"])

    assert trail.audits("/kassa.warehouse.v1.InventoryService/SetStock")
    assert not trail.audits("/kassa.warehouse.v1.InventoryService/CheckStock")
    assert not trail.audits("/kassa.audit.v1.AuditService/ListAuditEntries")
    assert not trail.audits("/grpc.health.v1.Health/Check")
