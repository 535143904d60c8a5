"""The order service's audit log: UpdateFulfillment and an admin's CancelOrder, recorded with their change."""

from __future__ import annotations

import grpc
import pytest
import sqlalchemy as sa
from audit_support import REFUSED, SUCCEEDED, assert_append_only, entries_of, list_status, new_admin
from helpers import bearer, unique

from kassa.order.v1 import order_pb2
from kassa.order.v1 import order_service_pb2 as pb
from order.data.tables import orders
from tests.order.integration.test_order_service import create_request

pytestmark = pytest.mark.integration

FULFIL = "kassa.order.v1.OrderService.UpdateFulfillment"
CANCEL = "kassa.order.v1.OrderService.CancelOrder"


async def _confirmed(stub, service_token: str, customer_id: str) -> order_pb2.Order:
    """A paid order, as checkout and payment leave one (service calls: not audited)."""
    md = bearer(service_token)
    order = (await stub.CreateOrder(create_request(unique("sess"), customer_id), metadata=md)).order
    paid = pb.RecordPaymentRequest(
        order_id=order.order_id, payment_id=order.payment_id, outcome=pb.PAYMENT_OUTCOME_CAPTURED
    )
    return (await stub.RecordPayment(paid, metadata=md)).order


async def _updated_at(engine, order_id: str):
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(orders.c.updated_at).where(orders.c.order_id == order_id))).scalar_one()


async def test_update_fulfillment_is_recorded_with_the_change(
    stub, order_channel, engine, settings, *, service_token, customer_id
) -> None:
    order = await _confirmed(stub, service_token, customer_id)
    actor, token = new_admin(settings)

    await stub.UpdateFulfillment(
        pb.UpdateFulfillmentRequest(order_id=order.order_id, status=order_pb2.ORDER_STATUS_PACKED),
        metadata=bearer(token),
    )

    [entry] = await entries_of(order_channel, token, actor)
    assert (entry.service, entry.actor, entry.action, entry.outcome) == ("order", actor, FULFIL, SUCCEEDED)
    assert list(entry.targets) == [f"orders/{order.order_id}"]
    assert dict(entry.request) == {"order_id": order.order_id, "status": "ORDER_STATUS_PACKED"}
    changed_at = await _updated_at(engine, order.order_id)
    assert entry.create_time.ToDatetime().replace(tzinfo=changed_at.tzinfo) == changed_at


async def test_an_admin_cancel_is_recorded_a_customers_is_not(
    stub, order_channel, engine, settings, *, service_token, customer_id, customer_token
) -> None:
    mine = await _confirmed(stub, service_token, customer_id)
    theirs = await _confirmed(stub, service_token, customer_id)
    actor, token = new_admin(settings)

    await stub.CancelOrder(pb.CancelOrderRequest(order_id=mine.order_id), metadata=bearer(customer_token))
    await stub.CancelOrder(
        pb.CancelOrderRequest(order_id=theirs.order_id, reason="fraud check"), metadata=bearer(token)
    )
    await stub.CancelOrder(
        pb.CancelOrderRequest(order_id=theirs.order_id, reason="fraud check"), metadata=bearer(token)
    )

    repeat, cancel = await entries_of(order_channel, token, actor)
    assert (cancel.action, cancel.outcome, cancel.request["reason"]) == (CANCEL, SUCCEEDED, "fraud check")
    changed_at = await _updated_at(engine, theirs.order_id)
    assert cancel.create_time.ToDatetime().replace(tzinfo=changed_at.tzinfo) == changed_at
    # The repeat changed nothing, and says so by its time: after the change, in a transaction of its own.
    assert repeat.outcome == SUCCEEDED and repeat.create_time.ToDatetime() > cancel.create_time.ToDatetime()
    assert await entries_of(order_channel, token, "", target=f"orders/{mine.order_id}") == []


async def test_a_refused_step_is_recorded_as_refused(stub, order_channel, settings, service_token, customer_id) -> None:
    order = await _confirmed(stub, service_token, customer_id)
    actor, token = new_admin(settings)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.UpdateFulfillment(
            pb.UpdateFulfillmentRequest(order_id=order.order_id, status=order_pb2.ORDER_STATUS_DELIVERED),
            metadata=bearer(token),
        )

    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    [entry] = await entries_of(order_channel, token, actor)
    assert (entry.action, entry.outcome, entry.reason) == (FULFIL, REFUSED, "ORDER_STATUS_CONFLICT")
    assert list(entry.targets) == [f"orders/{order.order_id}"]


async def test_personal_data_of_an_admins_create_order_is_masked(stub, order_channel, settings, customer_id) -> None:
    actor, token = new_admin(settings)
    request = create_request(unique("sess"), customer_id, notes="leave it with Mrs Hudson, 221B")

    order = (await stub.CreateOrder(request, metadata=bearer(token))).order

    [entry] = await entries_of(order_channel, token, actor)
    assert entry.outcome == SUCCEEDED
    assert list(entry.targets) == [f"payments/{request.payment_id}", f"orders/{order.order_id}"]
    assert entry.request["email"] == entry.request["notes"] == "<redacted>"
    assert dict(entry.request["shipping_address"]) == {
        "name": "<redacted>",
        "line1": "<redacted>",
        "city": "<redacted>",
        "postal_code": "<redacted>",
        "country_code": "US",
    }
    shown = str(entry)
    assert "ada@example.com" not in shown and "Hudson" not in shown and "1 Main St" not in shown


async def test_only_admins_read_the_log(order_channel, admin_token, customer_token, service_token) -> None:
    assert await list_status(order_channel, customer_token) == grpc.StatusCode.PERMISSION_DENIED
    assert await list_status(order_channel, service_token) == grpc.StatusCode.PERMISSION_DENIED
    assert await list_status(order_channel, admin_token) == grpc.StatusCode.OK


async def test_the_database_refuses_to_change_an_entry(stub, engine, settings, service_token, customer_id) -> None:
    order = await _confirmed(stub, service_token, customer_id)
    _, token = new_admin(settings)
    await stub.CancelOrder(pb.CancelOrderRequest(order_id=order.order_id), metadata=bearer(token))

    await assert_append_only(engine, "orders")
