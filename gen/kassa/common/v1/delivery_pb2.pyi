from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class DeliveryWindow(_message.Message):
    __slots__ = ("min_business_days", "max_business_days", "earliest_date", "latest_date")
    MIN_BUSINESS_DAYS_FIELD_NUMBER: _ClassVar[int]
    MAX_BUSINESS_DAYS_FIELD_NUMBER: _ClassVar[int]
    EARLIEST_DATE_FIELD_NUMBER: _ClassVar[int]
    LATEST_DATE_FIELD_NUMBER: _ClassVar[int]
    min_business_days: int
    max_business_days: int
    earliest_date: str
    latest_date: str
    def __init__(self, min_business_days: _Optional[int] = ..., max_business_days: _Optional[int] = ..., earliest_date: _Optional[str] = ..., latest_date: _Optional[str] = ...) -> None: ...
