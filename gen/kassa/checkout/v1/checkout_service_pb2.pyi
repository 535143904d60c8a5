from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from kassa.checkout.v1 import checkout_pb2 as _checkout_pb2
from kassa.common.v1 import address_pb2 as _address_pb2
from kassa.common.v1 import money_pb2 as _money_pb2
from kassa.order.v1 import order_pb2 as _order_pb2
from kassa.payment.v1 import payment_pb2 as _payment_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StartCheckoutRequest(_message.Message):
    __slots__ = ("cart_id", "ship_to_country_code")
    CART_ID_FIELD_NUMBER: _ClassVar[int]
    SHIP_TO_COUNTRY_CODE_FIELD_NUMBER: _ClassVar[int]
    cart_id: str
    ship_to_country_code: str
    def __init__(self, cart_id: _Optional[str] = ..., ship_to_country_code: _Optional[str] = ...) -> None: ...

class StartCheckoutResponse(_message.Message):
    __slots__ = ("session", "price_changes")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    PRICE_CHANGES_FIELD_NUMBER: _ClassVar[int]
    session: _checkout_pb2.CheckoutSession
    price_changes: _containers.RepeatedCompositeFieldContainer[_checkout_pb2.PriceChange]
    def __init__(self, session: _Optional[_Union[_checkout_pb2.CheckoutSession, _Mapping]] = ..., price_changes: _Optional[_Iterable[_Union[_checkout_pb2.PriceChange, _Mapping]]] = ...) -> None: ...

class UpdateCheckoutStateRequest(_message.Message):
    __slots__ = ("session_id", "email", "shipping_address", "billing_address", "shipping_method", "payment_method", "promotion_codes", "notes", "update_mask")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    BILLING_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_METHOD_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_METHOD_FIELD_NUMBER: _ClassVar[int]
    PROMOTION_CODES_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    email: str
    shipping_address: _address_pb2.Address
    billing_address: _address_pb2.Address
    shipping_method: str
    payment_method: str
    promotion_codes: _containers.RepeatedScalarFieldContainer[str]
    notes: str
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, session_id: _Optional[str] = ..., email: _Optional[str] = ..., shipping_address: _Optional[_Union[_address_pb2.Address, _Mapping]] = ..., billing_address: _Optional[_Union[_address_pb2.Address, _Mapping]] = ..., shipping_method: _Optional[str] = ..., payment_method: _Optional[str] = ..., promotion_codes: _Optional[_Iterable[str]] = ..., notes: _Optional[str] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateCheckoutStateResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: _checkout_pb2.CheckoutSession
    def __init__(self, session: _Optional[_Union[_checkout_pb2.CheckoutSession, _Mapping]] = ...) -> None: ...

class PreviewOrderRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class PreviewOrderResponse(_message.Message):
    __slots__ = ("preview",)
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    preview: _checkout_pb2.OrderPreview
    def __init__(self, preview: _Optional[_Union[_checkout_pb2.OrderPreview, _Mapping]] = ...) -> None: ...

class ConfirmCheckoutRequest(_message.Message):
    __slots__ = ("session_id", "idempotency_key", "expected_grand_total")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_GRAND_TOTAL_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    idempotency_key: str
    expected_grand_total: _money_pb2.Money
    def __init__(self, session_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., expected_grand_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ...) -> None: ...

class ConfirmCheckoutResponse(_message.Message):
    __slots__ = ("order_id", "order_status", "payment_status", "next_action_url", "grand_total")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_STATUS_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_STATUS_FIELD_NUMBER: _ClassVar[int]
    NEXT_ACTION_URL_FIELD_NUMBER: _ClassVar[int]
    GRAND_TOTAL_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    order_status: _order_pb2.OrderStatus
    payment_status: _payment_pb2.PaymentStatus
    next_action_url: str
    grand_total: _money_pb2.Money
    def __init__(self, order_id: _Optional[str] = ..., order_status: _Optional[_Union[_order_pb2.OrderStatus, str]] = ..., payment_status: _Optional[_Union[_payment_pb2.PaymentStatus, str]] = ..., next_action_url: _Optional[str] = ..., grand_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ...) -> None: ...

class GetCheckoutSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class GetCheckoutSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: _checkout_pb2.CheckoutSession
    def __init__(self, session: _Optional[_Union[_checkout_pb2.CheckoutSession, _Mapping]] = ...) -> None: ...
