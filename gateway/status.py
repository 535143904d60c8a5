"""gRPC status -> HTTP status and the ``google.rpc.Status`` JSON body REST clients receive (DESIGN.md §2).

Every error body has the same shape, whatever failed (a backend refusal, the gateway's own checks, a
transport failure): ``{"code", "message", "details": [ErrorInfo{reason, domain: "kassa", metadata}]}``,
so clients branch on ``details[0].reason`` and never parse messages.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from google.protobuf import any_pb2, descriptor_pool, json_format
from google.rpc import error_details_pb2, status_pb2

from infra.grpc_errors import DOMAIN, status_for
from kernel import errors

__all__ = [
    "HTTP_STATUS",
    "from_domain_error",
    "from_rpc_error",
    "http_status",
    "make_status",
    "reason_for_code",
    "to_json",
]

log = logging.getLogger("kassa.gateway")

_DETAILS_KEY = "grpc-status-details-bin"

# The standard gRPC -> HTTP table (google/rpc/code.proto); anything else is 500.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}

# Transport failures carry addresses and library internals in their details; clients get this instead.
_TRANSPORT_MESSAGES: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.UNAVAILABLE: "service temporarily unavailable; retry later",
    grpc.StatusCode.DEADLINE_EXCEEDED: "the service did not answer in time; retry later",
    grpc.StatusCode.INTERNAL: "internal error",
    grpc.StatusCode.UNKNOWN: "internal error",
}


# The reason of a status that came without an ErrorInfo (a transport failure, a library's own refusal): the
# code's name where kassa.common.v1.ErrorReason has it, INTERNAL for the rest, so a client's reason is always
# one of the enum's.
_BARE_REASONS: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.CANCELLED: errors.Reason.CANCELLED,
    grpc.StatusCode.INVALID_ARGUMENT: errors.Reason.INVALID_ARGUMENT,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.Reason.DEADLINE_EXCEEDED,
    grpc.StatusCode.NOT_FOUND: errors.Reason.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED: errors.Reason.PERMISSION_DENIED,
    grpc.StatusCode.UNIMPLEMENTED: errors.Reason.UNIMPLEMENTED,
    grpc.StatusCode.UNAVAILABLE: errors.Reason.UNAVAILABLE,
    grpc.StatusCode.UNAUTHENTICATED: errors.Reason.UNAUTHENTICATED,
}


def reason_for_code(code: grpc.StatusCode) -> str:
    """The ErrorReason a status with only a ``code`` gets."""
    return _BARE_REASONS.get(code, errors.Reason.INTERNAL)


def http_status(code: int) -> int:
    """HTTP status for a numeric gRPC code."""
    grpc_code = _BY_NUMBER.get(code, grpc.StatusCode.UNKNOWN)
    return HTTP_STATUS.get(grpc_code, 500)


def make_status(
    code: grpc.StatusCode, message: str, reason: str, metadata: dict[str, str] | None = None
) -> status_pb2.Status:
    """A Status with one ErrorInfo detail in the kassa domain."""
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata or {}))
    return status_pb2.Status(code=code.value[0], message=message, details=[detail])


def from_domain_error(exc: errors.DomainError) -> status_pb2.Status:
    """The same Status a Kassa service would send for ``exc`` (one mapping, in infra.grpc_errors)."""
    status = status_for(exc)
    for key, value in status.trailing_metadata:
        if key == _DETAILS_KEY and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return make_status(status.code, exc.message, exc.reason, exc.metadata)


def from_rpc_error(err: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The backend's Status from the grpc-status-details-bin trailer, or one built from the bare code."""
    code = err.code()
    for key, value in err.trailing_metadata() or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            try:
                status = status_pb2.Status.FromString(value)
            except ValueError:
                log.warning("unparseable %s trailer from backend", _DETAILS_KEY)
                break
            if status.code == code.value[0]:
                return status
    message = _TRANSPORT_MESSAGES.get(code)
    if message is None:
        message = err.details() or code.name
    else:
        log.warning("backend call failed: %s %s", code.name, err.details())
    return make_status(code, message, reason_for_code(code))


def to_json(status: status_pb2.Status) -> dict[str, Any]:
    """The Status as JSON; details whose type the gateway doesn't know are dropped, not fatal."""
    known = status_pb2.Status(code=status.code, message=status.message)
    pool = descriptor_pool.Default()
    for detail in status.details:
        try:
            pool.FindMessageTypeByName(detail.TypeName())
        except KeyError:
            continue
        known.details.append(detail)
    return json_format.MessageToDict(known)
