"""GET /v1/admin/audit over the real mesh: every admin action of a run, from every service, newest first."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from e2e.support import Rest, RestError, confirm, fill_cart, make_catalog, ready_session

from infra.auth import ROLE_ADMIN, mint_token
from kassa.common.v1 import address_pb2
from kassa.order.v1 import order_pb2
from kassa.order.v1 import order_service_pb2 as order_pb
from kassa.order.v1.order_service_pb2_grpc import OrderServiceStub
from kassa.warehouse.v1 import inventory_pb2
from kassa.warehouse.v1 import inventory_service_pb2 as inv_pb
from kassa.warehouse.v1.inventory_service_pb2_grpc import InventoryServiceStub

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


async def _paid_order(mesh: Any, skus: list[str]) -> str:
    customer = Rest(mesh.gateway_url)
    try:
        await customer.guest()
        session = await ready_session(customer, await fill_cart(customer, skus, [1]))
        return str((await confirm(customer, session["session_id"], session["preview"]["grandTotal"]))["orderId"])
    finally:
        await customer.close()


async def _all_pages(admin: Rest, query: str, page_size: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    token = ""
    while True:
        page = await admin.call("GET", f"/v1/admin/audit?{query}&pageSize={page_size}&pageToken={token}")
        assert len(page.get("entries", [])) <= page_size
        out.extend(page.get("entries", []))
        token = page.get("nextPageToken", "")
        if not token:
            return out


async def test_every_admin_action_is_listed_with_who_what_and_when(mesh: Any) -> None:
    skus = await make_catalog(mesh, n=1, on_hand=10)
    refunded, cancelled, shipped = [await _paid_order(mesh, skus) for _ in range(3)]
    subject = f"ops-{uuid.uuid4().hex[:10]}"
    token = mint_token(mesh.env["KASSA_JWT_SECRET"], subject, role=ROLE_ADMIN)
    admin = Rest(mesh.gateway_url, token)
    md = (("authorization", f"Bearer {token}"),)
    code = f"AUDIT{uuid.uuid4().hex[:8].upper()}"
    nowhere = str(uuid.uuid4())
    try:
        warehouse_id = (await admin.call("GET", "/v1/admin/warehouses"))["warehouses"][0]["warehouseId"]
        await admin.call("PUT", "/v1/admin/stock", {"items": [{"sku": skus[0], "warehouseId": warehouse_id,
                                                               "onHand": "12"}]})  # fmt: skip
        await admin.call("POST", "/v1/admin/products", {"products": [{
            "sku": skus[0], "name": "Renamed", "weightGrams": "400", "taxClass": "standard",
            "prices": [{"currencyCode": "USD", "amountMinor": "1999"}]}]})  # fmt: skip
        await admin.call("POST", "/v1/admin/promotions", {"promotion": {
            "code": code, "name": "audit", "type": "PROMOTION_TYPE_PERCENTAGE", "percentOff": 5}})  # fmt: skip
        await admin.call(
            "POST",
            f"/v1/admin/orders/{refunded}:refund",
            {"amount": {"currencyCode": "USD", "amountMinor": "100"}, "reason": "scratched"},
            headers={"Idempotency-Key": f"audit-{refunded}"},
        )
        await admin.call("POST", f"/v1/orders/{cancelled}:cancel", {"reason": "customer called"})
        with pytest.raises(RestError) as refused:
            await admin.call("POST", f"/v1/admin/orders/{nowhere}:refund", {}, headers={"Idempotency-Key": "x1"})
        async with grpc.aio.insecure_channel(mesh.addr("order")) as ch:
            await OrderServiceStub(ch).UpdateFulfillment(
                order_pb.UpdateFulfillmentRequest(order_id=shipped, status=order_pb2.ORDER_STATUS_PACKED),
                metadata=md,
                timeout=10,
            )
        async with grpc.aio.insecure_channel(mesh.addr("warehouse")) as ch:
            await InventoryServiceStub(ch).UpsertWarehouses(
                inv_pb.UpsertWarehousesRequest(warehouses=[inventory_pb2.Warehouse(
                    warehouse_id=f"wh-audit-{uuid.uuid4().hex[:6]}", name="Audit depot",
                    address=address_pb2.Address(line1="9 Quay", city="Reykjavik", country_code="IS"))]),
                metadata=md,
                timeout=10,
            )  # fmt: skip

        entries = (await admin.call("GET", f"/v1/admin/audit?actor={subject}"))["entries"]
        paged = await _all_pages(admin, f"actor={subject}", 2)
        refunds = (await admin.call("GET", f"/v1/admin/audit?actor={subject}&action=RefundPayment"))["entries"]
        of_order = (await admin.call("GET", f"/v1/admin/audit?target=orders/{cancelled}"))["entries"]
        only_payment = (await admin.call("GET", f"/v1/admin/audit?actor={subject}&service=payment"))["entries"]
        later = entries[3]["createTime"]
        since = (await admin.call("GET", f"/v1/admin/audit?actor={subject}&startTime={later}"))["entries"]
    finally:
        await admin.close()

    assert refused.value.status == 404
    # Newest first, one entry per call, each from the service that took the action.
    assert [(e["service"], e["action"].rsplit(".", 1)[1], e["outcome"]) for e in entries] == [
        ("warehouse", "UpsertWarehouses", "OUTCOME_SUCCEEDED"),
        ("order", "UpdateFulfillment", "OUTCOME_SUCCEEDED"),
        ("payment", "RefundPayment", "OUTCOME_REFUSED"),
        ("order", "CancelOrder", "OUTCOME_SUCCEEDED"),
        ("payment", "RefundPayment", "OUTCOME_SUCCEEDED"),
        ("promotion", "CreatePromotion", "OUTCOME_SUCCEEDED"),
        ("pricing", "UpsertProducts", "OUTCOME_SUCCEEDED"),
        ("warehouse", "SetStock", "OUTCOME_SUCCEEDED"),
    ]
    assert all(e["actor"] == subject and e["actorRole"] == "admin" and e["createTime"] for e in entries)
    assert all(e["requestId"] for e in entries)
    times = [e["createTime"] for e in entries]
    assert times == sorted(times, reverse=True)
    refund = entries[4]
    assert refund["idempotencyKey"] == f"audit-{refunded}"
    assert refund["targets"][0] == f"orders/{refunded}" and refund["targets"][2].startswith("refunds/")
    assert refund["request"]["amount"] == {"currency_code": "USD", "amount_minor": "100"}
    assert (entries[2]["reason"], entries[2]["targets"]) == ("NOT_FOUND", [f"orders/{nowhere}"])
    assert entries[5]["targets"] == [f"promotions/{code}"]
    # The same entries page by page, and the filters.
    assert [(e["service"], e["id"]) for e in paged] == [(e["service"], e["id"]) for e in entries]
    assert [e["outcome"] for e in refunds] == ["OUTCOME_REFUSED", "OUTCOME_SUCCEEDED"]
    # The refund that followed the cancellation was the payment service's own (an event), not an admin's.
    assert [e["action"].rsplit(".", 1)[1] for e in of_order] == ["CancelOrder"]
    assert [e["service"] for e in only_payment] == ["payment", "payment"]
    assert [e["id"] for e in since] == [e["id"] for e in entries[:4]]


async def test_only_admins_may_read_the_log(mesh: Any) -> None:
    customer = Rest(mesh.gateway_url, mint_token(mesh.env["KASSA_JWT_SECRET"], f"cust-{uuid.uuid4().hex[:8]}"))
    guest, anonymous = Rest(mesh.gateway_url), Rest(mesh.gateway_url)
    statuses = []
    try:
        await guest.guest()
        for client in (customer, guest, anonymous):
            with pytest.raises(RestError) as err:
                await client.call("GET", "/v1/admin/audit")
            statuses.append(err.value.status)
    finally:
        for client in (customer, guest, anonymous):
            await client.close()

    assert statuses == [403, 403, 401]


async def test_bad_queries_name_the_field(mesh: Any) -> None:
    admin = Rest(mesh.gateway_url, mesh.admin_token)
    fields = []
    try:
        for query in ("service=ledger", "pageSize=-1", "pageToken=bogus", "startTime=yesterday", "actor=%00"):
            with pytest.raises(RestError) as err:
                await admin.call("GET", f"/v1/admin/audit?{query}")
            assert err.value.status == 400
            fields.append(err.value.metadata["field"])
    finally:
        await admin.close()

    assert fields == ["service", "page_size", "page_token", "start_time", "actor"]
