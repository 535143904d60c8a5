"""Payment's fault points around each provider call (issue 9): the provider acts, payment fails before it
records the answer (a crash, modelled in process as an injected error), and a retry with the same key,
as checkout or its recovery would make, converges: one intent per key, one capture, one cancel, one refund
per refund key, nothing held for a failed order, and refunds never past the capture."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from helpers import bearer, unique
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.sandbox.server import RunningSandbox
from infra import faults
from infra.grpc_errors import error_info
from kassa.common.v1 import money_pb2
from kassa.payment.v1 import payment_pb2, payment_service_pb2
from kassa.payment.v1.payment_service_pb2_grpc import PaymentServiceStub
from payment.data.tables import outbox, payments, refunds

pytestmark = pytest.mark.integration

PS = payment_pb2.PaymentStatus
pb = payment_service_pb2
TIMEOUT = 20


def _usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="USD", amount_minor=amount)


class Client:
    def __init__(self, stub: PaymentServiceStub, token: str) -> None:
        self.stub = stub
        self.md = bearer(token)

    async def authorize(self, request: pb.AuthorizePaymentRequest) -> payment_pb2.Payment:
        return (await self.stub.AuthorizePayment(request, metadata=self.md, timeout=TIMEOUT)).payment

    async def capture(self, payment_id: str, order_id: str) -> payment_pb2.Payment:
        request = pb.CapturePaymentRequest(payment_id=payment_id, order_id=order_id)
        return (await self.stub.CapturePayment(request, metadata=self.md, timeout=TIMEOUT)).payment

    async def void(self, payment_id: str) -> payment_pb2.Payment:
        request = pb.VoidAuthorizationRequest(payment_id=payment_id, reason="checkout failed")
        return (await self.stub.VoidAuthorization(request, metadata=self.md, timeout=TIMEOUT)).payment

    async def void_by_key(self, key: str) -> pb.VoidAuthorizationResponse:
        request = pb.VoidAuthorizationRequest(idempotency_key=key, reason="order failed")
        return await self.stub.VoidAuthorization(request, metadata=self.md, timeout=TIMEOUT)

    async def refund(self, payment_id: str, key: str, amount: int | None = None) -> pb.RefundPaymentResponse:
        request = pb.RefundPaymentRequest(payment_id=payment_id, idempotency_key=key, reason="returned")
        if amount is not None:
            request.amount.CopyFrom(_usd(amount))
        return await self.stub.RefundPayment(request, metadata=self.md, timeout=TIMEOUT)

    async def get(self, payment_id: str) -> payment_pb2.Payment:
        request = pb.GetPaymentRequest(payment_id=payment_id)
        return (await self.stub.GetPayment(request, metadata=self.md, timeout=TIMEOUT)).payment


@pytest.fixture
def client(payment_stub: PaymentServiceStub, service_token: str) -> Client:
    return Client(payment_stub, service_token)


def _authorize_request(token: str = "tok_visa", amount: int = 1000) -> pb.AuthorizePaymentRequest:
    return pb.AuthorizePaymentRequest(
        idempotency_key=unique("pay"),
        order_ref=unique("sess"),
        amount=_usd(amount),
        payment_method=token,
        customer_id="cust-1",
    )


async def _unavailable(call: Any) -> dict[str, str]:
    """The call fails UNAVAILABLE (retryable, never INTERNAL) and names the payment; its ErrorInfo metadata."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
    info = error_info(err.value)
    assert info is not None
    return dict(info.metadata)


async def _status(db: AsyncEngine, payment_id: str) -> str:
    async with db.connect() as conn:
        return str(
            (
                await conn.execute(sa.select(payments.c.status).where(payments.c.payment_id == uuid.UUID(payment_id)))
            ).scalar_one()
        )


async def _lease_runs_out(db: AsyncEngine, payment_id: str) -> None:
    """Time passes: the claim of the process that failed mid-operation expires."""
    async with db.begin() as conn:
        await conn.execute(
            payments.update()
            .where(payments.c.payment_id == uuid.UUID(payment_id))
            .values(lease_until=sa.func.now() - timedelta(seconds=1))
        )


async def _event_types(db: AsyncEngine, payment_id: str) -> list[str]:
    async with db.connect() as conn:
        rows = await conn.execute(
            sa.select(outbox.c.event_type).where(outbox.c.aggregate_id == payment_id).order_by(outbox.c.created_at)
        )
        return [r.event_type for r in rows]


