"""PaymentService under provider outages and late answers (the sandbox's faults ``sandbox.<op>``): every call
fails UNAVAILABLE with PAYMENT_PROVIDER_UNAVAILABLE (retryable, never INTERNAL or UNKNOWN), and a retry with
the same key, once the provider is back, converges with the provider having done the work once."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from helpers import bearer, unique
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.sandbox.server import RunningSandbox
from infra import faults
from infra.grpc_errors import error_info
from kassa.common.v1 import money_pb2
from kassa.payment.v1 import payment_pb2, payment_service_pb2
from kassa.payment.v1.payment_service_pb2_grpc import PaymentServiceStub
from payment.data.tables import payments

pytestmark = pytest.mark.integration

PS = payment_pb2.PaymentStatus
pb = payment_service_pb2
TIMEOUT = 20
# Longer than the payment service waits for the provider (rpc_timeout_seconds - 1 = 1 s in these tests).
LATE = 1.6

Call = Callable[[], Awaitable[Any]]


class Calls:
    def __init__(self, stub: PaymentServiceStub, token: str) -> None:
        self.stub = stub
        self.md = bearer(token)

    def authorize(self, request: pb.AuthorizePaymentRequest) -> Call:
        return lambda: self.stub.AuthorizePayment(request, metadata=self.md, timeout=TIMEOUT)

    def capture(self, payment_id: str, order_id: str) -> Call:
        request = pb.CapturePaymentRequest(payment_id=payment_id, order_id=order_id)
        return lambda: self.stub.CapturePayment(request, metadata=self.md, timeout=TIMEOUT)

    def void(self, payment_id: str) -> Call:
        request = pb.VoidAuthorizationRequest(payment_id=payment_id, reason="checkout failed")
        return lambda: self.stub.VoidAuthorization(request, metadata=self.md, timeout=TIMEOUT)

    def refund(self, payment_id: str, key: str) -> Call:
        request = pb.RefundPaymentRequest(payment_id=payment_id, idempotency_key=key)
        return lambda: self.stub.RefundPayment(request, metadata=self.md, timeout=TIMEOUT)

    def refresh(self, payment_id: str) -> Call:
        request = pb.GetPaymentRequest(payment_id=payment_id, refresh=True)
        return lambda: self.stub.GetPayment(request, metadata=self.md, timeout=TIMEOUT)


@pytest.fixture
def calls(payment_stub: PaymentServiceStub, service_token: str) -> Calls:
    return Calls(payment_stub, service_token)


def _authorize_request() -> pb.AuthorizePaymentRequest:
    return pb.AuthorizePaymentRequest(
        idempotency_key=unique("pay"),
        order_ref=unique("sess"),
        amount=money_pb2.Money(currency_code="USD", amount_minor=700),
        payment_method="tok_visa",
        customer_id="cust-1",
    )


async def _fails(call: Call, code: grpc.StatusCode, reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call()
    assert err.value.code() == code, err.value.details()
    info = error_info(err.value)
    assert info is not None
    assert info.reason == reason


async def _scenario(calls: Calls, operation: str) -> tuple[Call, payment_pb2.Payment | None, str]:
    """The call of ``operation`` on a payment ready for it: (call, the payment, the provider operation)."""
    if operation == "authorize":
        return calls.authorize(_authorize_request()), None, "create"
    payment = (await calls.authorize(_authorize_request())()).payment
    if operation == "capture":
        return calls.capture(payment.payment_id, unique("order")), payment, "capture"
    if operation == "void":
        return calls.void(payment.payment_id), payment, "cancel"
    await calls.capture(payment.payment_id, unique("order"))()
    return calls.refund(payment.payment_id, unique("refund")), payment, "refund"


_DONE = {
    "authorize": PS.PAYMENT_STATUS_AUTHORIZED,
    "capture": PS.PAYMENT_STATUS_CAPTURED,
    "void": PS.PAYMENT_STATUS_VOIDED,
    "refund": PS.PAYMENT_STATUS_REFUNDED,
}


@pytest.mark.parametrize("fault", ["error", f"delay:{LATE}#1"])
@pytest.mark.parametrize("operation", ["authorize", "capture", "void", "refund"])
async def test_a_provider_outage_or_late_answer_is_unavailable_and_a_retry_converges(
    calls: Calls, sandbox: RunningSandbox, operation: str, fault: str
) -> None:
    call, payment, provider_operation = await _scenario(calls, operation)
    faults.configure(f"sandbox.{operation}={fault}")
    await _fails(call, grpc.StatusCode.UNAVAILABLE, "PAYMENT_PROVIDER_UNAVAILABLE")
    if fault == "error":
        faults.configure(None)  # the provider is back

    done = (await call()).payment
    assert done.status == _DONE[operation]
    intent_id = done.provider_payment_id
    assert payment is None or intent_id == payment.provider_payment_id
    assert sandbox.api.state.count(provider_operation, intent_id) == 1
    assert (await call()).payment.status == _DONE[operation]
    assert sandbox.api.state.count(provider_operation, intent_id) == 1


async def test_a_refresh_the_provider_refuses_is_a_failed_precondition(calls: Calls, payment_db: AsyncEngine) -> None:
    payment = (await calls.authorize(_authorize_request())()).payment
    async with payment_db.begin() as conn:
        await conn.execute(
            payments.update()
            .where(payments.c.payment_id == uuid.UUID(payment.payment_id))
            .values(provider_payment_id=f"pi_{unique('gone')}")
        )
    await _fails(calls.refresh(payment.payment_id), grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_INVALID_STATE")
