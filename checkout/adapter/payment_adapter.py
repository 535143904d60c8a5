"""PaymentService client: authorize (idempotency key), capture, void (by id or authorize key), refund, get."""

from __future__ import annotations

import grpc

from checkout.adapter.base import GrpcClient
from checkout.model.catalog import AuthorizeRequest, Payment, PaymentStatus
from infra.channels import ServiceCredentials
from infra.pb import money_to_pb
from kassa.payment.v1 import payment_pb2
from kassa.payment.v1 import payment_service_pb2 as pb
from kassa.payment.v1 import payment_service_pb2_grpc as pb_grpc

__all__ = ["GrpcPaymentAdapter", "payment_status"]

_PREFIX = "PAYMENT_STATUS_"


def payment_status(value: int) -> PaymentStatus:
    return PaymentStatus(payment_pb2.PaymentStatus.Name(value).removeprefix(_PREFIX))


def _payment(p: payment_pb2.Payment) -> Payment:
    return Payment(p.payment_id, payment_status(p.status), p.next_action_url, p.failure_code, p.amount.amount_minor)


class GrpcPaymentAdapter(GrpcClient):
    def __init__(
        self, channel: grpc.aio.Channel, creds: ServiceCredentials, timeout_seconds: float, return_url: str
    ) -> None:
        super().__init__(creds, timeout_seconds)
        self._stub = pb_grpc.PaymentServiceStub(channel)
        self._return_url = return_url

    async def authorize(self, request: AuthorizeRequest) -> Payment:
        resp = await self._call(
            self._stub.AuthorizePayment,
            pb.AuthorizePaymentRequest(
                idempotency_key=request.idempotency_key,
                order_ref=request.order_ref,
                amount=money_to_pb(request.amount),
                payment_method=request.payment_method,
                customer_id=request.customer_id,
                customer_email=request.customer_email,
                return_url=self._return_url,
            ),
        )
        return _payment(resp.payment)

    async def capture(self, payment_id: str, order_id: str) -> Payment:
        resp = await self._call(
            self._stub.CapturePayment, pb.CapturePaymentRequest(payment_id=payment_id, order_id=order_id)
        )
        return _payment(resp.payment)

    async def void(self, payment_id: str, reason: str) -> Payment:
        resp = await self._call(
            self._stub.VoidAuthorization, pb.VoidAuthorizationRequest(payment_id=payment_id, reason=reason)
        )
        return _payment(resp.payment)

    async def void_by_key(self, authorize_key: str, reason: str) -> Payment | None:
        resp = await self._call(
            self._stub.VoidAuthorization, pb.VoidAuthorizationRequest(idempotency_key=authorize_key, reason=reason)
        )
        return _payment(resp.payment) if resp.payment.payment_id else None

    async def refund(self, payment_id: str, idempotency_key: str, reason: str) -> Payment:
        resp = await self._call(
            self._stub.RefundPayment,
            pb.RefundPaymentRequest(payment_id=payment_id, idempotency_key=idempotency_key, reason=reason),
        )
        return _payment(resp.payment)

    async def get(self, payment_id: str, *, refresh: bool = False) -> Payment:
        resp = await self._call(self._stub.GetPayment, pb.GetPaymentRequest(payment_id=payment_id, refresh=refresh))
        return _payment(resp.payment)
