"""The payment service's audit log: an admin's RefundPayment, recorded when the money is set aside for it."""

from __future__ import annotations

import grpc
import pytest
import sqlalchemy as sa
from audit_support import FAILED, REFUSED, SUCCEEDED, assert_append_only, entries_of, list_status, new_admin
from helpers import bearer, unique

from infra import faults
from kassa.common.v1 import money_pb2
from kassa.payment.v1 import payment_service_pb2 as pb
from payment.data.tables import refunds

pytestmark = pytest.mark.integration

REFUND = "kassa.payment.v1.PaymentService.RefundPayment"
TIMEOUT = 20


async def _captured(stub, service_token: str, amount: int = 1000) -> tuple[str, str]:
    """A captured payment (as checkout leaves one): its id and its order's id."""
    md = bearer(service_token)
    payment = (
        await stub.AuthorizePayment(
            pb.AuthorizePaymentRequest(
                idempotency_key=unique("pay"),
                order_ref=unique("sess"),
                amount=money_pb2.Money(currency_code="USD", amount_minor=amount),
                payment_method="tok_visa",
                customer_id="cust-1",
                customer_email="ada@example.com",
            ),
            metadata=md,
            timeout=TIMEOUT,
        )
    ).payment
    order_id = unique("order")
    await stub.CapturePayment(
        pb.CapturePaymentRequest(payment_id=payment.payment_id, order_id=order_id), metadata=md, timeout=TIMEOUT
    )
    return payment.payment_id, order_id


def _refund(order_id: str, key: str, amount: int | None = None) -> pb.RefundPaymentRequest:
    request = pb.RefundPaymentRequest(order_id=order_id, idempotency_key=key, reason="damaged in transit")
    if amount is not None:
        request.amount.CopyFrom(money_pb2.Money(currency_code="USD", amount_minor=amount))
    return request


async def test_an_admin_refund_is_recorded_with_the_money_set_aside(
    payment_stub, payment_channel, payment_db, settings, service_token
) -> None:
    payment_id, order_id = await _captured(payment_stub, service_token)
    actor, token = new_admin(settings)
    key = unique("refund")

    answer = await payment_stub.RefundPayment(_refund(order_id, key, 400), metadata=bearer(token), timeout=TIMEOUT)

    [entry] = await entries_of(payment_channel, token, actor)
    assert (entry.service, entry.actor, entry.action, entry.outcome) == ("payment", actor, REFUND, SUCCEEDED)
    assert list(entry.targets) == [f"orders/{order_id}", f"payments/{payment_id}", f"refunds/{answer.refund_id}"]
    assert entry.idempotency_key == key
    assert entry.request["amount"] == {"currency_code": "USD", "amount_minor": "400"}
    assert entry.request["reason"] == "damaged in transit"
    async with payment_db.connect() as conn:
        reserved_at = (
            await conn.execute(sa.select(refunds.c.created_at).where(refunds.c.idempotency_key == key))
        ).scalar_one()
    assert entry.create_time.ToDatetime().replace(tzinfo=reserved_at.tzinfo) == reserved_at


async def test_a_repeat_and_a_refund_past_the_capture_are_recorded_too(
    payment_stub, payment_channel, settings, service_token
) -> None:
    _, order_id = await _captured(payment_stub, service_token)
    actor, token = new_admin(settings)
    key = unique("refund")
    await payment_stub.RefundPayment(_refund(order_id, key, 600), metadata=bearer(token), timeout=TIMEOUT)
    await payment_stub.RefundPayment(_refund(order_id, key, 600), metadata=bearer(token), timeout=TIMEOUT)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await payment_stub.RefundPayment(_refund(order_id, unique("r"), 500), metadata=bearer(token), timeout=TIMEOUT)

    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    past, repeat, first = await entries_of(payment_channel, token, actor)
    assert (first.outcome, repeat.outcome, past.outcome) == (SUCCEEDED, SUCCEEDED, REFUSED)
    # The repeat changed nothing: it names only what the request named.
    assert len(first.targets) == 3 and list(repeat.targets) == [f"orders/{order_id}"]
    assert repeat.idempotency_key == first.idempotency_key == key
    assert past.reason == "REFUND_EXCEEDS_CAPTURE"


async def test_a_refund_that_fails_after_the_money_was_set_aside_gets_a_second_entry(
    payment_stub, payment_channel, settings, service_token
) -> None:
    payment_id, order_id = await _captured(payment_stub, service_token)
    actor, token = new_admin(settings)
    faults.configure("payment.refund.after_provider=error#1")

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await payment_stub.RefundPayment(_refund(order_id, unique("r")), metadata=bearer(token), timeout=TIMEOUT)

    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    failed, reserved = await entries_of(payment_channel, token, actor)
    assert (reserved.outcome, failed.outcome) == (SUCCEEDED, FAILED)
    assert failed.reason and failed.request_id == reserved.request_id
    assert f"payments/{payment_id}" in failed.targets


async def test_calls_by_customers_and_services_are_not_recorded(
    payment_stub, payment_channel, settings, *, customer_token, service_token, admin_token
) -> None:
    _, order_id = await _captured(payment_stub, service_token)
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await payment_stub.RefundPayment(_refund(order_id, unique("r")), metadata=bearer(customer_token))
    await payment_stub.RefundPayment(_refund(order_id, unique("r"), 100), metadata=bearer(service_token))

    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await entries_of(payment_channel, admin_token, "", target=f"orders/{order_id}") == []
    assert await list_status(payment_channel, customer_token) == grpc.StatusCode.PERMISSION_DENIED
    assert await list_status(payment_channel, service_token) == grpc.StatusCode.PERMISSION_DENIED


async def test_personal_data_in_a_request_is_masked(payment_stub, payment_channel, settings) -> None:
    actor, token = new_admin(settings)
    await payment_stub.AuthorizePayment(
        pb.AuthorizePaymentRequest(
            idempotency_key=unique("pay"),
            order_ref=unique("sess"),
            amount=money_pb2.Money(currency_code="USD", amount_minor=100),
            payment_method="tok_visa",
            customer_id="cust-1",
            customer_email="ada@example.com",
        ),
        metadata=bearer(token),
        timeout=TIMEOUT,
    )

    [entry] = await entries_of(payment_channel, token, actor)
    assert entry.action == "kassa.payment.v1.PaymentService.AuthorizePayment" and entry.outcome == SUCCEEDED
    assert entry.request["customer_email"] == "<redacted>"
    assert entry.request["payment_method"] == "<redacted>"
    assert "ada@example.com" not in str(entry)


async def test_the_database_refuses_to_change_an_entry(payment_stub, payment_db, settings, service_token) -> None:
    _, order_id = await _captured(payment_stub, service_token)
    _, token = new_admin(settings)
    await payment_stub.RefundPayment(_refund(order_id, unique("r"), 100), metadata=bearer(token), timeout=TIMEOUT)

    await assert_append_only(payment_db, "payment")
