import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from kassa.common.v1 import address_pb2 as _address_pb2
from kassa.common.v1 import delivery_pb2 as _delivery_pb2
from kassa.common.v1 import money_pb2 as _money_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SessionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_STATUS_UNSPECIFIED: _ClassVar[SessionStatus]
    SESSION_STATUS_OPEN: _ClassVar[SessionStatus]
    SESSION_STATUS_CONFIRMING: _ClassVar[SessionStatus]
    SESSION_STATUS_COMPLETED: _ClassVar[SessionStatus]
    SESSION_STATUS_EXPIRED: _ClassVar[SessionStatus]
    SESSION_STATUS_CANCELLED: _ClassVar[SessionStatus]
    SESSION_STATUS_AWAITING_PAYMENT: _ClassVar[SessionStatus]
SESSION_STATUS_UNSPECIFIED: SessionStatus
SESSION_STATUS_OPEN: SessionStatus
SESSION_STATUS_CONFIRMING: SessionStatus
SESSION_STATUS_COMPLETED: SessionStatus
SESSION_STATUS_EXPIRED: SessionStatus
SESSION_STATUS_CANCELLED: SessionStatus
SESSION_STATUS_AWAITING_PAYMENT: SessionStatus

class SessionLine(_message.Message):
    __slots__ = ("sku", "name", "quantity", "unit_price", "line_total", "warehouse_id")
    SKU_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    LINE_TOTAL_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    sku: str
    name: str
    quantity: int
    unit_price: _money_pb2.Money
    line_total: _money_pb2.Money
    warehouse_id: str
    def __init__(self, sku: _Optional[str] = ..., name: _Optional[str] = ..., quantity: _Optional[int] = ..., unit_price: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., line_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., warehouse_id: _Optional[str] = ...) -> None: ...

class PriceChange(_message.Message):
    __slots__ = ("sku", "old_price", "new_price")
    SKU_FIELD_NUMBER: _ClassVar[int]
    OLD_PRICE_FIELD_NUMBER: _ClassVar[int]
    NEW_PRICE_FIELD_NUMBER: _ClassVar[int]
    sku: str
    old_price: _money_pb2.Money
    new_price: _money_pb2.Money
    def __init__(self, sku: _Optional[str] = ..., old_price: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., new_price: _Optional[_Union[_money_pb2.Money, _Mapping]] = ...) -> None: ...

class AppliedDiscount(_message.Message):
    __slots__ = ("code", "amount")
    CODE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    code: str
    amount: _money_pb2.Money
    def __init__(self, code: _Optional[str] = ..., amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ...) -> None: ...

class RejectedCode(_message.Message):
    __slots__ = ("code", "reason", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    reason: str
    message: str
    def __init__(self, code: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class OrderPreview(_message.Message):
    __slots__ = ("lines", "subtotal", "discount_total", "shipping_total", "tax_total", "grand_total", "discounts", "rejected_codes", "delivery_window")
    LINES_FIELD_NUMBER: _ClassVar[int]
    SUBTOTAL_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TAX_TOTAL_FIELD_NUMBER: _ClassVar[int]
    GRAND_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DISCOUNTS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_CODES_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_WINDOW_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[SessionLine]
    subtotal: _money_pb2.Money
    discount_total: _money_pb2.Money
    shipping_total: _money_pb2.Money
    tax_total: _money_pb2.Money
    grand_total: _money_pb2.Money
    discounts: _containers.RepeatedCompositeFieldContainer[AppliedDiscount]
    rejected_codes: _containers.RepeatedCompositeFieldContainer[RejectedCode]
    delivery_window: _delivery_pb2.DeliveryWindow
    def __init__(self, lines: _Optional[_Iterable[_Union[SessionLine, _Mapping]]] = ..., subtotal: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., discount_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., shipping_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., tax_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., grand_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., discounts: _Optional[_Iterable[_Union[AppliedDiscount, _Mapping]]] = ..., rejected_codes: _Optional[_Iterable[_Union[RejectedCode, _Mapping]]] = ..., delivery_window: _Optional[_Union[_delivery_pb2.DeliveryWindow, _Mapping]] = ...) -> None: ...

class CheckoutSession(_message.Message):
    __slots__ = ("session_id", "cart_id", "customer_id", "status", "currency_code", "email", "shipping_address", "billing_address", "shipping_method", "payment_method", "promotion_codes", "notes", "lines", "preview", "expires_at", "order_id", "created_at", "updated_at")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CART_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    BILLING_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_METHOD_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_METHOD_FIELD_NUMBER: _ClassVar[int]
    PROMOTION_CODES_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    cart_id: str
    customer_id: str
    status: SessionStatus
    currency_code: str
    email: str
    shipping_address: _address_pb2.Address
    billing_address: _address_pb2.Address
    shipping_method: str
    payment_method: str
    promotion_codes: _containers.RepeatedScalarFieldContainer[str]
    notes: str
    lines: _containers.RepeatedCompositeFieldContainer[SessionLine]
    preview: OrderPreview
    expires_at: _timestamp_pb2.Timestamp
    order_id: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, session_id: _Optional[str] = ..., cart_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., status: _Optional[_Union[SessionStatus, str]] = ..., currency_code: _Optional[str] = ..., email: _Optional[str] = ..., shipping_address: _Optional[_Union[_address_pb2.Address, _Mapping]] = ..., billing_address: _Optional[_Union[_address_pb2.Address, _Mapping]] = ..., shipping_method: _Optional[str] = ..., payment_method: _Optional[str] = ..., promotion_codes: _Optional[_Iterable[str]] = ..., notes: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[SessionLine, _Mapping]]] = ..., preview: _Optional[_Union[OrderPreview, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., order_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
