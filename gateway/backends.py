"""One grpc.aio channel per backend service, opened at start-up and closed at shutdown.

The gateway calls methods generically (``channel.unary_unary`` with the descriptor's message
classes), so a new annotated RPC needs no gateway code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

import grpc
from google.protobuf import message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.routing import RpcMethod
from infra import tracing
from infra.channels import open_channel
from infra.config import Settings

__all__ = ["Backends"]

Metadata = Sequence[tuple[str, str]]


class Backends:
    """Channels keyed by backend name (a ``settings.addr`` key); both checkout services share one."""

    def __init__(self, settings: Settings, methods: Iterable[RpcMethod]) -> None:
        self._settings = settings
        self._methods = {m.path: m for m in methods}
        self._channels: dict[str, grpc.aio.Channel] = {}
        # (backend, method path): a shared service (the audit log) has one per backend serving it.
        self._callables: dict[tuple[str, str], grpc.aio.UnaryUnaryMultiCallable] = {}

    def open(self) -> None:
        for method in self._methods.values():
            for backend in method.backends:
                channel = self._channels.get(backend)
                if channel is None:
                    channel = open_channel(self._settings.addr(backend), self._settings.grpc_tls)
                    self._channels[backend] = channel
                self._callables[backend, method.path] = channel.unary_unary(
                    method.path,
                    request_serializer=method.request_cls.SerializeToString,
                    response_deserializer=method.response_cls.FromString,
                )

    async def close(self) -> None:
        channels, self._channels, self._callables = self._channels, {}, {}
        await asyncio.gather(*(c.close() for c in channels.values()))

    async def call(
        self, method: RpcMethod, request: message.Message, metadata: Metadata, *, backend: str | None = None
    ) -> message.Message:
        """Call with the deadline the method gets (settings.rpc_timeout_seconds times its multiplier), on its
        backend or, for a shared service, on ``backend``."""
        callable_ = self._callables[backend or method.backend, method.path]
        timeout = self._settings.rpc_timeout_seconds * method.timeout_multiplier
        with tracing.client_span(method.path.lstrip("/"), {"rpc.system": "grpc"}) as span:
            # This call's own span is the callee's parent, over any traceparent the metadata was made with.
            sent = (*(pair for pair in metadata if pair[0] != tracing.TRACEPARENT), *tracing.outgoing_metadata())
            try:
                return await callable_(request, timeout=timeout, metadata=sent)
            except grpc.aio.AioRpcError as exc:
                tracing.grpc_status(span, exc.code())
                raise

    async def health(self, deadline_seconds: float) -> dict[str, bool]:
        """Backend name -> whether its grpc health service reports SERVING."""
        names = sorted(self._channels)
        results = await asyncio.gather(*(self._serving(self._channels[n], deadline_seconds) for n in names))
        return dict(zip(names, results, strict=True))

    @staticmethod
    async def _serving(channel: grpc.aio.Channel, deadline_seconds: float) -> bool:
        try:
            stub = health_pb2_grpc.HealthStub(channel)
            # types-grpcio-health-checking declares HealthStub without its methods (Check is set in __init__).
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=deadline_seconds)  # type: ignore[attr-defined]
        except grpc.aio.AioRpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING
