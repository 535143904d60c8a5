from google.api import annotations_pb2 as _annotations_pb2
from kassa.common.v1 import address_pb2 as _address_pb2
from kassa.common.v1 import delivery_pb2 as _delivery_pb2
from kassa.common.v1 import money_pb2 as _money_pb2
from kassa.order.v1 import order_pb2 as _order_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PaymentOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYMENT_OUTCOME_UNSPECIFIED: _ClassVar[PaymentOutcome]
    PAYMENT_OUTCOME_CAPTURED: _ClassVar[PaymentOutcome]
    PAYMENT_OUTCOME_CASH_ON_DELIVERY: _ClassVar[PaymentOutcome]
    PAYMENT_OUTCOME_FAILED: _ClassVar[PaymentOutcome]
    PAYMENT_OUTCOME_AUTHORIZED: _ClassVar[PaymentOutcome]
PAYMENT_OUTCOME_UNSPECIFIED: PaymentOutcome
PAYMENT_OUTCOME_CAPTURED: PaymentOutcome
PAYMENT_OUTCOME_CASH_ON_DELIVERY: PaymentOutcome
PAYMENT_OUTCOME_FAILED: PaymentOutcome
PAYMENT_OUTCOME_AUTHORIZED: PaymentOutcome

class CreateOrderRequest(_message.Message):
    __slots__ = ("checkout_session_id", "customer_id", "email", "lines", "discounts", "totals", "shipping_address", "billing_address", "shipping_method", "payment_id", "payment_method", "notes", "authorized_amount", "delivery_window")
    CHECKOUT_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    DISCOUNTS_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    BILLING_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_METHOD_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_METHOD_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_WINDOW_FIELD_NUMBER: _ClassVar[int]
    checkout_session_id: str
    customer_id: str
    email: str
    lines: _containers.RepeatedCompositeFieldContainer[_order_pb2.OrderLine]
    discounts: _containers.RepeatedCompositeFieldContainer[_order_pb2.OrderDiscount]
    totals: _order_pb2.OrderTotals
    shipping_address: _address_pb2.Address
    billing_address: _address_pb2.Address
    shipping_method: str
    payment_id: str
    payment_method: str
    notes: str
    authorized_amount: _money_pb2.Money
    delivery_window: _delivery_pb2.DeliveryWindow
    def __init__(self, checkout_session_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., email: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[_order_pb2.OrderLine, _Mapping]]] = ..., discounts: _Optional[_Iterable[_Union[_order_pb2.OrderDiscount, _Mapping]]] = ..., totals: _Optional[_Union[_order_pb2.OrderTotals, _Mapping]] = ..., shipping_address: _Optional[_Union[_address_pb2.Address, _Mapping]] = ..., billing_address: _Optional[_Union[_address_pb2.Address, _Mapping]] = ..., shipping_method: _Optional[str] = ..., payment_id: _Optional[str] = ..., payment_method: _Optional[str] = ..., notes: _Optional[str] = ..., authorized_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., delivery_window: _Optional[_Union[_delivery_pb2.DeliveryWindow, _Mapping]] = ...) -> None: ...

class CreateOrderResponse(_message.Message):
    __slots__ = ("order", "created")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    order: _order_pb2.Order
    created: bool
    def __init__(self, order: _Optional[_Union[_order_pb2.Order, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetOrderRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class GetOrderResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: _order_pb2.Order
    def __init__(self, order: _Optional[_Union[_order_pb2.Order, _Mapping]] = ...) -> None: ...

class ListOrdersRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "customer_id")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    customer_id: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., customer_id: _Optional[str] = ...) -> None: ...

class ListOrdersResponse(_message.Message):
    __slots__ = ("orders", "next_page_token")
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[_order_pb2.Order]
    next_page_token: str
    def __init__(self, orders: _Optional[_Iterable[_Union[_order_pb2.Order, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelOrderRequest(_message.Message):
    __slots__ = ("order_id", "reason")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    reason: str
    def __init__(self, order_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelOrderResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: _order_pb2.Order
    def __init__(self, order: _Optional[_Union[_order_pb2.Order, _Mapping]] = ...) -> None: ...

class RecordPaymentRequest(_message.Message):
    __slots__ = ("order_id", "payment_id", "outcome", "cause")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    payment_id: str
    outcome: PaymentOutcome
    cause: str
    def __init__(self, order_id: _Optional[str] = ..., payment_id: _Optional[str] = ..., outcome: _Optional[_Union[PaymentOutcome, str]] = ..., cause: _Optional[str] = ...) -> None: ...

class RecordPaymentResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: _order_pb2.Order
    def __init__(self, order: _Optional[_Union[_order_pb2.Order, _Mapping]] = ...) -> None: ...

class UpdateFulfillmentRequest(_message.Message):
    __slots__ = ("order_id", "status", "tracking_number", "carrier")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TRACKING_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CARRIER_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    status: _order_pb2.OrderStatus
    tracking_number: str
    carrier: str
    def __init__(self, order_id: _Optional[str] = ..., status: _Optional[_Union[_order_pb2.OrderStatus, str]] = ..., tracking_number: _Optional[str] = ..., carrier: _Optional[str] = ...) -> None: ...

class UpdateFulfillmentResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: _order_pb2.Order
    def __init__(self, order: _Optional[_Union[_order_pb2.Order, _Mapping]] = ...) -> None: ...

class GetOrderTimelineRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class GetOrderTimelineResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_order_pb2.OrderEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[_order_pb2.OrderEvent, _Mapping]]] = ...) -> None: ...
