import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from kassa.common.v1 import money_pb2 as _money_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PaymentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYMENT_STATUS_UNSPECIFIED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_REQUIRES_ACTION: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_AUTHORIZED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_CAPTURED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_VOIDED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_DECLINED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_FAILED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_REFUNDED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_PARTIALLY_REFUNDED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_CASH_ON_DELIVERY: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_PENDING: _ClassVar[PaymentStatus]
PAYMENT_STATUS_UNSPECIFIED: PaymentStatus
PAYMENT_STATUS_REQUIRES_ACTION: PaymentStatus
PAYMENT_STATUS_AUTHORIZED: PaymentStatus
PAYMENT_STATUS_CAPTURED: PaymentStatus
PAYMENT_STATUS_VOIDED: PaymentStatus
PAYMENT_STATUS_DECLINED: PaymentStatus
PAYMENT_STATUS_FAILED: PaymentStatus
PAYMENT_STATUS_REFUNDED: PaymentStatus
PAYMENT_STATUS_PARTIALLY_REFUNDED: PaymentStatus
PAYMENT_STATUS_CASH_ON_DELIVERY: PaymentStatus
PAYMENT_STATUS_PENDING: PaymentStatus

class Payment(_message.Message):
    __slots__ = ("payment_id", "order_ref", "order_id", "status", "amount", "captured_amount", "refunded_amount", "provider", "provider_payment_id", "payment_method", "next_action_url", "failure_code", "failure_message", "created_at", "updated_at")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_REF_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_METHOD_FIELD_NUMBER: _ClassVar[int]
    NEXT_ACTION_URL_FIELD_NUMBER: _ClassVar[int]
    FAILURE_CODE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    order_ref: str
    order_id: str
    status: PaymentStatus
    amount: _money_pb2.Money
    captured_amount: _money_pb2.Money
    refunded_amount: _money_pb2.Money
    provider: str
    provider_payment_id: str
    payment_method: str
    next_action_url: str
    failure_code: str
    failure_message: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, payment_id: _Optional[str] = ..., order_ref: _Optional[str] = ..., order_id: _Optional[str] = ..., status: _Optional[_Union[PaymentStatus, str]] = ..., amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., captured_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., refunded_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., provider: _Optional[str] = ..., provider_payment_id: _Optional[str] = ..., payment_method: _Optional[str] = ..., next_action_url: _Optional[str] = ..., failure_code: _Optional[str] = ..., failure_message: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
