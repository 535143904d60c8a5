import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OutboxStatus(_message.Message):
    __slots__ = ("service", "unpublished", "processing", "oldest_unpublished_age_seconds", "last_published_time", "failing")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    UNPUBLISHED_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_FIELD_NUMBER: _ClassVar[int]
    OLDEST_UNPUBLISHED_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LAST_PUBLISHED_TIME_FIELD_NUMBER: _ClassVar[int]
    FAILING_FIELD_NUMBER: _ClassVar[int]
    service: str
    unpublished: int
    processing: int
    oldest_unpublished_age_seconds: float
    last_published_time: _timestamp_pb2.Timestamp
    failing: int
    def __init__(self, service: _Optional[str] = ..., unpublished: _Optional[int] = ..., processing: _Optional[int] = ..., oldest_unpublished_age_seconds: _Optional[float] = ..., last_published_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., failing: _Optional[int] = ...) -> None: ...

class GetOutboxStatusRequest(_message.Message):
    __slots__ = ("service",)
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    service: str
    def __init__(self, service: _Optional[str] = ...) -> None: ...

class GetOutboxStatusResponse(_message.Message):
    __slots__ = ("services",)
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[OutboxStatus]
    def __init__(self, services: _Optional[_Iterable[_Union[OutboxStatus, _Mapping]]] = ...) -> None: ...
