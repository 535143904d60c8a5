"""Every payment ends right: void by the authorize key, status poll (refresh), refund by order, capture
metadata, and the consumer of the order service's cancellations and payment failures."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
import sqlalchemy as sa
from helpers import bearer, unique
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.sandbox.server import RunningSandbox
from infra.config import Settings
from infra.events import connect, ensure_streams
from infra.grpc_errors import error_info
from kassa.common.v1 import money_pb2
from kassa.payment.v1 import payment_pb2, payment_service_pb2
from kassa.payment.v1.payment_service_pb2_grpc import PaymentServiceStub
from payment.data.tables import inbox, outbox

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

    async def authorize(
        self, token: str = "tok_visa", *, key: str | None = None, amount: int = 2500, order_ref: str | None = None
    ) -> payment_pb2.Payment:
        request = pb.AuthorizePaymentRequest(
            idempotency_key=key or unique("pay"),
            order_ref=order_ref or unique("sess"),
            amount=_usd(amount),
            payment_method=token,
            customer_id="cust-1",
        )
        return (await self.stub.AuthorizePayment(request, metadata=self.md, timeout=TIMEOUT)).payment

    async def capture(self, payment_id: str, order_id: str) -> payment_pb2.Payment:
        request = pb.CapturePaymentRequest(payment_id=payment_id, order_id=order_id)
        return (await self.stub.CapturePayment(request, metadata=self.md, timeout=TIMEOUT)).payment

    async def void_by_key(self, key: str) -> pb.VoidAuthorizationResponse:
        request = pb.VoidAuthorizationRequest(idempotency_key=key, reason="authorize answer lost")
        return await self.stub.VoidAuthorization(request, metadata=self.md, timeout=TIMEOUT)

    async def get(self, payment_id: str, *, refresh: bool = False) -> payment_pb2.Payment:
        request = pb.GetPaymentRequest(payment_id=payment_id, refresh=refresh)
        return (await self.stub.GetPayment(request, metadata=self.md, timeout=TIMEOUT)).payment

    async def refund_order(
        self, order_id: str, key: str, amount: money_pb2.Money | None = None
    ) -> pb.RefundPaymentResponse:
        request = pb.RefundPaymentRequest(order_id=order_id, idempotency_key=key, reason="returned")
        if amount is not None:
            request.amount.CopyFrom(amount)
        return await self.stub.RefundPayment(request, metadata=self.md, timeout=TIMEOUT)


@pytest.fixture
def client(payment_stub: PaymentServiceStub, service_token: str) -> Client:
    return Client(payment_stub, service_token)


async def _expect_error(call: Any, code: grpc.StatusCode) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, err.value.details()
    info = error_info(err.value)
    assert info is not None
    return info


async def _event_types(db: AsyncEngine, payment_id: str) -> list[str]:
    async with db.connect() as conn:
        rows = await conn.execute(
            sa.select(outbox.c.event_type).where(outbox.c.aggregate_id == payment_id).order_by(outbox.c.created_at)
        )
        return [r.event_type for r in rows]


async def _eventually(check: Any, what: str, seconds: float = 15.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


# -- void by the authorize key ------------------------------------------------------------------------------


async def test_void_by_an_unknown_key_holds_nothing_and_answers_ok(client: Client) -> None:
    answer = await client.void_by_key(unique("never-authorized"))
    assert not answer.HasField("payment")


async def test_void_by_key_of_a_timed_out_authorization_cancels_the_intent_found_at_the_provider(
    client: Client, sandbox: RunningSandbox, payment_db: AsyncEngine
) -> None:
    key = unique("pay")
    await _expect_error(client.authorize("tok_timeout", key=key), grpc.StatusCode.UNAVAILABLE)
    [intent] = sandbox.api.state.find_by_key(key)
    assert intent.status == "requires_capture"  # held at the provider, unknown to us

    voided = (await client.void_by_key(key)).payment
    assert voided.status == PS.PAYMENT_STATUS_VOIDED
    assert voided.provider_payment_id == intent.id
    assert sandbox.api.state.intents[intent.id].status == "canceled"
    assert (await client.void_by_key(key)).payment.status == PS.PAYMENT_STATUS_VOIDED
    assert sandbox.api.state.count("cancel", intent.id) == 1
    assert await _event_types(payment_db, voided.payment_id) == ["PaymentVoided"]


async def test_void_by_key_when_the_provider_has_no_intent_ends_failed(
    client: Client, sandbox: RunningSandbox, payment_db: AsyncEngine
) -> None:
    key = unique("pay")
    await _expect_error(client.authorize("tok_processingError", key=key), grpc.StatusCode.UNAVAILABLE)
    assert sandbox.api.state.find_by_key(key) == []
    failed = (await client.void_by_key(key)).payment
    assert failed.status == PS.PAYMENT_STATUS_FAILED
    assert await _event_types(payment_db, failed.payment_id) == ["PaymentFailed"]


# -- GetPayment refresh ---------------------------------------------------------------------------------------


async def test_refresh_applies_a_late_three_d_secure_result_once(
    client: Client, sandbox: RunningSandbox, payment_db: AsyncEngine
) -> None:
    payment = await client.authorize("tok_threeDSecure")
    assert payment.status == PS.PAYMENT_STATUS_REQUIRES_ACTION
    # The customer authenticates; the webhook is never delivered (no webhook_url on this sandbox).
    sandbox.api.state.complete_action(payment.provider_payment_id, succeed=True)
    assert (await client.get(payment.payment_id)).status == PS.PAYMENT_STATUS_REQUIRES_ACTION

    refreshed = await client.get(payment.payment_id, refresh=True)
    assert refreshed.status == PS.PAYMENT_STATUS_AUTHORIZED
    assert refreshed.next_action_url == ""
    again = await client.get(payment.payment_id, refresh=True)
    assert again.status == PS.PAYMENT_STATUS_AUTHORIZED
    assert await _event_types(payment_db, payment.payment_id) == ["PaymentRequiresAction", "PaymentAuthorized"]


async def test_refresh_of_a_failed_authentication_fails_the_payment(client: Client, sandbox: RunningSandbox) -> None:
    payment = await client.authorize("tok_threeDSecure")
    sandbox.api.state.complete_action(payment.provider_payment_id, succeed=False)
    refreshed = await client.get(payment.payment_id, refresh=True)
    assert refreshed.status == PS.PAYMENT_STATUS_FAILED
    assert refreshed.failure_code == "authentication_required"


async def test_refresh_never_moves_a_payment_backwards(client: Client, sandbox: RunningSandbox) -> None:
    payment = await client.authorize()
    order_id = unique("order")
    await client.capture(payment.payment_id, order_id)
    await client.refund_order(order_id, unique("r"), _usd(500))
    refreshed = await client.get(payment.payment_id, refresh=True)
    assert refreshed.status == PS.PAYMENT_STATUS_PARTIALLY_REFUNDED
    assert refreshed.refunded_amount.amount_minor == 500


async def test_refresh_is_for_privileged_callers_only(
    payment_stub: PaymentServiceStub, customer_token: str, client: Client
) -> None:
    payment = await client.authorize()
    request = pb.GetPaymentRequest(payment_id=payment.payment_id, refresh=True)
    await _expect_error(
        payment_stub.GetPayment(request, metadata=bearer(customer_token), timeout=TIMEOUT),
        grpc.StatusCode.PERMISSION_DENIED,
    )


# -- capture metadata ---------------------------------------------------------------------------------------


async def test_the_intent_carries_kassa_session_and_order_ids(client: Client, sandbox: RunningSandbox) -> None:
    session_id, order_id = unique("sess"), unique("order")
    payment = await client.authorize(order_ref=session_id)
    assert sandbox.api.state.intents[payment.provider_payment_id].metadata["kassa_session_id"] == session_id
    await client.capture(payment.payment_id, order_id)
    metadata = sandbox.api.state.intents[payment.provider_payment_id].metadata
    assert metadata["kassa_session_id"] == session_id
    assert metadata["kassa_order_id"] == order_id


# -- refund by order --------------------------------------------------------------------------------------------


async def test_refund_by_order_partial_then_full_and_never_past_the_capture(
    client: Client, sandbox: RunningSandbox, payment_db: AsyncEngine
) -> None:
    payment = await client.authorize(amount=1000)
    order_id = unique("order")
    await client.capture(payment.payment_id, order_id)
    key = unique("refund")
    first = await client.refund_order(order_id, key, _usd(400))
    assert first.payment.status == PS.PAYMENT_STATUS_PARTIALLY_REFUNDED
    assert (await client.refund_order(order_id, key, _usd(400))).refund_id == first.refund_id

    past = client.refund_order(order_id, unique("r"), _usd(601))
    info = await _expect_error(past, grpc.StatusCode.FAILED_PRECONDITION)
    assert info.reason == "REFUND_EXCEEDS_CAPTURE"
    assert sandbox.api.state.intents[payment.provider_payment_id].amount_refunded == 400
    assert (await client.get(payment.payment_id)).refunded_amount.amount_minor == 400

    rest = await client.refund_order(order_id, unique("r"))
    assert rest.payment.status == PS.PAYMENT_STATUS_REFUNDED
    assert rest.payment.refunded_amount.amount_minor == 1000
    info = await _expect_error(client.refund_order(order_id, unique("r")), grpc.StatusCode.FAILED_PRECONDITION)
    assert info.reason == "REFUND_EXCEEDS_CAPTURE"
    assert sandbox.api.state.count("refund", payment.provider_payment_id) == 2
    assert (await _event_types(payment_db, payment.payment_id)).count("PaymentRefunded") == 2


@pytest.mark.parametrize(
    ("amount", "field"),
    [
        (money_pb2.Money(currency_code="USD", amount_minor=0), "amount.amount_minor"),
        (money_pb2.Money(currency_code="USD", amount_minor=-5), "amount.amount_minor"),
        (money_pb2.Money(currency_code="EUR", amount_minor=100), "amount.currency_code"),
        (money_pb2.Money(currency_code="usd", amount_minor=100), "amount.currency_code"),
    ],
)
async def test_refund_by_order_refuses_bad_amounts_before_writing(
    client: Client, sandbox: RunningSandbox, amount: money_pb2.Money, field: str
) -> None:
    payment = await client.authorize(amount=1000)
    order_id = unique("order")
    await client.capture(payment.payment_id, order_id)
    info = await _expect_error(client.refund_order(order_id, unique("r"), amount), grpc.StatusCode.INVALID_ARGUMENT)
    assert info.metadata["field"] == field
    assert (await client.get(payment.payment_id)).refunded_amount.amount_minor == 0
    assert sandbox.api.state.count("refund", payment.provider_payment_id) == 0


async def test_refund_of_an_order_without_a_capture_is_not_found(client: Client) -> None:
    await _expect_error(client.refund_order(unique("order"), unique("r")), grpc.StatusCode.NOT_FOUND)


async def test_customers_cannot_refund_and_admins_can(
    payment_stub: PaymentServiceStub, customer_token: str, admin_token: str, client: Client
) -> None:
    payment = await client.authorize(amount=700)
    order_id = unique("order")
    await client.capture(payment.payment_id, order_id)
    request = pb.RefundPaymentRequest(order_id=order_id, idempotency_key=unique("r"))
    await _expect_error(
        payment_stub.RefundPayment(request, metadata=bearer(customer_token), timeout=TIMEOUT),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    answer = await payment_stub.RefundPayment(request, metadata=bearer(admin_token), timeout=TIMEOUT)
    assert answer.payment.status == PS.PAYMENT_STATUS_REFUNDED


# -- order events ----------------------------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def order_stream(payment_settings: Settings) -> AsyncIterator[JetStreamContext]:
    assert payment_settings.nats_url
    nc, js = await connect(payment_settings.nats_url, "payment-order-event-tests")
    await ensure_streams(js, ["order"])
    try:
        yield js
    finally:
        await nc.close()


async def _publish(js: JetStreamContext, event_type: str, order_id: str, data: dict[str, Any]) -> str:
    event_id = str(uuid.uuid4())
    envelope = {
        "event_id": event_id,
        "event_type": event_type,
        "aggregate_id": order_id,
        "occurred_at": "2026-12-06T00:00:00Z",
        "data": {"order_id": order_id, "payment_method": "tok_visa", **data},
    }
    await js.publish(f"kassa.order.{event_type}", json.dumps(envelope).encode(), headers={"Nats-Msg-Id": event_id})
    return event_id


async def _consumed(db: AsyncEngine, event_id: str) -> bool:
    async with db.connect() as conn:
        row = (await conn.execute(sa.select(inbox.c.event_id).where(inbox.c.event_id == event_id))).first()
    return row is not None


async def test_order_cancelled_refunds_a_captured_payment_once(
    client: Client, sandbox: RunningSandbox, order_stream: JetStreamContext, payment_db: AsyncEngine
) -> None:
    payment = await client.authorize(amount=1800)
    order_id = unique("order")
    await client.capture(payment.payment_id, order_id)
    data = {"payment_id": payment.payment_id, "checkout_session_id": payment.order_ref}
    event_id = await _publish(order_stream, "OrderCancelled", order_id, data)
    await _eventually(lambda: _consumed(payment_db, event_id), "the cancellation to be consumed")
    refunded = await client.get(payment.payment_id)
    assert refunded.status == PS.PAYMENT_STATUS_REFUNDED
    assert refunded.refunded_amount.amount_minor == 1800
    assert sandbox.api.state.intents[payment.provider_payment_id].amount_refunded == 1800

    # The order service publishes it again (a redelivery or a replayed outbox row): no second effect.
    again = await _publish(order_stream, "OrderCancelled", order_id, data)
    await _eventually(lambda: _consumed(payment_db, again), "the repeat to be consumed")
    assert sandbox.api.state.count("refund", payment.provider_payment_id) == 1
    assert (await _event_types(payment_db, payment.payment_id)).count("PaymentRefunded") == 1


async def test_order_cancelled_voids_an_open_authorization_found_by_session(
    client: Client, sandbox: RunningSandbox, order_stream: JetStreamContext, payment_db: AsyncEngine
) -> None:
    payment = await client.authorize()
    order_id = unique("order")
    event_id = await _publish(order_stream, "OrderCancelled", order_id, {"checkout_session_id": payment.order_ref})
    await _eventually(lambda: _consumed(payment_db, event_id), "the cancellation to be consumed")
    assert (await client.get(payment.payment_id)).status == PS.PAYMENT_STATUS_VOIDED
    assert sandbox.api.state.intents[payment.provider_payment_id].status == "canceled"
    assert (await _event_types(payment_db, payment.payment_id))[-1] == "PaymentVoided"


async def test_order_cancelled_voids_cash_on_delivery(
    client: Client, order_stream: JetStreamContext, payment_db: AsyncEngine
) -> None:
    payment = await client.authorize("cod")
    assert payment.status == PS.PAYMENT_STATUS_CASH_ON_DELIVERY
    order_id = unique("order")
    event_id = await _publish(order_stream, "OrderCancelled", order_id, {"payment_id": payment.payment_id})
    await _eventually(lambda: _consumed(payment_db, event_id), "the cancellation to be consumed")
    assert (await client.get(payment.payment_id)).status == PS.PAYMENT_STATUS_VOIDED
    assert await _event_types(payment_db, payment.payment_id) == ["PaymentVoided"]


async def test_order_payment_failed_voids_a_hold_but_never_refunds(
    client: Client, sandbox: RunningSandbox, order_stream: JetStreamContext, payment_db: AsyncEngine
) -> None:
    held = await client.authorize("tok_threeDSecure")
    captured = await client.authorize()
    order_id = unique("order")
    await client.capture(captured.payment_id, order_id)

    first = await _publish(order_stream, "OrderPaymentFailed", unique("order"), {"payment_id": held.payment_id})
    second = await _publish(order_stream, "OrderPaymentFailed", order_id, {"payment_id": captured.payment_id})
    await _eventually(lambda: _consumed(payment_db, first), "the first failure to be consumed")
    await _eventually(lambda: _consumed(payment_db, second), "the second failure to be consumed")
    assert (await client.get(held.payment_id)).status == PS.PAYMENT_STATUS_VOIDED
    assert sandbox.api.state.intents[held.provider_payment_id].status == "canceled"
    assert (await client.get(captured.payment_id)).status == PS.PAYMENT_STATUS_CAPTURED
    assert sandbox.api.state.count("refund", captured.provider_payment_id) == 0


async def test_a_decline_whose_webhook_landed_first_is_still_answered_as_a_decline(
    client: Client, payment_db: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider's payment_failed webhook for a declined card can be applied (by another replica, or while
    this call awaits the provider's answer) before the authorization records the decline: the row is FAILED
    then, and the caller must still hear PAYMENT_DECLINED, not a payment it takes for a provider failure."""
    from payment.biz import authorize as authorize_module
    from payment.biz.common import apply
    from payment.data.repositories import SqlUnitOfWork
    from payment.model.payment import PaymentStatus, Transition

    uow = SqlUnitOfWork(payment_db)
    real_after = authorize_module.after_provider

    async def webhook_first(operation: str, payment_id: uuid.UUID) -> None:
        failed = Transition(
            PaymentStatus.FAILED,
            frozenset({PaymentStatus.PENDING}),
            {"failure_code": "card_declined", "failure_message": "Your card was declined."},
            "PaymentFailed",
            {"failure_code": "card_declined"},
        )
        assert await apply(uow, payment_id, failed) is not None
        await real_after(operation, payment_id)

    monkeypatch.setattr(authorize_module, "after_provider", webhook_first)
    key = f"auth-{uuid.uuid4().hex}"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.authorize("tok_chargeDeclined", key=key, order_ref=key)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(refused.value)
    assert info is not None and info.reason == "PAYMENT_DECLINED"
    assert info.metadata["decline_code"] == "card_declined"
    # A retry under the same key (checkout's deadline ran out on the first call) hears the same decline.
    monkeypatch.undo()
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await client.authorize("tok_chargeDeclined", key=key, order_ref=key)
    retried = error_info(again.value)
    assert retried is not None and retried.reason == "PAYMENT_DECLINED"
