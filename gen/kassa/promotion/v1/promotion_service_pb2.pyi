from google.api import annotations_pb2 as _annotations_pb2
from kassa.common.v1 import money_pb2 as _money_pb2
from kassa.promotion.v1 import promotion_pb2 as _promotion_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ValidatePromotionsRequest(_message.Message):
    __slots__ = ("codes", "lines", "shipping_total", "currency_code", "customer_id", "customer_email")
    CODES_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_EMAIL_FIELD_NUMBER: _ClassVar[int]
    codes: _containers.RepeatedScalarFieldContainer[str]
    lines: _containers.RepeatedCompositeFieldContainer[_promotion_pb2.PromotionLine]
    shipping_total: _money_pb2.Money
    currency_code: str
    customer_id: str
    customer_email: str
    def __init__(self, codes: _Optional[_Iterable[str]] = ..., lines: _Optional[_Iterable[_Union[_promotion_pb2.PromotionLine, _Mapping]]] = ..., shipping_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., currency_code: _Optional[str] = ..., customer_id: _Optional[str] = ..., customer_email: _Optional[str] = ...) -> None: ...

class ValidatePromotionsResponse(_message.Message):
    __slots__ = ("applied", "rejected", "discount_total", "free_shipping")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FREE_SHIPPING_FIELD_NUMBER: _ClassVar[int]
    applied: _containers.RepeatedCompositeFieldContainer[_promotion_pb2.AppliedPromotion]
    rejected: _containers.RepeatedCompositeFieldContainer[_promotion_pb2.RejectedPromotion]
    discount_total: _money_pb2.Money
    free_shipping: bool
    def __init__(self, applied: _Optional[_Iterable[_Union[_promotion_pb2.AppliedPromotion, _Mapping]]] = ..., rejected: _Optional[_Iterable[_Union[_promotion_pb2.RejectedPromotion, _Mapping]]] = ..., discount_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., free_shipping: _Optional[bool] = ...) -> None: ...

class ReservePromotionUsageRequest(_message.Message):
    __slots__ = ("reservation_ref", "codes", "lines", "shipping_total", "currency_code", "customer_id", "customer_email")
    RESERVATION_REF_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_EMAIL_FIELD_NUMBER: _ClassVar[int]
    reservation_ref: str
    codes: _containers.RepeatedScalarFieldContainer[str]
    lines: _containers.RepeatedCompositeFieldContainer[_promotion_pb2.PromotionLine]
    shipping_total: _money_pb2.Money
    currency_code: str
    customer_id: str
    customer_email: str
    def __init__(self, reservation_ref: _Optional[str] = ..., codes: _Optional[_Iterable[str]] = ..., lines: _Optional[_Iterable[_Union[_promotion_pb2.PromotionLine, _Mapping]]] = ..., shipping_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., currency_code: _Optional[str] = ..., customer_id: _Optional[str] = ..., customer_email: _Optional[str] = ...) -> None: ...

class ReservePromotionUsageResponse(_message.Message):
    __slots__ = ("applied", "discount_total", "free_shipping")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FREE_SHIPPING_FIELD_NUMBER: _ClassVar[int]
    applied: _containers.RepeatedCompositeFieldContainer[_promotion_pb2.AppliedPromotion]
    discount_total: _money_pb2.Money
    free_shipping: bool
    def __init__(self, applied: _Optional[_Iterable[_Union[_promotion_pb2.AppliedPromotion, _Mapping]]] = ..., discount_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., free_shipping: _Optional[bool] = ...) -> None: ...

class ConfirmPromotionUsageRequest(_message.Message):
    __slots__ = ("reservation_ref",)
    RESERVATION_REF_FIELD_NUMBER: _ClassVar[int]
    reservation_ref: str
    def __init__(self, reservation_ref: _Optional[str] = ...) -> None: ...

class ConfirmPromotionUsageResponse(_message.Message):
    __slots__ = ("confirmed",)
    CONFIRMED_FIELD_NUMBER: _ClassVar[int]
    confirmed: int
    def __init__(self, confirmed: _Optional[int] = ...) -> None: ...

class ReleasePromotionUsageRequest(_message.Message):
    __slots__ = ("reservation_ref",)
    RESERVATION_REF_FIELD_NUMBER: _ClassVar[int]
    reservation_ref: str
    def __init__(self, reservation_ref: _Optional[str] = ...) -> None: ...

class ReleasePromotionUsageResponse(_message.Message):
    __slots__ = ("released",)
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: int
    def __init__(self, released: _Optional[int] = ...) -> None: ...

class CreatePromotionRequest(_message.Message):
    __slots__ = ("promotion",)
    PROMOTION_FIELD_NUMBER: _ClassVar[int]
    promotion: _promotion_pb2.Promotion
    def __init__(self, promotion: _Optional[_Union[_promotion_pb2.Promotion, _Mapping]] = ...) -> None: ...

class CreatePromotionResponse(_message.Message):
    __slots__ = ("promotion",)
    PROMOTION_FIELD_NUMBER: _ClassVar[int]
    promotion: _promotion_pb2.Promotion
    def __init__(self, promotion: _Optional[_Union[_promotion_pb2.Promotion, _Mapping]] = ...) -> None: ...