async def _refund_statuses(db: AsyncEngine, payment_id: str) -> list[str]:
    async with db.connect() as conn:
        rows = await conn.execute(
            sa.select(refunds.c.status)
            .where(refunds.c.payment_id == uuid.UUID(payment_id))
            .order_by(refunds.c.created_at)
        )
        return [r.status for r in rows]


# -- authorize ------------------------------------------------------------------------------------------------


async def test_authorize_lost_after_the_provider_is_retried_into_the_same_intent(
    client: Client, sandbox: RunningSandbox, payment_db: AsyncEngine
) -> None:
    request = _authorize_request()
    faults.configure("payment.authorize.after_provider=error#1")
    payment_id = (await _unavailable(client.authorize(request)))["payment_id"]
    [intent] = sandbox.api.state.find_by_key(request.idempotency_key)
    assert intent.status == "requires_capture"  # held at the provider, not recorded here
    assert await _status(payment_db, payment_id) == "PENDING"

    again = await client.authorize(request)
    assert again.payment_id == payment_id
    assert again.status == PS.PAYMENT_STATUS_AUTHORIZED
    assert again.provider_payment_id == intent.id
    assert len(sandbox.api.state.find_by_key(request.idempotency_key)) == 1
    assert sandbox.api.state.count("create", intent.id) == 1
    assert await _event_types(payment_db, payment_id) == ["PaymentAuthorized"]


async def test_authorize_lost_after_the_provider_then_the_order_fails_leaves_nothing_held(
    client: Client, sandbox: RunningSandbox, payment_db: AsyncEngine
) -> None:
    request = _authorize_request()
    faults.configure("payment.authorize.after_provider=error#1")
    payment_id = (await _unavailable(client.authorize(request)))["payment_id"]
    [intent] = sandbox.api.state.find_by_key(request.idempotency_key)

    # Checkout gives up on the session and voids what its key may have created.
    voided = (await client.void_by_key(request.idempotency_key)).payment
    assert voided.payment_id == payment_id
    assert voided.status == PS.PAYMENT_STATUS_VOIDED
    assert sandbox.api.state.intents[intent.id].status == "canceled"
    # A late retry of the authorization cannot reopen it.
    assert (await client.authorize(request)).status == PS.PAYMENT_STATUS_VOIDED
    assert sandbox.api.state.count("create", intent.id) == 1
    assert await _event_types(payment_db, payment_id) == ["PaymentVoided"]


async def test_authorize_failing_before_the_provider_creates_nothing_until_retried(
    client: Client, sandbox: RunningSandbox
) -> None:
    request = _authorize_request()
    faults.configure("payment.authorize.before_provider=error#1")
    await _unavailable(client.authorize(request))
    assert sandbox.api.state.find_by_key(request.idempotency_key) == []
    assert (await client.authorize(request)).status == PS.PAYMENT_STATUS_AUTHORIZED
    assert len(sandbox.api.state.find_by_key(request.idempotency_key)) == 1


# -- capture --------------------------------------------------------------------------------------------------


async def test_capture_lost_after_the_provider_is_retried_without_a_second_charge(
    client: Client, sandbox: RunningSandbox, payment_db: AsyncEngine
) -> None:
    payment = await client.authorize(_authorize_request())
    order_id = unique("order")
    faults.configure("payment.capture.after_provider=error#1")
    assert (await _unavailable(client.capture(payment.payment_id, order_id)))["payment_id"] == payment.payment_id
    assert sandbox.api.state.intents[payment.provider_payment_id].status == "succeeded"
    assert await _status(payment_db, payment.payment_id) == "CAPTURING"

    # The failed capture's claim still holds: a retry is told to come back, and makes no provider call.
    await _unavailable(client.capture(payment.payment_id, order_id))
    await _lease_runs_out(payment_db, payment.payment_id)
    captured = await client.capture(payment.payment_id, order_id)
    assert captured.status == PS.PAYMENT_STATUS_CAPTURED
    assert captured.captured_amount.amount_minor == 1000
    assert sandbox.api.state.count("capture", payment.provider_payment_id) == 1
    assert await client.capture(payment.payment_id, order_id) == captured
    assert await _event_types(payment_db, payment.payment_id) == ["PaymentAuthorized", "PaymentCaptured"]


