import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CompensationStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPENSATION_STATUS_UNSPECIFIED: _ClassVar[CompensationStatus]
    COMPENSATION_STATUS_PENDING: _ClassVar[CompensationStatus]
    COMPENSATION_STATUS_DONE: _ClassVar[CompensationStatus]
    COMPENSATION_STATUS_DEAD: _ClassVar[CompensationStatus]
    COMPENSATION_STATUS_PARKED: _ClassVar[CompensationStatus]
COMPENSATION_STATUS_UNSPECIFIED: CompensationStatus
COMPENSATION_STATUS_PENDING: CompensationStatus
COMPENSATION_STATUS_DONE: CompensationStatus
COMPENSATION_STATUS_DEAD: CompensationStatus
COMPENSATION_STATUS_PARKED: CompensationStatus

class FailedCompensation(_message.Message):
    __slots__ = ("id", "session_id", "operation", "status", "attempts", "last_error", "next_attempt_time", "create_time", "update_time", "payload")
    ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    id: str
    session_id: str
    operation: str
    status: CompensationStatus
    attempts: int
    last_error: str
    next_attempt_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    payload: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., session_id: _Optional[str] = ..., operation: _Optional[str] = ..., status: _Optional[_Union[CompensationStatus, str]] = ..., attempts: _Optional[int] = ..., last_error: _Optional[str] = ..., next_attempt_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ListFailedCompensationsRequest(_message.Message):
    __slots__ = ("status", "operation", "session_id", "page_size", "page_token")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    status: CompensationStatus
    operation: str
    session_id: str
    page_size: int
    page_token: str
    def __init__(self, status: _Optional[_Union[CompensationStatus, str]] = ..., operation: _Optional[str] = ..., session_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListFailedCompensationsResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[FailedCompensation]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[FailedCompensation, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetFailedCompensationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetFailedCompensationResponse(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: FailedCompensation
    def __init__(self, entry: _Optional[_Union[FailedCompensation, _Mapping]] = ...) -> None: ...

class RetryFailedCompensationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RetryFailedCompensationResponse(_message.Message):
    __slots__ = ("entry", "succeeded", "error")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    entry: FailedCompensation
    succeeded: bool
    error: str
    def __init__(self, entry: _Optional[_Union[FailedCompensation, _Mapping]] = ..., succeeded: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class ParkFailedCompensationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ParkFailedCompensationResponse(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: FailedCompensation
    def __init__(self, entry: _Optional[_Union[FailedCompensation, _Mapping]] = ...) -> None: ...

class ReplayFailedCompensationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ReplayFailedCompensationResponse(_message.Message):
    __slots__ = ("entry", "succeeded", "error")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    entry: FailedCompensation
    succeeded: bool
    error: str
    def __init__(self, entry: _Optional[_Union[FailedCompensation, _Mapping]] = ..., succeeded: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class StuckSession(_message.Message):
    __slots__ = ("session_id", "saga_step", "last_progress_time", "age_seconds", "saga_attempt", "order_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SAGA_STEP_FIELD_NUMBER: _ClassVar[int]
    LAST_PROGRESS_TIME_FIELD_NUMBER: _ClassVar[int]
    AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SAGA_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    saga_step: str
    last_progress_time: _timestamp_pb2.Timestamp
    age_seconds: int
    saga_attempt: int
    order_id: str
    def __init__(self, session_id: _Optional[str] = ..., saga_step: _Optional[str] = ..., last_progress_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., age_seconds: _Optional[int] = ..., saga_attempt: _Optional[int] = ..., order_id: _Optional[str] = ...) -> None: ...

class ListStuckSessionsRequest(_message.Message):
    __slots__ = ("page_size",)
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    def __init__(self, page_size: _Optional[int] = ...) -> None: ...

class ListStuckSessionsResponse(_message.Message):
    __slots__ = ("sessions", "lease_seconds")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[StuckSession]
    lease_seconds: int
    def __init__(self, sessions: _Optional[_Iterable[_Union[StuckSession, _Mapping]]] = ..., lease_seconds: _Optional[int] = ...) -> None: ...

class ResolveStuckSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class ResolveStuckSessionResponse(_message.Message):
    __slots__ = ("session_id", "outcome", "session_status", "order_id", "last_error")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    SESSION_STATUS_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    outcome: str
    session_status: str
    order_id: str
    last_error: str
    def __init__(self, session_id: _Optional[str] = ..., outcome: _Optional[str] = ..., session_status: _Optional[str] = ..., order_id: _Optional[str] = ..., last_error: _Optional[str] = ...) -> None: ...

class GetFunnelRequest(_message.Message):
    __slots__ = ("start_time", "end_time")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class FailureCount(_message.Message):
    __slots__ = ("reason", "count")
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    reason: str
    count: int
    def __init__(self, reason: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class GetFunnelResponse(_message.Message):
    __slots__ = ("start_time", "end_time", "carts_created", "checkouts_started", "checkouts_confirmed", "checkouts_failed", "failures_by_reason", "failure_rate")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    CARTS_CREATED_FIELD_NUMBER: _ClassVar[int]
    CHECKOUTS_STARTED_FIELD_NUMBER: _ClassVar[int]
    CHECKOUTS_CONFIRMED_FIELD_NUMBER: _ClassVar[int]
    CHECKOUTS_FAILED_FIELD_NUMBER: _ClassVar[int]
    FAILURES_BY_REASON_FIELD_NUMBER: _ClassVar[int]
    FAILURE_RATE_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    carts_created: int
    checkouts_started: int
    checkouts_confirmed: int
    checkouts_failed: int
    failures_by_reason: _containers.RepeatedCompositeFieldContainer[FailureCount]
    failure_rate: float
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., carts_created: _Optional[int] = ..., checkouts_started: _Optional[int] = ..., checkouts_confirmed: _Optional[int] = ..., checkouts_failed: _Optional[int] = ..., failures_by_reason: _Optional[_Iterable[_Union[FailureCount, _Mapping]]] = ..., failure_rate: _Optional[float] = ...) -> None: ...
