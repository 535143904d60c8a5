import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from kassa.warehouse.v1 import inventory_pb2 as _inventory_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StockQuery(_message.Message):
    __slots__ = ("sku", "quantity")
    SKU_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    sku: str
    quantity: int
    def __init__(self, sku: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class CheckStockRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[StockQuery]
    def __init__(self, items: _Optional[_Iterable[_Union[StockQuery, _Mapping]]] = ...) -> None: ...

class CheckStockResponse(_message.Message):
    __slots__ = ("levels",)
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    levels: _containers.RepeatedCompositeFieldContainer[_inventory_pb2.StockLevel]
    def __init__(self, levels: _Optional[_Iterable[_Union[_inventory_pb2.StockLevel, _Mapping]]] = ...) -> None: ...

class ReserveLine(_message.Message):
    __slots__ = ("sku", "quantity")
    SKU_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    sku: str
    quantity: int
    def __init__(self, sku: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class ReserveStockRequest(_message.Message):
    __slots__ = ("reservation_ref", "lines", "ship_to_country_code", "ttl")
    RESERVATION_REF_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    SHIP_TO_COUNTRY_CODE_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    reservation_ref: str
    lines: _containers.RepeatedCompositeFieldContainer[ReserveLine]
    ship_to_country_code: str
    ttl: _duration_pb2.Duration
    def __init__(self, reservation_ref: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[ReserveLine, _Mapping]]] = ..., ship_to_country_code: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ReserveStockResponse(_message.Message):
    __slots__ = ("reservations", "expires_at")
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    reservations: _containers.RepeatedCompositeFieldContainer[_inventory_pb2.Reservation]
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, reservations: _Optional[_Iterable[_Union[_inventory_pb2.Reservation, _Mapping]]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BatchGetReservationsRequest(_message.Message):
    __slots__ = ("reservation_ref",)
    RESERVATION_REF_FIELD_NUMBER: _ClassVar[int]
    reservation_ref: str
    def __init__(self, reservation_ref: _Optional[str] = ...) -> None: ...

class BatchGetReservationsResponse(_message.Message):
    __slots__ = ("reservations",)
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    reservations: _containers.RepeatedCompositeFieldContainer[_inventory_pb2.Reservation]
    def __init__(self, reservations: _Optional[_Iterable[_Union[_inventory_pb2.Reservation, _Mapping]]] = ...) -> None: ...

class ExtendReservationsRequest(_message.Message):
    __slots__ = ("reservation_ref", "ttl")
    RESERVATION_REF_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    reservation_ref: str
    ttl: _duration_pb2.Duration
    def __init__(self, reservation_ref: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ExtendReservationsResponse(_message.Message):
    __slots__ = ("reservations", "expires_at")
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    reservations: _containers.RepeatedCompositeFieldContainer[_inventory_pb2.Reservation]
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, reservations: _Optional[_Iterable[_Union[_inventory_pb2.Reservation, _Mapping]]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReleaseReservationsRequest(_message.Message):
    __slots__ = ("reservation_ref", "reason")
    RESERVATION_REF_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    reservation_ref: str
    reason: str
    def __init__(self, reservation_ref: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ReleaseReservationsResponse(_message.Message):
    __slots__ = ("reservations",)
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    reservations: _containers.RepeatedCompositeFieldContainer[_inventory_pb2.Reservation]
    def __init__(self, reservations: _Optional[_Iterable[_Union[_inventory_pb2.Reservation, _Mapping]]] = ...) -> None: ...

class ConfirmReservationsRequest(_message.Message):
    __slots__ = ("reservation_ref",)
    RESERVATION_REF_FIELD_NUMBER: _ClassVar[int]
    reservation_ref: str
    def __init__(self, reservation_ref: _Optional[str] = ...) -> None: ...

class ConfirmReservationsResponse(_message.Message):
    __slots__ = ("reservations",)
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    reservations: _containers.RepeatedCompositeFieldContainer[_inventory_pb2.Reservation]
    def __init__(self, reservations: _Optional[_Iterable[_Union[_inventory_pb2.Reservation, _Mapping]]] = ...) -> None: ...

class StockSetting(_message.Message):
    __slots__ = ("sku", "warehouse_id", "on_hand")
    SKU_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    ON_HAND_FIELD_NUMBER: _ClassVar[int]
    sku: str
    warehouse_id: str
    on_hand: int
    def __init__(self, sku: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., on_hand: _Optional[int] = ...) -> None: ...

class SetStockRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[StockSetting]
    def __init__(self, items: _Optional[_Iterable[_Union[StockSetting, _Mapping]]] = ...) -> None: ...

class SetStockResponse(_message.Message):
    __slots__ = ("levels",)
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    levels: _containers.RepeatedCompositeFieldContainer[_inventory_pb2.StockLevel]
    def __init__(self, levels: _Optional[_Iterable[_Union[_inventory_pb2.StockLevel, _Mapping]]] = ...) -> None: ...

class ListWarehousesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWarehousesResponse(_message.Message):
    __slots__ = ("warehouses",)
    WAREHOUSES_FIELD_NUMBER: _ClassVar[int]
    warehouses: _containers.RepeatedCompositeFieldContainer[_inventory_pb2.Warehouse]
    def __init__(self, warehouses: _Optional[_Iterable[_Union[_inventory_pb2.Warehouse, _Mapping]]] = ...) -> None: ...

class UpsertWarehousesRequest(_message.Message):
    __slots__ = ("warehouses",)
    WAREHOUSES_FIELD_NUMBER: _ClassVar[int]
    warehouses: _containers.RepeatedCompositeFieldContainer[_inventory_pb2.Warehouse]
    def __init__(self, warehouses: _Optional[_Iterable[_Union[_inventory_pb2.Warehouse, _Mapping]]] = ...) -> None: ...

class UpsertWarehousesResponse(_message.Message):
    __slots__ = ("warehouses",)
    WAREHOUSES_FIELD_NUMBER: _ClassVar[int]
    warehouses: _containers.RepeatedCompositeFieldContainer[_inventory_pb2.Warehouse]
    def __init__(self, warehouses: _Optional[_Iterable[_Union[_inventory_pb2.Warehouse, _Mapping]]] = ...) -> None: ...
