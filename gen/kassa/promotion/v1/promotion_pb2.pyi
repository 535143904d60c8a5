import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from kassa.common.v1 import money_pb2 as _money_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PromotionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROMOTION_TYPE_UNSPECIFIED: _ClassVar[PromotionType]
    PROMOTION_TYPE_PERCENTAGE: _ClassVar[PromotionType]
    PROMOTION_TYPE_FIXED_AMOUNT: _ClassVar[PromotionType]
    PROMOTION_TYPE_FREE_SHIPPING: _ClassVar[PromotionType]
    PROMOTION_TYPE_BUY_X_GET_Y: _ClassVar[PromotionType]
PROMOTION_TYPE_UNSPECIFIED: PromotionType
PROMOTION_TYPE_PERCENTAGE: PromotionType
PROMOTION_TYPE_FIXED_AMOUNT: PromotionType
PROMOTION_TYPE_FREE_SHIPPING: PromotionType
PROMOTION_TYPE_BUY_X_GET_Y: PromotionType

class PromotionConditions(_message.Message):
    __slots__ = ("skus", "categories", "brands", "buy_quantity", "get_quantity")
    SKUS_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    BRANDS_FIELD_NUMBER: _ClassVar[int]
    BUY_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    GET_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    skus: _containers.RepeatedScalarFieldContainer[str]
    categories: _containers.RepeatedScalarFieldContainer[str]
    brands: _containers.RepeatedScalarFieldContainer[str]
    buy_quantity: int
    get_quantity: int
    def __init__(self, skus: _Optional[_Iterable[str]] = ..., categories: _Optional[_Iterable[str]] = ..., brands: _Optional[_Iterable[str]] = ..., buy_quantity: _Optional[int] = ..., get_quantity: _Optional[int] = ...) -> None: ...

class Promotion(_message.Message):
    __slots__ = ("promotion_id", "code", "name", "type", "percent_off", "amount_off", "usage_limit", "usage_limit_per_customer", "min_subtotal", "currency_code", "starts_at", "ends_at", "combinable", "conditions", "usage_count")
    PROMOTION_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PERCENT_OFF_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_OFF_FIELD_NUMBER: _ClassVar[int]
    USAGE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    USAGE_LIMIT_PER_CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    MIN_SUBTOTAL_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    STARTS_AT_FIELD_NUMBER: _ClassVar[int]
    ENDS_AT_FIELD_NUMBER: _ClassVar[int]
    COMBINABLE_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    USAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    promotion_id: str
    code: str
    name: str
    type: PromotionType
    percent_off: int
    amount_off: _money_pb2.Money
    usage_limit: int
    usage_limit_per_customer: int
    min_subtotal: _money_pb2.Money
    currency_code: str
    starts_at: _timestamp_pb2.Timestamp
    ends_at: _timestamp_pb2.Timestamp
    combinable: bool
    conditions: PromotionConditions
    usage_count: int
    def __init__(self, promotion_id: _Optional[str] = ..., code: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[_Union[PromotionType, str]] = ..., percent_off: _Optional[int] = ..., amount_off: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., usage_limit: _Optional[int] = ..., usage_limit_per_customer: _Optional[int] = ..., min_subtotal: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., currency_code: _Optional[str] = ..., starts_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ends_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., combinable: _Optional[bool] = ..., conditions: _Optional[_Union[PromotionConditions, _Mapping]] = ..., usage_count: _Optional[int] = ...) -> None: ...

class PromotionLine(_message.Message):
    __slots__ = ("sku", "category", "brand", "quantity", "unit_price")
    SKU_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    BRAND_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    sku: str
    category: str
    brand: str
    quantity: int
    unit_price: _money_pb2.Money
    def __init__(self, sku: _Optional[str] = ..., category: _Optional[str] = ..., brand: _Optional[str] = ..., quantity: _Optional[int] = ..., unit_price: _Optional[_Union[_money_pb2.Money, _Mapping]] = ...) -> None: ...

class AppliedPromotion(_message.Message):
    __slots__ = ("code", "promotion_id", "discount", "free_shipping")
    CODE_FIELD_NUMBER: _ClassVar[int]
    PROMOTION_ID_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    FREE_SHIPPING_FIELD_NUMBER: _ClassVar[int]
    code: str
    promotion_id: str
    discount: _money_pb2.Money
    free_shipping: bool
    def __init__(self, code: _Optional[str] = ..., promotion_id: _Optional[str] = ..., discount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., free_shipping: _Optional[bool] = ...) -> None: ...

class RejectedPromotion(_message.Message):
    __slots__ = ("code", "reason", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    reason: str
    message: str
    def __init__(self, code: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...
