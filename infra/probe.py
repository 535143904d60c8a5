"""``python -m infra.probe grpc HOST:PORT | http URL | http-any URL``: a container health check.

Exit 0 when the gRPC health service answers SERVING (plaintext: point it at ``KASSA_GRPC_HEALTH_ADDR`` when
the service port asks for client certificates), the URL answers 200 (``http``), or the URL answers at all
(``http-any``, for the sandbox provider, which has no health route); 1 otherwise. ``compose.yaml`` uses
it for its health checks, since the image has no grpc_health_probe or curl. Kubernetes needs none of this:
its native ``grpc:`` and ``httpGet:`` probes ask the same endpoints (deploy/k8s).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["main"]

_TIMEOUT_SECONDS = 2.0


def grpc_serving(addr: str) -> bool:
    try:
        with grpc.insecure_channel(addr) as channel:
            # types-grpcio-health-checking declares HealthStub without its methods (Check is set in __init__).
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=_TIMEOUT_SECONDS)  # type: ignore[attr-defined]
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def http_ok(url: str, *, any_answer: bool = False) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_SECONDS) as answer:
            return bool(answer.status == 200)
    except urllib.error.HTTPError:
        return any_answer
    except (OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("grpc", "http", "http-any"):
        sys.stderr.write("usage: python -m infra.probe grpc HOST:PORT | http URL | http-any URL\n")
        return 2
    kind, target = args
    ok = grpc_serving(target) if kind == "grpc" else http_ok(target, any_answer=kind == "http-any")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
