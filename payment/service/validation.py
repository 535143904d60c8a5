"""The checks of PaymentService's (and PaymentAdminService's) requests, run by the servicer before the use case:
nothing is written for a bad request, and each refusal is INVALID_ARGUMENT naming the request field (DESIGN.md §4.6).

The rules every service shares (storable text, UUIDs, amounts, the payment method) are
:mod:`kernel.validation`'s; what is payment's own: an idempotency key the provider receives as an HTTP header,
a return URL, a webhook's payload size.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from infra.pb import checked_datetime, money_from_pb
from kassa.common.v1 import money_pb2
from kassa.payment.v1 import payment_admin_service_pb2 as admin_pb
from kassa.payment.v1 import payment_service_pb2 as pb
from kernel.errors import InvalidArgument
from kernel.money import Money, validate_currency
from kernel.validation import check_amount, check_payment_method, check_text, check_uuid
from payment.biz.authorize import AuthorizeCommand

__all__ = [
    "CaptureRequest",
    "RefundRequest",
    "VoidRequest",
    "WebhookRequest",
    "authorize_command",
    "capture_request",
    "failure_rates_window",
    "payment_id",
    "refund_request",
    "void_request",
    "webhook_request",
]

_MAX_TEXT = 255
_MAX_PAYLOAD = 256 * 1024


@dataclass(frozen=True)
class CaptureRequest:
    payment_id: uuid.UUID
    order_id: str
    amount: Money | None


@dataclass(frozen=True)
class VoidRequest:
    """By payment id, or (``payment_id`` None) by the authorization's idempotency key."""

    payment_id: uuid.UUID | None
    idempotency_key: str
    reason: str


@dataclass(frozen=True)
class RefundRequest:
    """Of the payment ``payment_id``, or (``payment_id`` None) of the order's captured payment."""

    payment_id: uuid.UUID | None
    order_id: str
    idempotency_key: str
    amount: Money | None


@dataclass(frozen=True)
class WebhookRequest:
    provider: str
    payload: bytes
    signature: str


def authorize_command(request: pb.AuthorizePaymentRequest) -> AuthorizeCommand:
    if not request.payment_method.strip():
        raise InvalidArgument("payment_method", "is required")
    method = check_payment_method("payment_method", request.payment_method)
    if not request.HasField("amount"):
        raise InvalidArgument("amount", "is required")
    check_text("payment_method", method, max_length=_MAX_TEXT)
    _text(request.customer_email, "customer_email", required=False)  # not stored, but never garbage
    return_url = _text(request.return_url, "return_url", required=False)
    if return_url and not return_url.startswith(("https://", "http://")):
        raise InvalidArgument("return_url", "must be an http(s) URL")
    return AuthorizeCommand(
        idempotency_key=_header_safe(_text(request.idempotency_key, "idempotency_key"), "idempotency_key"),
        order_ref=_text(request.order_ref, "order_ref"),
        customer_id=_text(request.customer_id, "customer_id", required=False),
        amount=_money(request.amount, "amount"),
        payment_method=method,
        return_url=return_url,
    )


def capture_request(request: pb.CapturePaymentRequest) -> CaptureRequest:
    return CaptureRequest(
        payment_id=_uuid(request.payment_id, "payment_id"),
        order_id=_text(request.order_id, "order_id"),
        amount=_optional_money(request, "amount"),
    )


def void_request(request: pb.VoidAuthorizationRequest) -> VoidRequest:
    reason = _reason(request.reason)
    if request.payment_id or not request.idempotency_key:
        return VoidRequest(_uuid(request.payment_id, "payment_id"), "", reason)
    return VoidRequest(None, _text(request.idempotency_key, "idempotency_key"), reason)


def refund_request(request: pb.RefundPaymentRequest) -> RefundRequest:
    if request.payment_id or not request.order_id:
        payment_id: uuid.UUID | None = _uuid(request.payment_id, "payment_id")
        order_id = ""
    else:
        payment_id, order_id = None, _text(request.order_id, "order_id")
    key = _text(request.idempotency_key, "idempotency_key")
    _reason(request.reason)
    return RefundRequest(payment_id, order_id, key, _optional_money(request, "amount"))


def payment_id(request: pb.GetPaymentRequest) -> uuid.UUID:
    return _uuid(request.payment_id, "payment_id")


def webhook_request(request: pb.HandleWebhookRequest) -> WebhookRequest:
    provider = _text(request.provider, "provider")
    if not request.payload:
        raise InvalidArgument("payload", "is required")
    if len(request.payload) > _MAX_PAYLOAD:
        raise InvalidArgument("payload", f"must be at most {_MAX_PAYLOAD} bytes")
    signature = _text(request.signature, "signature", required=False)
    return WebhookRequest(provider, request.payload, signature)


def failure_rates_window(request: admin_pb.GetPaymentFailureRatesRequest) -> tuple[datetime | None, datetime | None]:
    """PaymentAdminService.GetPaymentFailureRates: the window's ends as given (GetFailureRates fills in the
    defaults and checks start before end, at most 31 days: kernel.validation.check_window)."""
    start = checked_datetime("start_time", request.start_time) if request.HasField("start_time") else None
    end = checked_datetime("end_time", request.end_time) if request.HasField("end_time") else None
    return start, end


def _text(value: str, field: str, *, required: bool = True) -> str:
    return check_text(field, value.strip(), max_length=_MAX_TEXT, required=required)


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
    return uuid.UUID(check_uuid(field, value))


def _money(money: money_pb2.Money, field: str) -> Money:
    problem = validate_currency(money.currency_code)
    if problem:
        raise InvalidArgument(f"{field}.currency_code", problem)
    check_amount(f"{field}.amount_minor", money.amount_minor, positive=True)
    return money_from_pb(money)


def _optional_money(request: Any, field: str) -> Money | None:
    return _money(getattr(request, field), field) if request.HasField(field) else None
