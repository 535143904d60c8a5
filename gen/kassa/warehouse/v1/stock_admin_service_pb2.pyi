from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DriftStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DRIFT_STATUS_UNSPECIFIED: _ClassVar[DriftStatus]
    DRIFT_STATUS_OVERSOLD: _ClassVar[DriftStatus]
    DRIFT_STATUS_DRIFT: _ClassVar[DriftStatus]
    DRIFT_STATUS_REPAIRED: _ClassVar[DriftStatus]
    DRIFT_STATUS_CLEAN: _ClassVar[DriftStatus]
DRIFT_STATUS_UNSPECIFIED: DriftStatus
DRIFT_STATUS_OVERSOLD: DriftStatus
DRIFT_STATUS_DRIFT: DriftStatus
DRIFT_STATUS_REPAIRED: DriftStatus
DRIFT_STATUS_CLEAN: DriftStatus

class StockDrift(_message.Message):
    __slots__ = ("sku", "warehouse_id", "on_hand", "reserved", "active_reserved", "drift", "problems", "repairable")
    SKU_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    ON_HAND_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_RESERVED_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    REPAIRABLE_FIELD_NUMBER: _ClassVar[int]
    sku: str
    warehouse_id: str
    on_hand: int
    reserved: int
    active_reserved: int
    drift: int
    problems: _containers.RepeatedScalarFieldContainer[str]
    repairable: bool
    def __init__(self, sku: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., on_hand: _Optional[int] = ..., reserved: _Optional[int] = ..., active_reserved: _Optional[int] = ..., drift: _Optional[int] = ..., problems: _Optional[_Iterable[str]] = ..., repairable: _Optional[bool] = ...) -> None: ...

class GetStockDriftRequest(_message.Message):
    __slots__ = ("skus",)
    SKUS_FIELD_NUMBER: _ClassVar[int]
    skus: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, skus: _Optional[_Iterable[str]] = ...) -> None: ...

class GetStockDriftResponse(_message.Message):
    __slots__ = ("status", "checked", "findings")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    status: DriftStatus
    checked: int
    findings: _containers.RepeatedCompositeFieldContainer[StockDrift]
    def __init__(self, status: _Optional[_Union[DriftStatus, str]] = ..., checked: _Optional[int] = ..., findings: _Optional[_Iterable[_Union[StockDrift, _Mapping]]] = ...) -> None: ...

class RepairStockDriftRequest(_message.Message):
    __slots__ = ("skus",)
    SKUS_FIELD_NUMBER: _ClassVar[int]
    skus: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, skus: _Optional[_Iterable[str]] = ...) -> None: ...

class RepairStockDriftResponse(_message.Message):
    __slots__ = ("status", "checked", "findings", "repaired")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    REPAIRED_FIELD_NUMBER: _ClassVar[int]
    status: DriftStatus
    checked: int
    findings: _containers.RepeatedCompositeFieldContainer[StockDrift]
    repaired: _containers.RepeatedCompositeFieldContainer[StockDrift]
    def __init__(self, status: _Optional[_Union[DriftStatus, str]] = ..., checked: _Optional[int] = ..., findings: _Optional[_Iterable[_Union[StockDrift, _Mapping]]] = ..., repaired: _Optional[_Iterable[_Union[StockDrift, _Mapping]]] = ...) -> None: ...