async def test_capture_failing_before_the_provider_captures_once_retried(
    client: Client, sandbox: RunningSandbox, payment_db: AsyncEngine
) -> None:
    payment = await client.authorize(_authorize_request())
    order_id = unique("order")
    faults.configure("payment.capture.before_provider=error#1")
    await _unavailable(client.capture(payment.payment_id, order_id))
    assert sandbox.api.state.intents[payment.provider_payment_id].status == "requires_capture"
    await _lease_runs_out(payment_db, payment.payment_id)
    assert (await client.capture(payment.payment_id, order_id)).status == PS.PAYMENT_STATUS_CAPTURED
    assert sandbox.api.state.count("capture", payment.provider_payment_id) == 1


# -- void -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("when", ["before", "after"])
async def test_void_lost_around_the_provider_is_retried_into_one_cancel(
    client: Client, sandbox: RunningSandbox, payment_db: AsyncEngine, when: str
) -> None:
    payment = await client.authorize(_authorize_request())
    faults.configure(f"payment.void.{when}_provider=error#1")
    await _unavailable(client.void(payment.payment_id))
    expected = "canceled" if when == "after" else "requires_capture"
    assert sandbox.api.state.intents[payment.provider_payment_id].status == expected
    assert await _status(payment_db, payment.payment_id) == "VOIDING"

    # VOIDING is taken over at once: cancelling is idempotent at the provider.
    assert (await client.void(payment.payment_id)).status == PS.PAYMENT_STATUS_VOIDED
    assert sandbox.api.state.intents[payment.provider_payment_id].status == "canceled"
    assert sandbox.api.state.count("cancel", payment.provider_payment_id) == 1
    assert await _event_types(payment_db, payment.payment_id) == ["PaymentAuthorized", "PaymentVoided"]


# -- refund ---------------------------------------------------------------------------------------------------


async def test_refund_lost_after_the_provider_is_retried_once_and_never_past_the_capture(
    client: Client, sandbox: RunningSandbox, payment_db: AsyncEngine
) -> None:
    payment = await client.authorize(_authorize_request())
    await client.capture(payment.payment_id, unique("order"))
    intent_id = payment.provider_payment_id
    key = unique("refund")
    faults.configure("payment.refund.after_provider=error#1")
    await _unavailable(client.refund(payment.payment_id, key, 600))
    assert sandbox.api.state.intents[intent_id].amount_refunded == 600
    assert await _refund_statuses(payment_db, payment.payment_id) == ["PENDING"]

    # The unrecorded 600 still counts: another refund cannot take the money twice.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.refund(payment.payment_id, unique("refund"), 500)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(err.value)
    assert info is not None and info.reason == "REFUND_EXCEEDS_CAPTURE"

    retried = await client.refund(payment.payment_id, key, 600)
    assert retried.payment.status == PS.PAYMENT_STATUS_PARTIALLY_REFUNDED
    assert retried.payment.refunded_amount.amount_minor == 600
    assert sandbox.api.state.count("refund", intent_id) == 1
    assert sandbox.api.state.intents[intent_id].amount_refunded == 600

    rest = await client.refund(payment.payment_id, unique("refund"))
    assert rest.payment.status == PS.PAYMENT_STATUS_REFUNDED
    assert sandbox.api.state.intents[intent_id].amount_refunded == 1000
    assert await _refund_statuses(payment_db, payment.payment_id) == ["SUCCEEDED", "SUCCEEDED"]
    types = await _event_types(payment_db, payment.payment_id)
    assert types == ["PaymentAuthorized", "PaymentCaptured", "PaymentRefunded", "PaymentRefunded"]


async def test_refund_failing_before_the_provider_refunds_once_retried(client: Client, sandbox: RunningSandbox) -> None:
    payment = await client.authorize(_authorize_request())
    await client.capture(payment.payment_id, unique("order"))
    key = unique("refund")
    faults.configure("payment.refund.before_provider=error#1")
    await _unavailable(client.refund(payment.payment_id, key))
    assert sandbox.api.state.intents[payment.provider_payment_id].amount_refunded == 0
    assert (await client.refund(payment.payment_id, key)).payment.status == PS.PAYMENT_STATUS_REFUNDED
    assert sandbox.api.state.count("refund", payment.provider_payment_id) == 1
