"""PaymentService servicer: privileged callers only; validate, pb -> model, call biz, model -> pb."""

from __future__ import annotations

import uuid
from typing import Any

from infra.auth import require_privileged
from infra.errors import InvalidArgument
from infra.money import Money, validate_currency
from infra.pb import money_from_pb, money_to_pb, timestamp_to_pb
from infra.validation import MAX_AMOUNT_MINOR, check_text
from kassa.common.v1 import money_pb2
from kassa.payment.v1 import payment_pb2, payment_service_pb2, payment_service_pb2_grpc
from payment.biz.authorize import AuthorizeCommand, AuthorizePayment
from payment.biz.capture import CapturePayment
from payment.biz.get import GetPayment, RefreshPayment
from payment.biz.refund import RefundPayment
from payment.biz.void import VoidAuthorization, VoidByKey
from payment.biz.webhook import HandleWebhook
from payment.model.payment import Payment, PaymentStatus, payment_method_error

__all__ = ["PaymentServiceServicer"]

_MAX_TEXT = 255
_MAX_AMOUNT = MAX_AMOUNT_MINOR
_MAX_PAYLOAD = 256 * 1024

PS = payment_pb2.PaymentStatus
_STATUS_PB = {
    # Unknown outcome (provider timed out): neither held nor failed as far as we know.
    PaymentStatus.PENDING: PS.PAYMENT_STATUS_PENDING,
    PaymentStatus.REQUIRES_ACTION: PS.PAYMENT_STATUS_REQUIRES_ACTION,
    PaymentStatus.AUTHORIZED: PS.PAYMENT_STATUS_AUTHORIZED,
    # A capture or void in flight: the money is still only held.
    PaymentStatus.CAPTURING: PS.PAYMENT_STATUS_AUTHORIZED,
    PaymentStatus.VOIDING: PS.PAYMENT_STATUS_AUTHORIZED,
    PaymentStatus.CAPTURED: PS.PAYMENT_STATUS_CAPTURED,
    PaymentStatus.PARTIALLY_REFUNDED: PS.PAYMENT_STATUS_PARTIALLY_REFUNDED,
    PaymentStatus.REFUNDED: PS.PAYMENT_STATUS_REFUNDED,
    PaymentStatus.VOIDED: PS.PAYMENT_STATUS_VOIDED,
    PaymentStatus.DECLINED: PS.PAYMENT_STATUS_DECLINED,
    PaymentStatus.FAILED: PS.PAYMENT_STATUS_FAILED,
    PaymentStatus.CASH_ON_DELIVERY: PS.PAYMENT_STATUS_CASH_ON_DELIVERY,
}


def _text(value: str, field: str, *, required: bool = True) -> str:
    value = value.strip()
    if required and not value:
        raise InvalidArgument(field, "is required")
    return check_text(field, value, max_length=_MAX_TEXT)


def _reason(value: str) -> str:
    """A void's or refund's reason: free text, kept and logged, so line breaks are fine but not other controls."""
    return check_text("reason", value.strip(), max_length=_MAX_TEXT, multiline=True)


def _header_safe(value: str, field: str) -> str:
    """A value the provider receives as an HTTP header (the authorization's Idempotency-Key): printable ASCII."""
    if not (value.isascii() and value.isprintable()):
        raise InvalidArgument(field, "must be printable ASCII (it is sent to the payment provider as a header)")
    return value


def _uuid(value: str, field: str) -> uuid.UUID:
    if not value:
        raise InvalidArgument(field, "is required")
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise InvalidArgument(field, "must be a UUID") from exc


def _money(pb: money_pb2.Money, field: str) -> Money:
    problem = validate_currency(pb.currency_code)
    if problem:
        raise InvalidArgument(f"{field}.currency_code", problem)
    if not 0 < pb.amount_minor <= _MAX_AMOUNT:
        raise InvalidArgument(f"{field}.amount_minor", "must be a positive amount in the currency's minor unit")
    return money_from_pb(pb)


def _optional_money(request: Any, field: str) -> Money | None:
    return _money(getattr(request, field), field) if request.HasField(field) else None


def to_pb(p: Payment) -> payment_pb2.Payment:
    return payment_pb2.Payment(
        payment_id=str(p.payment_id),
        order_ref=p.order_ref,
        order_id=p.order_id or "",
        status=_STATUS_PB[p.status],
        amount=money_to_pb(p.amount),
        captured_amount=money_to_pb(p.captured),
        refunded_amount=money_to_pb(p.refunded),
        provider=p.provider,
        provider_payment_id=p.provider_payment_id or "",
        payment_method=p.payment_method,
        next_action_url=p.next_action_url or "",
        failure_code=p.failure_code or "",
        failure_message=p.failure_message or "",
        created_at=timestamp_to_pb(p.created_at),
        updated_at=timestamp_to_pb(p.updated_at),
    )


