"""PaymentService against real Postgres/NATS and the sandbox provider over real HTTP."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from helpers import bearer, unique
from nats.js.api import DeliverPolicy
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.sandbox.server import RunningSandbox
from infra.config import Settings
from infra.events import connect
from infra.grpc_errors import error_info
from infra.webhook_signature import sign
from kassa.common.v1 import money_pb2
from kassa.payment.v1 import payment_pb2, payment_service_pb2
from kassa.payment.v1.payment_service_pb2_grpc import PaymentServiceStub
from payment.data.tables import outbox, payments

pytestmark = pytest.mark.integration

PS = payment_pb2.PaymentStatus
pb = payment_service_pb2
TIMEOUT = 20


def _usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="USD", amount_minor=amount)


def _authorize(token: str = "tok_visa", *, key: str | None = None, amount: int = 2500, order_ref: str | None = None,
               **extra: Any) -> pb.AuthorizePaymentRequest:  # fmt: skip
    return pb.AuthorizePaymentRequest(
        idempotency_key=key or unique("pay"),
        order_ref=order_ref or unique("sess"),
        amount=_usd(amount),
        payment_method=token,
        customer_id="cust-1",
        **extra,
    )


async def _expect_error(call: Any, code: grpc.StatusCode) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, err.value.details()
    info = error_info(err.value)
    assert info is not None
    return info


class Client:
    """The stub with a service token and a deadline on every call."""

    def __init__(self, stub: PaymentServiceStub, token: str) -> None:
        self.stub = stub
        self.md = bearer(token)

    async def authorize(self, request: pb.AuthorizePaymentRequest) -> payment_pb2.Payment:
        return (await self.stub.AuthorizePayment(request, metadata=self.md, timeout=TIMEOUT)).payment

    async def capture(self, payment_id: str, order_id: str, **extra: Any) -> payment_pb2.Payment:
        request = pb.CapturePaymentRequest(payment_id=payment_id, order_id=order_id, **extra)
        return (await self.stub.CapturePayment(request, metadata=self.md, timeout=TIMEOUT)).payment

    async def void(self, payment_id: str) -> payment_pb2.Payment:
        request = pb.VoidAuthorizationRequest(payment_id=payment_id, reason="checkout failed")
        return (await self.stub.VoidAuthorization(request, metadata=self.md, timeout=TIMEOUT)).payment

    async def get(self, payment_id: str) -> payment_pb2.Payment:
        request = pb.GetPaymentRequest(payment_id=payment_id)
        return (await self.stub.GetPayment(request, metadata=self.md, timeout=TIMEOUT)).payment

    async def refund(self, payment_id: str, key: str, amount: int | None = None) -> pb.RefundPaymentResponse:
        request = pb.RefundPaymentRequest(payment_id=payment_id, idempotency_key=key, reason="returned")
        if amount is not None:
            request.amount.CopyFrom(_usd(amount))
        return await self.stub.RefundPayment(request, metadata=self.md, timeout=TIMEOUT)

    async def webhook(self, payload: bytes, signature: str) -> pb.HandleWebhookResponse:
        request = pb.HandleWebhookRequest(provider="sandbox", payload=payload, signature=signature)
        return await self.stub.HandleWebhook(request, metadata=self.md, timeout=TIMEOUT)


@pytest.fixture
def client(payment_stub: PaymentServiceStub, service_token: str) -> Client:
    return Client(payment_stub, service_token)


def _event(event_type: str, intent: dict[str, Any], event_id: str | None = None) -> bytes:
    event = {"id": event_id or f"evt_{secrets.token_hex(8)}", "object": "event", "type": event_type,
             "created": int(time.time()), "data": {"object": intent}}  # fmt: skip
    return json.dumps(event).encode()


async def _events(db: AsyncEngine, payment_id: str) -> list[dict[str, Any]]:
    async with db.connect() as conn:
        rows = await conn.execute(
            sa.select(outbox.c.payload).where(outbox.c.aggregate_id == payment_id).order_by(outbox.c.created_at)
        )
        return [r.payload for r in rows]


# -- authorize --------------------------------------------------------------------------------------------


async def test_authorize_capture_and_second_capture_is_a_no_op(
    client: Client, sandbox: RunningSandbox, payment_db: AsyncEngine
) -> None:
    payment = await client.authorize(_authorize())
    assert payment.status == PS.PAYMENT_STATUS_AUTHORIZED
    assert payment.provider == "sandbox"
    intent_id = payment.provider_payment_id
    assert sandbox.api.state.intents[intent_id].status == "requires_capture"

    order_id = unique("order")
    captured = await client.capture(payment.payment_id, order_id)
    assert captured.status == PS.PAYMENT_STATUS_CAPTURED
    assert captured.order_id == order_id
    assert captured.captured_amount.amount_minor == 2500
    again = await client.capture(payment.payment_id, order_id)
    assert again.status == PS.PAYMENT_STATUS_CAPTURED
    assert sandbox.api.state.count("capture", intent_id) == 1
    assert sandbox.api.state.intents[intent_id].amount_received == 2500

    events = await _events(payment_db, payment.payment_id)
    assert [e["event_type"] for e in events] == ["PaymentAuthorized", "PaymentCaptured"]
    data = events[1]["data"]
    assert data["order_id"] == order_id
    assert data["order_ref"] == payment.order_ref
    assert data["amount"] == {"currency_code": "USD", "amount_minor": 2500}


async def test_retry_with_same_key_returns_same_payment_and_makes_no_second_intent(
    client: Client, sandbox: RunningSandbox
) -> None:
    request = _authorize()
    first = await client.authorize(request)
    second = await client.authorize(request)
    assert second.payment_id == first.payment_id
    assert second.provider_payment_id == first.provider_payment_id
    assert len(sandbox.api.state.find_by_key(request.idempotency_key)) == 1
    assert sandbox.api.state.count("create", first.provider_payment_id) == 1


async def test_concurrent_authorizations_with_one_key_make_one_intent(client: Client, sandbox: RunningSandbox) -> None:
    request = _authorize()
    results = await asyncio.gather(*(client.authorize(request) for _ in range(4)))
    assert len({p.payment_id for p in results}) == 1
    assert len(sandbox.api.state.find_by_key(request.idempotency_key)) == 1


async def test_same_key_for_a_different_payment_is_refused(client: Client) -> None:
    request = _authorize()
    await client.authorize(request)
    changed = pb.AuthorizePaymentRequest()
    changed.CopyFrom(request)
    changed.amount.amount_minor = 9999
    info = await _expect_error(client.authorize(changed), grpc.StatusCode.ALREADY_EXISTS)
    assert info.reason == "IDEMPOTENCY_KEY_REUSED"


@pytest.mark.parametrize(("token", "code"), [("tok_chargeDeclined", "card_declined"),
                                             ("tok_insufficientFunds", "insufficient_funds")])  # fmt: skip
async def test_decline_and_its_retry_return_the_same_decline(
    client: Client, sandbox: RunningSandbox, payment_db: AsyncEngine, token: str, code: str
) -> None:
    request = _authorize(token)
    first = await _expect_error(client.authorize(request), grpc.StatusCode.FAILED_PRECONDITION)
    assert first.reason == "PAYMENT_DECLINED"
    assert first.metadata["decline_code"] == code
    again = await _expect_error(client.authorize(request), grpc.StatusCode.FAILED_PRECONDITION)
    assert again.reason == "PAYMENT_DECLINED"
    assert again.metadata["payment_id"] == first.metadata["payment_id"]
    assert len(sandbox.api.state.find_by_key(request.idempotency_key)) == 1
    payment = await client.get(first.metadata["payment_id"])
    assert payment.status == PS.PAYMENT_STATUS_DECLINED
    assert payment.failure_code == code
    events = await _events(payment_db, payment.payment_id)
    assert [e["event_type"] for e in events] == ["PaymentDeclined"]


async def test_timeout_is_unavailable_and_void_leaves_nothing_authorized(
    client: Client, sandbox: RunningSandbox
) -> None:
    request = _authorize("tok_timeout")
    info = await _expect_error(client.authorize(request), grpc.StatusCode.UNAVAILABLE)
    assert info.reason == "PAYMENT_PROVIDER_UNAVAILABLE"
    payment_id = info.metadata["payment_id"]
    pending = await client.get(payment_id)
    assert pending.status == PS.PAYMENT_STATUS_PENDING  # outcome unknown
    [intent] = sandbox.api.state.find_by_key(request.idempotency_key)
    assert intent.status == "requires_capture"  # the processor did authorize it

    voided = await client.void(payment_id)
    assert voided.status == PS.PAYMENT_STATUS_VOIDED
    assert voided.provider_payment_id == intent.id
    assert sandbox.api.state.intents[intent.id].status == "canceled"
    assert [i.status for i in sandbox.api.state.find_by_key(request.idempotency_key)] == ["canceled"]
    # A late retry of the authorization returns the void and creates nothing new.
    retried = await client.authorize(request)
    assert retried.status == PS.PAYMENT_STATUS_VOIDED
    assert len(sandbox.api.state.find_by_key(request.idempotency_key)) == 1


async def test_processing_error_is_unavailable_and_leaves_nothing(client: Client, sandbox: RunningSandbox) -> None:
    request = _authorize("tok_processingError")
    info = await _expect_error(client.authorize(request), grpc.StatusCode.UNAVAILABLE)
    assert sandbox.api.state.find_by_key(request.idempotency_key) == []
    # The provider has no intent for the key: nothing was ever held, the payment failed.
    failed = await client.void(info.metadata["payment_id"])
    assert failed.status == PS.PAYMENT_STATUS_FAILED
    assert failed.failure_code == "authorization_not_found"


async def test_unknown_token_is_declined(client: Client) -> None:
    info = await _expect_error(client.authorize(_authorize("tok_unknown")), grpc.StatusCode.FAILED_PRECONDITION)
    assert info.reason == "PAYMENT_DECLINED"
    assert info.metadata["decline_code"] == "invalid_payment_method"


async def test_three_d_secure_requires_action_then_webhook_authorizes(
    client: Client, sandbox: RunningSandbox, settings: Settings, payment_db: AsyncEngine
) -> None:
    payment = await client.authorize(_authorize("tok_threeDSecure", return_url="https://shop.test/back"))
    assert payment.status == PS.PAYMENT_STATUS_REQUIRES_ACTION
    assert payment.next_action_url == f"{sandbox.url}/v1/3ds/{payment.provider_payment_id}"
    outcome = sandbox.api.state.complete_action(payment.provider_payment_id, succeed=True)
    [(event_type, intent)] = outcome.events
    body = _event(event_type, intent)
    answer = await client.webhook(body, sign(settings.webhook_secret, body))
    assert not answer.duplicate
    authorized = await client.get(payment.payment_id)
    assert authorized.status == PS.PAYMENT_STATUS_AUTHORIZED
    assert authorized.next_action_url == ""
    events = await _events(payment_db, payment.payment_id)
    assert [e["event_type"] for e in events] == ["PaymentRequiresAction", "PaymentAuthorized"]
    assert events[1]["data"]["order_ref"] == payment.order_ref


async def test_cash_on_delivery_calls_no_provider_and_cannot_be_captured(
    client: Client, sandbox: RunningSandbox
) -> None:
    request = _authorize("cod")
    payment = await client.authorize(request)
    assert payment.status == PS.PAYMENT_STATUS_CASH_ON_DELIVERY
    assert payment.provider_payment_id == ""
    assert sandbox.api.state.find_by_key(request.idempotency_key) == []
    info = await _expect_error(client.capture(payment.payment_id, unique("order")), grpc.StatusCode.FAILED_PRECONDITION)
    assert info.metadata["status"] == "CASH_ON_DELIVERY"


# -- validation and access ---------------------------------------------------------------------------------


@pytest.mark.parametrize("card", ["4242424242424242", "4242 4242 4242 4242"])
async def test_card_number_is_refused_before_anything_is_written(
    client: Client, payment_db: AsyncEngine, card: str
) -> None:
    request = _authorize(card)
    info = await _expect_error(client.authorize(request), grpc.StatusCode.INVALID_ARGUMENT)
    assert info.metadata["field"] == "payment_method"
    async with payment_db.connect() as conn:
        count = await conn.scalar(
            sa.select(sa.func.count()).where(payments.c.idempotency_key == request.idempotency_key)
        )
    assert count == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [({"idempotency_key": " "}, "idempotency_key"), ({"order_ref": ""}, "order_ref"),
     ({"amount": money_pb2.Money(currency_code="USD", amount_minor=0)}, "amount.amount_minor"),
     ({"amount": money_pb2.Money(currency_code="usd", amount_minor=100)}, "amount.currency_code"),
     ({"payment_method": "paypal"}, "payment_method"), ({"return_url": "javascript:alert(1)"}, "return_url"),
     # Control characters (a NUL reached Postgres: INTERNAL) in anything stored or passed on.
     ({"idempotency_key": "key\x00"}, "idempotency_key"), ({"order_ref": "ord\x00"}, "order_ref"),
     # The key goes to the provider as an HTTP header: a non-ASCII one made httpx raise (INTERNAL).
     ({"idempotency_key": "clé-\U0001f600"}, "idempotency_key"),
     ({"customer_id": "cust\x00"}, "customer_id"), ({"payment_method": "tok_visa\x00"}, "payment_method"),
     ({"customer_email": "ada\x00@example.com"}, "customer_email"),
     ({"return_url": "https://shop.example.com/\x00"}, "return_url")],
)  # fmt: skip
async def test_invalid_authorize_names_the_field(client: Client, change: dict[str, Any], field: str) -> None:
    request = _authorize()
    for name, value in change.items():
        if isinstance(value, money_pb2.Money):
            getattr(request, name).CopyFrom(value)
        else:
            setattr(request, name, value)
    info = await _expect_error(client.authorize(request), grpc.StatusCode.INVALID_ARGUMENT)
    assert info.metadata["field"] == field


async def test_missing_amount_is_invalid(client: Client) -> None:
    request = _authorize()
    request.ClearField("amount")
    info = await _expect_error(client.authorize(request), grpc.StatusCode.INVALID_ARGUMENT)
    assert info.metadata["field"] == "amount"


async def test_customers_cannot_call_the_payment_service(
    payment_stub: PaymentServiceStub, customer_token: str, client: Client
) -> None:
    md = bearer(customer_token)
    info = await _expect_error(
        payment_stub.AuthorizePayment(_authorize(), metadata=md, timeout=TIMEOUT), grpc.StatusCode.PERMISSION_DENIED
    )
    assert info.reason == "PERMISSION_DENIED"
    payment = await client.authorize(_authorize())
    await _expect_error(
        payment_stub.GetPayment(pb.GetPaymentRequest(payment_id=payment.payment_id), metadata=md, timeout=TIMEOUT),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await _expect_error(
        payment_stub.CapturePayment(pb.CapturePaymentRequest(payment_id=payment.payment_id, order_id="o"),
                                    metadata=md, timeout=TIMEOUT),
        grpc.StatusCode.PERMISSION_DENIED,
    )  # fmt: skip
    await _expect_error(payment_stub.GetPayment(pb.GetPaymentRequest(payment_id=payment.payment_id), timeout=TIMEOUT),
                        grpc.StatusCode.UNAUTHENTICATED)  # fmt: skip


async def test_admin_may_read_payments(payment_stub: PaymentServiceStub, admin_token: str, client: Client) -> None:
    payment = await client.authorize(_authorize())
    read = await payment_stub.GetPayment(
        pb.GetPaymentRequest(payment_id=payment.payment_id), metadata=bearer(admin_token), timeout=TIMEOUT
    )
    assert read.payment.payment_id == payment.payment_id
    assert read.payment.amount.amount_minor == 2500


async def test_get_unknown_and_malformed_ids(client: Client) -> None:
    await _expect_error(client.get(str(uuid.uuid4())), grpc.StatusCode.NOT_FOUND)
    info = await _expect_error(client.get("not-a-uuid"), grpc.StatusCode.INVALID_ARGUMENT)
    assert info.metadata["field"] == "payment_id"


# -- capture, void, refund ------------------------------------------------------------------------------------


async def test_concurrent_captures_reach_the_provider_once(client: Client, sandbox: RunningSandbox) -> None:
    payment = await client.authorize(_authorize())
    order_id = unique("order")
    results = await asyncio.gather(*(client.capture(payment.payment_id, order_id) for _ in range(3)),
                                   return_exceptions=True)  # fmt: skip
    done = [r for r in results if isinstance(r, payment_pb2.Payment)]
    assert done
    assert all(r.status == PS.PAYMENT_STATUS_CAPTURED for r in done)
    for failure in (r for r in results if not isinstance(r, payment_pb2.Payment)):
        assert isinstance(failure, grpc.aio.AioRpcError)
        assert failure.code() == grpc.StatusCode.UNAVAILABLE  # "in progress": safe to retry
    assert sandbox.api.state.count("capture", payment.provider_payment_id) == 1
    assert (await client.capture(payment.payment_id, order_id)).status == PS.PAYMENT_STATUS_CAPTURED


async def test_a_second_payment_cannot_be_captured_for_the_same_order(client: Client, sandbox: RunningSandbox) -> None:
    order_id = unique("order")
    first = await client.authorize(_authorize())
    second = await client.authorize(_authorize())
    await client.capture(first.payment_id, order_id)
    info = await _expect_error(client.capture(second.payment_id, order_id), grpc.StatusCode.FAILED_PRECONDITION)
    assert info.metadata["order_id"] == order_id
    assert sandbox.api.state.count("capture", second.provider_payment_id) == 0
    assert (await client.get(second.payment_id)).status == PS.PAYMENT_STATUS_AUTHORIZED


async def test_partial_capture_and_amount_checks(client: Client) -> None:
    payment = await client.authorize(_authorize(amount=5000))
    info = await _expect_error(client.capture(payment.payment_id, "o-1", amount=_usd(5001)),
                               grpc.StatusCode.INVALID_ARGUMENT)  # fmt: skip
    assert info.metadata["field"] == "amount.amount_minor"
    eur = money_pb2.Money(currency_code="EUR", amount_minor=100)
    info = await _expect_error(client.capture(payment.payment_id, "o-1", amount=eur), grpc.StatusCode.INVALID_ARGUMENT)
    assert info.metadata["field"] == "amount.currency_code"
    captured = await client.capture(payment.payment_id, unique("order"), amount=_usd(3000))
    assert captured.captured_amount.amount_minor == 3000


async def test_void_then_void_again_and_capture_refused(client: Client, sandbox: RunningSandbox) -> None:
    payment = await client.authorize(_authorize())
    voided = await client.void(payment.payment_id)
    assert voided.status == PS.PAYMENT_STATUS_VOIDED
    assert sandbox.api.state.intents[payment.provider_payment_id].status == "canceled"
    assert (await client.void(payment.payment_id)).status == PS.PAYMENT_STATUS_VOIDED
    assert sandbox.api.state.count("cancel", payment.provider_payment_id) == 1
    await _expect_error(client.capture(payment.payment_id, unique("order")), grpc.StatusCode.FAILED_PRECONDITION)


async def test_a_void_reason_may_span_lines_but_holds_no_other_control_character(client: Client) -> None:
    """A compensation quotes the error that caused it; a line break in it must not leave the authorization open."""
    payment = await client.authorize(_authorize())
    request = pb.VoidAuthorizationRequest(payment_id=payment.payment_id, reason="failed: terminating\n[SQL: …]")
    with_nul = pb.VoidAuthorizationRequest(payment_id=payment.payment_id, reason="checkout failed\x00")
    info = await _expect_error(client.stub.VoidAuthorization(with_nul, metadata=client.md, timeout=TIMEOUT),
                               grpc.StatusCode.INVALID_ARGUMENT)  # fmt: skip
    assert info.metadata["field"] == "reason"
    voided = (await client.stub.VoidAuthorization(request, metadata=client.md, timeout=TIMEOUT)).payment
    assert voided.status == PS.PAYMENT_STATUS_VOIDED


async def test_void_after_capture_is_refused(client: Client, sandbox: RunningSandbox) -> None:
    payment = await client.authorize(_authorize())
    await client.capture(payment.payment_id, unique("order"))
    info = await _expect_error(client.void(payment.payment_id), grpc.StatusCode.FAILED_PRECONDITION)
    assert info.metadata["status"] == "CAPTURED"
    assert sandbox.api.state.intents[payment.provider_payment_id].status == "succeeded"


async def test_void_of_a_decline_is_a_no_op(client: Client) -> None:
    info = await _expect_error(client.authorize(_authorize("tok_chargeDeclined")), grpc.StatusCode.FAILED_PRECONDITION)
    assert (await client.void(info.metadata["payment_id"])).status == PS.PAYMENT_STATUS_DECLINED


async def test_refunds_are_idempotent_and_bounded_by_the_capture(
    client: Client, sandbox: RunningSandbox, payment_db: AsyncEngine
) -> None:
    payment = await client.authorize(_authorize(amount=1000))
    await _expect_error(client.refund(payment.payment_id, unique("r")), grpc.StatusCode.FAILED_PRECONDITION)
    await client.capture(payment.payment_id, unique("order"))
    key = unique("refund")
    first = await client.refund(payment.payment_id, key, 300)
    assert first.payment.status == PS.PAYMENT_STATUS_PARTIALLY_REFUNDED
    assert first.payment.refunded_amount.amount_minor == 300
    again = await client.refund(payment.payment_id, key, 300)
    assert again.refund_id == first.refund_id
    assert sandbox.api.state.count("refund", payment.provider_payment_id) == 1
    info = await _expect_error(client.refund(payment.payment_id, key, 200), grpc.StatusCode.ALREADY_EXISTS)
    assert info.reason == "IDEMPOTENCY_KEY_REUSED"
    info = await _expect_error(client.refund(payment.payment_id, unique("r"), 701), grpc.StatusCode.FAILED_PRECONDITION)
    assert info.reason == "REFUND_EXCEEDS_CAPTURE"
    assert info.metadata["refundable_minor"] == "700"
    rest = await client.refund(payment.payment_id, unique("r"))
    assert rest.payment.status == PS.PAYMENT_STATUS_REFUNDED
    assert rest.payment.refunded_amount.amount_minor == 1000
    assert sandbox.api.state.intents[payment.provider_payment_id].amount_refunded == 1000
    refunds = [e for e in await _events(payment_db, payment.payment_id) if e["event_type"] == "PaymentRefunded"]
    assert [e["data"]["refund_amount"]["amount_minor"] for e in refunds] == [300, 700]


# -- webhooks -----------------------------------------------------------------------------------------------------


async def test_webhook_with_a_bad_signature_is_refused(client: Client, settings: Settings) -> None:
    payment = await client.authorize(_authorize())
    intent = {"id": payment.provider_payment_id, "object": "payment_intent", "status": "canceled", "metadata": {}}
    body = _event("payment_intent.canceled", intent)
    info = await _expect_error(client.webhook(body, sign("wrong-secret", body)), grpc.StatusCode.PERMISSION_DENIED)
    assert info.reason == "PERMISSION_DENIED"
    tampered = body.replace(b"canceled", b"cancelled")
    await _expect_error(
        client.webhook(tampered, sign(settings.webhook_secret, body)), grpc.StatusCode.PERMISSION_DENIED
    )
    assert (await client.get(payment.payment_id)).status == PS.PAYMENT_STATUS_AUTHORIZED


async def test_duplicate_webhook_is_processed_once(client: Client, settings: Settings, payment_db: AsyncEngine) -> None:
    payment = await client.authorize(_authorize())
    intent = {"id": payment.provider_payment_id, "object": "payment_intent", "status": "canceled", "amount": 2500,
              "metadata": {"payment_id": payment.payment_id}}  # fmt: skip
    body = _event("payment_intent.canceled", intent)
    first = await client.webhook(body, sign(settings.webhook_secret, body))
    second = await client.webhook(body, sign(settings.webhook_secret, body))
    assert not first.duplicate
    assert second.duplicate
    assert second.event_id == first.event_id
    assert (await client.get(payment.payment_id)).status == PS.PAYMENT_STATUS_VOIDED
    voids = [e for e in await _events(payment_db, payment.payment_id) if e["event_type"] == "PaymentVoided"]
    assert len(voids) == 1


async def test_out_of_order_webhooks_only_move_forward(
    client: Client, settings: Settings, sandbox: RunningSandbox, payment_db: AsyncEngine
) -> None:
    payment = await client.authorize(_authorize())
    await client.capture(payment.payment_id, unique("order"))
    intent = sandbox.api.state.intents[payment.provider_payment_id].to_json()
    # The authorization notice arrives after the capture: it must change nothing.
    late = _event("payment_intent.amount_capturable_updated", {**intent, "status": "requires_capture"})
    answer = await client.webhook(late, sign(settings.webhook_secret, late))
    assert not answer.duplicate
    assert (await client.get(payment.payment_id)).status == PS.PAYMENT_STATUS_CAPTURED
    canceled = _event("payment_intent.canceled", {**intent, "status": "canceled"})
    await client.webhook(canceled, sign(settings.webhook_secret, canceled))
    assert (await client.get(payment.payment_id)).status == PS.PAYMENT_STATUS_CAPTURED
    types = [e["event_type"] for e in await _events(payment_db, payment.payment_id)]
    assert types == ["PaymentAuthorized", "PaymentCaptured"]


async def test_failed_webhook_after_a_timeout_marks_the_payment_failed(
    client: Client, settings: Settings, sandbox: RunningSandbox, payment_db: AsyncEngine
) -> None:
    payment = await client.authorize(_authorize("tok_threeDSecure"))
    outcome = sandbox.api.state.complete_action(payment.provider_payment_id, succeed=False)
    [(event_type, intent)] = outcome.events
    body = _event(event_type, intent)
    await client.webhook(body, sign(settings.webhook_secret, body))
    failed = await client.get(payment.payment_id)
    assert failed.status == PS.PAYMENT_STATUS_FAILED
    assert failed.failure_code == "authentication_required"
    events = await _events(payment_db, payment.payment_id)
    assert events[-1]["event_type"] == "PaymentFailed"
    assert events[-1]["data"]["order_ref"] == payment.order_ref


async def test_webhook_for_an_unknown_provider_or_garbage(client: Client, settings: Settings) -> None:
    request = pb.HandleWebhookRequest(provider="paypal", payload=b"{}", signature="t=1,v1=00")
    info = await _expect_error(client.stub.HandleWebhook(request, metadata=client.md, timeout=TIMEOUT),
                               grpc.StatusCode.INVALID_ARGUMENT)  # fmt: skip
    assert info.metadata["field"] == "provider"
    garbage = b"not json"
    info = await _expect_error(client.webhook(garbage, sign(settings.webhook_secret, garbage)),
                               grpc.StatusCode.INVALID_ARGUMENT)  # fmt: skip
    assert info.metadata["field"] == "payload"


async def test_events_reach_jetstream(client: Client, payment_settings: Settings) -> None:
    """The outbox publisher delivers PaymentCaptured to kassa.payment.PaymentCaptured."""
    assert payment_settings.nats_url
    nc, js = await connect(payment_settings.nats_url, "payment-tests")
    try:
        payment = await client.authorize(_authorize())
        await client.capture(payment.payment_id, unique("order"))
        sub = await js.subscribe("kassa.payment.PaymentCaptured", ordered_consumer=True,
                                 deliver_policy=DeliverPolicy.ALL)  # fmt: skip
        found = None
        while found is None:
            msg = await sub.next_msg(timeout=10)
            try:
                envelope = json.loads(msg.data)
            except ValueError:
                continue  # other suites publish malformed events on the shared stack on purpose
            if envelope.get("aggregate_id") == payment.payment_id:
                found = envelope
        assert found["data"]["captured_amount"]["amount_minor"] == 2500
        assert msg.headers is not None
        assert msg.headers["Nats-Msg-Id"] == found["event_id"]
    finally:
        await nc.close()


@pytest.mark.parametrize(
    "event",
    [
        {"id": "evt_\x00", "type": "payment_intent.canceled"},
        {"id": "evt_" + "x" * 3000, "type": "payment_intent.canceled"},
        {"id": "evt_1", "type": "payment_intent.\x00"},
        {"id": "evt_2", "type": "payment_intent.canceled",
         "data": {"object": {"id": "pi_\x00", "object": "payment_intent"}}},
        {"id": "evt_3", "type": "payment_intent.payment_failed",
         "data": {"object": {"id": "pi_1", "object": "payment_intent", "last_payment_error": {"message": "no\x00"}}}},
        # JSON's Infinity: int(float("inf")) raised OverflowError, which nothing caught (INTERNAL).
        {"id": "evt_5", "type": "payment_intent.amount_capturable_updated",
         "data": {"object": {"id": "pi_1", "object": "payment_intent", "amount": float("inf")}}},
        {"id": "evt_4", "type": "payment_intent.succeeded",
         "data": {"object": {"id": "pi_1", "object": "payment_intent", "status": "succeeded", "amount_received": -5}}},
    ],
)  # fmt: skip
async def test_a_signed_event_postgres_cannot_hold_is_refused_naming_payload(
    client: Client, settings: Settings, event: dict[str, Any]
) -> None:
    """The signature proves who sent it, not that its ids and texts are storable (a NUL event id was a 500)."""
    payment = await client.authorize(_authorize())
    obj = event.get("data", {}).get("object")
    if obj is not None:
        obj["metadata"] = {"payment_id": payment.payment_id}
    body = json.dumps({**event, "id": event["id"].replace("evt_", f"evt_{secrets.token_hex(4)}", 1)}).encode()
    info = await _expect_error(
        client.webhook(body, sign(settings.webhook_secret, body)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert info.metadata["field"] == "payload"
    assert (await client.get(payment.payment_id)).status == payment.status
