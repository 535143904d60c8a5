from google.api import annotations_pb2 as _annotations_pb2
from kassa.common.v1 import address_pb2 as _address_pb2
from kassa.common.v1 import delivery_pb2 as _delivery_pb2
from kassa.common.v1 import money_pb2 as _money_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Product(_message.Message):
    __slots__ = ("sku", "name", "category", "brand", "weight_grams", "tax_class", "prices")
    SKU_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    BRAND_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_GRAMS_FIELD_NUMBER: _ClassVar[int]
    TAX_CLASS_FIELD_NUMBER: _ClassVar[int]
    PRICES_FIELD_NUMBER: _ClassVar[int]
    sku: str
    name: str
    category: str
    brand: str
    weight_grams: int
    tax_class: str
    prices: _containers.RepeatedCompositeFieldContainer[_money_pb2.Money]
    def __init__(self, sku: _Optional[str] = ..., name: _Optional[str] = ..., category: _Optional[str] = ..., brand: _Optional[str] = ..., weight_grams: _Optional[int] = ..., tax_class: _Optional[str] = ..., prices: _Optional[_Iterable[_Union[_money_pb2.Money, _Mapping]]] = ...) -> None: ...

class GetProductsRequest(_message.Message):
    __slots__ = ("skus", "currency_code")
    SKUS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    skus: _containers.RepeatedScalarFieldContainer[str]
    currency_code: str
    def __init__(self, skus: _Optional[_Iterable[str]] = ..., currency_code: _Optional[str] = ...) -> None: ...

class PricedProduct(_message.Message):
    __slots__ = ("product", "unit_price")
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    product: Product
    unit_price: _money_pb2.Money
    def __init__(self, product: _Optional[_Union[Product, _Mapping]] = ..., unit_price: _Optional[_Union[_money_pb2.Money, _Mapping]] = ...) -> None: ...

class GetProductsResponse(_message.Message):
    __slots__ = ("products", "missing_skus")
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    MISSING_SKUS_FIELD_NUMBER: _ClassVar[int]
    products: _containers.RepeatedCompositeFieldContainer[PricedProduct]
    missing_skus: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, products: _Optional[_Iterable[_Union[PricedProduct, _Mapping]]] = ..., missing_skus: _Optional[_Iterable[str]] = ...) -> None: ...

class UpsertProductsRequest(_message.Message):
    __slots__ = ("products",)
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    products: _containers.RepeatedCompositeFieldContainer[Product]
    def __init__(self, products: _Optional[_Iterable[_Union[Product, _Mapping]]] = ...) -> None: ...

class UpsertProductsResponse(_message.Message):
    __slots__ = ("products",)
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    products: _containers.RepeatedCompositeFieldContainer[Product]
    def __init__(self, products: _Optional[_Iterable[_Union[Product, _Mapping]]] = ...) -> None: ...

class Parcel(_message.Message):
    __slots__ = ("warehouse_id", "origin", "weight_grams")
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_GRAMS_FIELD_NUMBER: _ClassVar[int]
    warehouse_id: str
    origin: _address_pb2.Address
    weight_grams: int
    def __init__(self, warehouse_id: _Optional[str] = ..., origin: _Optional[_Union[_address_pb2.Address, _Mapping]] = ..., weight_grams: _Optional[int] = ...) -> None: ...

class QuoteShippingRequest(_message.Message):
    __slots__ = ("parcels", "destination", "shipping_method", "currency_code")
    PARCELS_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_METHOD_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    parcels: _containers.RepeatedCompositeFieldContainer[Parcel]
    destination: _address_pb2.Address
    shipping_method: str
    currency_code: str
    def __init__(self, parcels: _Optional[_Iterable[_Union[Parcel, _Mapping]]] = ..., destination: _Optional[_Union[_address_pb2.Address, _Mapping]] = ..., shipping_method: _Optional[str] = ..., currency_code: _Optional[str] = ...) -> None: ...

class QuoteShippingResponse(_message.Message):
    __slots__ = ("shipping_total", "delivery_window")
    SHIPPING_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_WINDOW_FIELD_NUMBER: _ClassVar[int]
    shipping_total: _money_pb2.Money
    delivery_window: _delivery_pb2.DeliveryWindow
    def __init__(self, shipping_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., delivery_window: _Optional[_Union[_delivery_pb2.DeliveryWindow, _Mapping]] = ...) -> None: ...