class PaymentServiceServicer(payment_service_pb2_grpc.PaymentServiceServicer):
    def __init__(
        self,
        *,
        authorize: AuthorizePayment,
        capture: CapturePayment,
        void: VoidAuthorization,
        void_by_key: VoidByKey,
        refund: RefundPayment,
        get: GetPayment,
        refresh: RefreshPayment,
        webhook: HandleWebhook,
    ) -> None:
        self._authorize = authorize
        self._capture = capture
        self._void = void
        self._void_by_key = void_by_key
        self._refund = refund
        self._get = get
        self._refresh = refresh
        self._webhook = webhook

    async def AuthorizePayment(
        self, request: payment_service_pb2.AuthorizePaymentRequest, context: Any
    ) -> payment_service_pb2.AuthorizePaymentResponse:
        require_privileged()
        method = request.payment_method.strip()
        problem = payment_method_error(method) if method else "is required"
        if problem:
            raise InvalidArgument("payment_method", problem)
        if not request.HasField("amount"):
            raise InvalidArgument("amount", "is required")
        check_text("payment_method", method, max_length=_MAX_TEXT)
        _text(request.customer_email, "customer_email", required=False)  # not stored, but never garbage
        return_url = _text(request.return_url, "return_url", required=False)
        if return_url and not return_url.startswith(("https://", "http://")):
            raise InvalidArgument("return_url", "must be an http(s) URL")
        cmd = AuthorizeCommand(
            idempotency_key=_header_safe(_text(request.idempotency_key, "idempotency_key"), "idempotency_key"),
            order_ref=_text(request.order_ref, "order_ref"),
            customer_id=_text(request.customer_id, "customer_id", required=False),
            amount=_money(request.amount, "amount"),
            payment_method=method,
            return_url=return_url,
        )
        payment = await self._authorize(cmd)
        return payment_service_pb2.AuthorizePaymentResponse(payment=to_pb(payment))

    async def CapturePayment(
        self, request: payment_service_pb2.CapturePaymentRequest, context: Any
    ) -> payment_service_pb2.CapturePaymentResponse:
        require_privileged()
        payment_id = _uuid(request.payment_id, "payment_id")
        order_id = _text(request.order_id, "order_id")
        amount = _optional_money(request, "amount")
        payment = await self._capture(payment_id, order_id, amount)
        return payment_service_pb2.CapturePaymentResponse(payment=to_pb(payment))

    async def VoidAuthorization(
        self, request: payment_service_pb2.VoidAuthorizationRequest, context: Any
    ) -> payment_service_pb2.VoidAuthorizationResponse:
        require_privileged()
        reason = _reason(request.reason)
        if request.payment_id or not request.idempotency_key:
            payment_id = _uuid(request.payment_id, "payment_id")
            payment: Payment | None = await self._void(payment_id, reason)
        else:
            key = _text(request.idempotency_key, "idempotency_key")
            payment = await self._void_by_key(key, reason)
        if payment is None:
            # No payment for that key: nothing is held, which is what the caller wants.
            return payment_service_pb2.VoidAuthorizationResponse()
        return payment_service_pb2.VoidAuthorizationResponse(payment=to_pb(payment))

    async def RefundPayment(
        self, request: payment_service_pb2.RefundPaymentRequest, context: Any
    ) -> payment_service_pb2.RefundPaymentResponse:
        require_privileged()
        if request.payment_id or not request.order_id:
            payment_id: uuid.UUID | None = _uuid(request.payment_id, "payment_id")
            order_id = ""
        else:
            payment_id, order_id = None, _text(request.order_id, "order_id")
        key = _text(request.idempotency_key, "idempotency_key")
        _reason(request.reason)
        amount = _optional_money(request, "amount")
        payment = await self._refund.find(payment_id, order_id)
        payment, refund = await self._refund(payment, key, amount)
        return payment_service_pb2.RefundPaymentResponse(payment=to_pb(payment), refund_id=str(refund.refund_id))

    async def GetPayment(
        self, request: payment_service_pb2.GetPaymentRequest, context: Any
    ) -> payment_service_pb2.GetPaymentResponse:
        require_privileged()
        payment_id = _uuid(request.payment_id, "payment_id")
        if request.refresh:
            payment = await self._refresh(payment_id)
        else:
            payment = await self._get(payment_id)
        return payment_service_pb2.GetPaymentResponse(payment=to_pb(payment))

    async def HandleWebhook(
        self, request: payment_service_pb2.HandleWebhookRequest, context: Any
    ) -> payment_service_pb2.HandleWebhookResponse:
        require_privileged()
        provider = _text(request.provider, "provider")
        if not request.payload:
            raise InvalidArgument("payload", "is required")
        if len(request.payload) > _MAX_PAYLOAD:
            raise InvalidArgument("payload", f"must be at most {_MAX_PAYLOAD} bytes")
        signature = _text(request.signature, "signature", required=False)
        event_id, duplicate = await self._webhook(provider, request.payload, signature)
        return payment_service_pb2.HandleWebhookResponse(event_id=event_id, duplicate=duplicate)
