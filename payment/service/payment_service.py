"""PaymentService servicer: privileged callers only; validate (validation.py), pb -> model, call the use case,
model -> pb (convert.py)."""

from __future__ import annotations

from typing import Any

from infra.auth import require_privileged
from kassa.payment.v1 import payment_service_pb2, payment_service_pb2_grpc
from payment.biz.authorize import AuthorizePayment
from payment.biz.capture import CapturePayment
from payment.biz.get import GetPayment, RefreshPayment
from payment.biz.refund import RefundPayment
from payment.biz.void import VoidAuthorization, VoidByKey
from payment.biz.webhook import HandleWebhook
from payment.model.payment import Payment
from payment.service import validation
from payment.service.convert import to_pb

__all__ = ["PaymentServiceServicer"]


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
        payment = await self._authorize(validation.authorize_command(request))
        return payment_service_pb2.AuthorizePaymentResponse(payment=to_pb(payment))

    async def CapturePayment(
        self, request: payment_service_pb2.CapturePaymentRequest, context: Any
    ) -> payment_service_pb2.CapturePaymentResponse:
        require_privileged()
        capture = validation.capture_request(request)
        payment = await self._capture(capture.payment_id, capture.order_id, capture.amount)
        return payment_service_pb2.CapturePaymentResponse(payment=to_pb(payment))

    async def VoidAuthorization(
        self, request: payment_service_pb2.VoidAuthorizationRequest, context: Any
    ) -> payment_service_pb2.VoidAuthorizationResponse:
        require_privileged()
        void = validation.void_request(request)
        if void.payment_id is not None:
            payment: Payment | None = await self._void(void.payment_id, void.reason)
        else:
            payment = await self._void_by_key(void.idempotency_key, void.reason)
        if payment is None:
            # No payment for that key: nothing is held, which is what the caller wants.
            return payment_service_pb2.VoidAuthorizationResponse()
        return payment_service_pb2.VoidAuthorizationResponse(payment=to_pb(payment))

    async def RefundPayment(
        self, request: payment_service_pb2.RefundPaymentRequest, context: Any
    ) -> payment_service_pb2.RefundPaymentResponse:
        require_privileged()
        asked = validation.refund_request(request)
        payment = await self._refund.find(asked.payment_id, asked.order_id)
        payment, refund = await self._refund(payment, asked.idempotency_key, asked.amount)
        return payment_service_pb2.RefundPaymentResponse(payment=to_pb(payment), refund_id=str(refund.refund_id))

    async def GetPayment(
        self, request: payment_service_pb2.GetPaymentRequest, context: Any
    ) -> payment_service_pb2.GetPaymentResponse:
        require_privileged()
        payment_id = validation.payment_id(request)
        if request.refresh:
            payment = await self._refresh(payment_id)
        else:
            payment = await self._get(payment_id)
        return payment_service_pb2.GetPaymentResponse(payment=to_pb(payment))

    async def HandleWebhook(
        self, request: payment_service_pb2.HandleWebhookRequest, context: Any
    ) -> payment_service_pb2.HandleWebhookResponse:
        require_privileged()
        webhook = validation.webhook_request(request)
        event_id, duplicate = await self._webhook(webhook.provider, webhook.payload, webhook.signature)
        return payment_service_pb2.HandleWebhookResponse(event_id=event_id, duplicate=duplicate)