class TaxLine(_message.Message):
    __slots__ = ("sku", "tax_class", "amount")
    SKU_FIELD_NUMBER: _ClassVar[int]
    TAX_CLASS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    sku: str
    tax_class: str
    amount: _money_pb2.Money
    def __init__(self, sku: _Optional[str] = ..., tax_class: _Optional[str] = ..., amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ...) -> None: ...

class CalculateTaxRequest(_message.Message):
    __slots__ = ("lines", "destination", "shipping_total", "currency_code")
    LINES_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[TaxLine]
    destination: _address_pb2.Address
    shipping_total: _money_pb2.Money
    currency_code: str
    def __init__(self, lines: _Optional[_Iterable[_Union[TaxLine, _Mapping]]] = ..., destination: _Optional[_Union[_address_pb2.Address, _Mapping]] = ..., shipping_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., currency_code: _Optional[str] = ...) -> None: ...

class TaxLineResult(_message.Message):
    __slots__ = ("sku", "tax")
    SKU_FIELD_NUMBER: _ClassVar[int]
    TAX_FIELD_NUMBER: _ClassVar[int]
    sku: str
    tax: _money_pb2.Money
    def __init__(self, sku: _Optional[str] = ..., tax: _Optional[_Union[_money_pb2.Money, _Mapping]] = ...) -> None: ...

class CalculateTaxResponse(_message.Message):
    __slots__ = ("tax_total", "lines")
    TAX_TOTAL_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    tax_total: _money_pb2.Money
    lines: _containers.RepeatedCompositeFieldContainer[TaxLineResult]
    def __init__(self, tax_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., lines: _Optional[_Iterable[_Union[TaxLineResult, _Mapping]]] = ...) -> None: ...

class QuoteOrderLine(_message.Message):
    __slots__ = ("sku", "quantity", "discount")
    SKU_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    sku: str
    quantity: int
    discount: _money_pb2.Money
    def __init__(self, sku: _Optional[str] = ..., quantity: _Optional[int] = ..., discount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ...) -> None: ...

class QuoteOrderRequest(_message.Message):
    __slots__ = ("lines", "parcels", "destination", "shipping_method", "currency_code", "shipping_discount")
    LINES_FIELD_NUMBER: _ClassVar[int]
    PARCELS_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_METHOD_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[QuoteOrderLine]
    parcels: _containers.RepeatedCompositeFieldContainer[Parcel]
    destination: _address_pb2.Address
    shipping_method: str
    currency_code: str
    shipping_discount: _money_pb2.Money
    def __init__(self, lines: _Optional[_Iterable[_Union[QuoteOrderLine, _Mapping]]] = ..., parcels: _Optional[_Iterable[_Union[Parcel, _Mapping]]] = ..., destination: _Optional[_Union[_address_pb2.Address, _Mapping]] = ..., shipping_method: _Optional[str] = ..., currency_code: _Optional[str] = ..., shipping_discount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ...) -> None: ...

class QuoteOrderResponse(_message.Message):
    __slots__ = ("products", "missing_skus", "shipping_total", "tax_total", "delivery_window")
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    MISSING_SKUS_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TAX_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_WINDOW_FIELD_NUMBER: _ClassVar[int]
    products: _containers.RepeatedCompositeFieldContainer[PricedProduct]
    missing_skus: _containers.RepeatedScalarFieldContainer[str]
    shipping_total: _money_pb2.Money
    tax_total: _money_pb2.Money
    delivery_window: _delivery_pb2.DeliveryWindow
    def __init__(self, products: _Optional[_Iterable[_Union[PricedProduct, _Mapping]]] = ..., missing_skus: _Optional[_Iterable[str]] = ..., shipping_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., tax_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., delivery_window: _Optional[_Union[_delivery_pb2.DeliveryWindow, _Mapping]] = ...) -> None: ...

class SyncProductsRequest(_message.Message):
    __slots__ = ("sync_token", "page_size", "page_token")
    SYNC_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sync_token: str
    page_size: int
    page_token: str
    def __init__(self, sync_token: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class SyncProductsResponse(_message.Message):
    __slots__ = ("products", "next_page_token", "next_sync_token")
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NEXT_SYNC_TOKEN_FIELD_NUMBER: _ClassVar[int]
    products: _containers.RepeatedCompositeFieldContainer[Product]
    next_page_token: str
    next_sync_token: str
    def __init__(self, products: _Optional[_Iterable[_Union[Product, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., next_sync_token: _Optional[str] = ...) -> None: ...
