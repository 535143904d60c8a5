"""Domain errors ↔ gRPC status with a google.rpc.ErrorInfo detail (domain "kassa").

Servers: :func:`abort_with` turns a :class:`~kernel.errors.DomainError` into the
status (plus a google.rpc.RetryInfo when an Unavailable says when to retry). Clients:
:func:`to_domain_error` rebuilds the DomainError from an ``AioRpcError`` so a refusal keeps its reason
(and retry delay) across hops (warehouse's OUT_OF_STOCK reaches the REST client as OUT_OF_STOCK).

A message is passed through :func:`infra.pii.redact` on its way out: Kassa's messages name fields, not
values, but one that quotes what a caller sent (a parser's complaint) shows no email, phone number or
token in full.
"""

from __future__ import annotations

from typing import TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from infra.auth import Unauthenticated
from infra.pii import redact
from kernel import errors

__all__ = ["DOMAIN", "abort_with", "error_info", "retry_delay", "status_for", "to_domain_error"]

DOMAIN = "kassa"

_Detail = TypeVar("_Detail", error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo)

_CODES: list[tuple[type[errors.DomainError], grpc.StatusCode]] = [
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Aborted, grpc.StatusCode.ABORTED),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
]
_CLASSES: dict[grpc.StatusCode, type[errors.DomainError]] = {code: cls for cls, code in _CODES}


def _code_for(exc: errors.DomainError) -> grpc.StatusCode:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INVALID_ARGUMENT


def status_for(exc: errors.DomainError) -> grpc.Status:
    code = _code_for(exc)
    info = error_details_pb2.ErrorInfo(reason=exc.reason, domain=DOMAIN, metadata=exc.metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    proto = status_pb2.Status(code=code.value[0], message=redact(exc.message), details=[detail])
    retry_after_s = getattr(exc, "retry_after_s", None)
    if retry_after_s is not None:
        # google.rpc.RetryInfo: the standard way to tell a gRPC client when to retry (gRPC has no Retry-After).
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after_s * 1e9))
        proto.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return rpc_status.to_status(proto)


async def abort_with(context: grpc.aio.ServicerContext, exc: errors.DomainError) -> None:
    status = status_for(exc)
    await context.abort(status.code, status.details, status.trailing_metadata)


def _detail(err: grpc.aio.AioRpcError, kind: type[_Detail]) -> _Detail | None:
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(kind.DESCRIPTOR):
                    found = kind()
                    detail.Unpack(found)
                    return found
    return None


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo detail of a failed call, if the server sent one."""
    return _detail(err, error_details_pb2.ErrorInfo)


def retry_delay(err: grpc.aio.AioRpcError) -> float | None:
    """Seconds the server asked the caller to wait before retrying (google.rpc.RetryInfo), if it did."""
    info = _detail(err, error_details_pb2.RetryInfo)
    if info is None or not info.HasField("retry_delay"):
        return None
    return float(info.retry_delay.ToNanoseconds()) / 1e9


def to_domain_error(err: grpc.aio.AioRpcError) -> errors.DomainError:
    """Rebuild the server's DomainError; transport failures become Unavailable."""
    info = error_info(err)
    cls = _CLASSES.get(err.code())
    if cls is None or info is None:
        if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return errors.Unavailable(f"dependency unavailable: {err.details()}")
        return errors.Unavailable(f"dependency failed ({err.code().name}): {err.details()}")
    if cls is errors.InvalidArgument:
        field = info.metadata.get("field", "")
        msg = err.details() or ""
        prefix = f"{field}: "
        exc: errors.DomainError = errors.InvalidArgument(field, msg.removeprefix(prefix), reason=info.reason)
        exc.metadata.update(info.metadata)
        return exc
    if cls is errors.Unavailable:
        message = err.details() or info.reason
        return errors.Unavailable(
            message, reason=info.reason, metadata=dict(info.metadata), retry_after_s=retry_delay(err)
        )
    return cls(err.details() or info.reason, reason=info.reason, metadata=dict(info.metadata))
