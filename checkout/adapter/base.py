"""What every adapter shares: deadline, credentials, error translation, one transport retry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import duration_pb2

from checkout.biz.retry import RetryPolicy, retrying
from infra.channels import ServiceCredentials, call_metadata
from infra.grpc_errors import to_domain_error
from kernel.errors import Unavailable

__all__ = ["GrpcClient", "duration"]

R = TypeVar("R")

# Only a refused connection is retried here (the request never reached the server); business
# level retries of idempotent steps are the saga's.
_TRANSPORT_RETRY = RetryPolicy(attempts=2, initial_seconds=0.05, max_seconds=0.2)


class _NotDelivered(Unavailable):
    pass


class GrpcClient:
    def __init__(self, creds: ServiceCredentials, timeout_seconds: float) -> None:
        self._creds = creds
        self._timeout = timeout_seconds

    async def _call(self, rpc: Callable[..., Awaitable[R]], request: Any) -> R:
        async def once() -> R:
            try:
                return await rpc(request, timeout=self._timeout, metadata=call_metadata(self._creds))
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.UNAVAILABLE and not exc.trailing_metadata():
                    raise _NotDelivered(f"dependency unavailable: {exc.details()}") from exc
                raise to_domain_error(exc) from exc

        try:
            return await retrying(_TRANSPORT_RETRY, once, retry_on=_NotDelivered)
        except _NotDelivered as exc:
            raise Unavailable(exc.message) from None


def duration(seconds: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds)
