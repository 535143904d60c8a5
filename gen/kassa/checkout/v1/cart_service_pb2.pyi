from google.api import annotations_pb2 as _annotations_pb2
from kassa.checkout.v1 import cart_pb2 as _cart_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateCartRequest(_message.Message):
    __slots__ = ("currency_code",)
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    currency_code: str
    def __init__(self, currency_code: _Optional[str] = ...) -> None: ...

class CreateCartResponse(_message.Message):
    __slots__ = ("cart",)
    CART_FIELD_NUMBER: _ClassVar[int]
    cart: _cart_pb2.Cart
    def __init__(self, cart: _Optional[_Union[_cart_pb2.Cart, _Mapping]] = ...) -> None: ...

class GetCartRequest(_message.Message):
    __slots__ = ("cart_id",)
    CART_ID_FIELD_NUMBER: _ClassVar[int]
    cart_id: str
    def __init__(self, cart_id: _Optional[str] = ...) -> None: ...

class GetCartResponse(_message.Message):
    __slots__ = ("cart",)
    CART_FIELD_NUMBER: _ClassVar[int]
    cart: _cart_pb2.Cart
    def __init__(self, cart: _Optional[_Union[_cart_pb2.Cart, _Mapping]] = ...) -> None: ...

class AddCartItemRequest(_message.Message):
    __slots__ = ("cart_id", "sku", "quantity")
    CART_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    cart_id: str
    sku: str
    quantity: int
    def __init__(self, cart_id: _Optional[str] = ..., sku: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class AddCartItemResponse(_message.Message):
    __slots__ = ("cart",)
    CART_FIELD_NUMBER: _ClassVar[int]
    cart: _cart_pb2.Cart
    def __init__(self, cart: _Optional[_Union[_cart_pb2.Cart, _Mapping]] = ...) -> None: ...

class UpdateCartItemRequest(_message.Message):
    __slots__ = ("cart_id", "sku", "quantity")
    CART_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    cart_id: str
    sku: str
    quantity: int
    def __init__(self, cart_id: _Optional[str] = ..., sku: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class UpdateCartItemResponse(_message.Message):
    __slots__ = ("cart",)
    CART_FIELD_NUMBER: _ClassVar[int]
    cart: _cart_pb2.Cart
    def __init__(self, cart: _Optional[_Union[_cart_pb2.Cart, _Mapping]] = ...) -> None: ...

class RemoveCartItemRequest(_message.Message):
    __slots__ = ("cart_id", "sku")
    CART_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    cart_id: str
    sku: str
    def __init__(self, cart_id: _Optional[str] = ..., sku: _Optional[str] = ...) -> None: ...

class RemoveCartItemResponse(_message.Message):
    __slots__ = ("cart",)
    CART_FIELD_NUMBER: _ClassVar[int]
    cart: _cart_pb2.Cart
    def __init__(self, cart: _Optional[_Union[_cart_pb2.Cart, _Mapping]] = ...) -> None: ...
