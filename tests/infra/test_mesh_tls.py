"""``kassa up`` with mutual TLS (KASSA_GRPC_TLS_*): the mesh's own health probe presents the client
certificate, so a service that takes only clients its CA signed is found healthy. A real gRPC process
serving grpc.health.v1 over mutual TLS with certificates from ``kassa certs``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from devstack.certs import make_dev_certs
from devstack.localstack import free_ports
from devstack.mesh import Mesh, MeshError, ProcessSpec

pytestmark = pytest.mark.integration

# Serves grpc.health.v1 SERVING on $STANDIN_ADDR, to clients with a certificate the CA signed only.
_MTLS_STANDIN = """
import os
from concurrent import futures
from pathlib import Path
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
read = lambda name: Path(os.environ[name]).read_bytes()
creds = grpc.ssl_server_credentials(
    [(read("KASSA_GRPC_TLS_KEY_FILE"), read("KASSA_GRPC_TLS_CERT_FILE"))],
    root_certificates=read("KASSA_GRPC_TLS_CA_FILE"),
    require_client_auth=True,
)
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
servicer = health.HealthServicer()
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
server.add_secure_port(os.environ["STANDIN_ADDR"], creds)
server.start()
servicer.set("", health_pb2.HealthCheckResponse.SERVING)
server.wait_for_termination()
"""


def test_the_health_probe_presents_the_client_certificate(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    written = make_dev_certs(certs, ["warehouse"])
    cert, key = written["warehouse"]
    (port,) = free_ports(1)
    addr = f"127.0.0.1:{port}"
    env = {
        "KASSA_GRPC_TLS_CA_FILE": str(certs / "ca.pem"),
        "KASSA_GRPC_TLS_CERT_FILE": str(cert),
        "KASSA_GRPC_TLS_KEY_FILE": str(key),
        "STANDIN_ADDR": addr,
    }
    spec = ProcessSpec("warehouse", (sys.executable, "-c", _MTLS_STANDIN), addr, "grpc")
    lines: list[str] = []
    mesh = Mesh(env, tmp_path / "logs", specs=[spec], log=lines.append, start_timeout=20.0)
    try:
        mesh.start()
    except MeshError as exc:
        pytest.fail(f"not found healthy over mutual TLS: {exc}")
    try:
        assert any("healthy on" in line for line in lines)
        assert "warehouse" in mesh.pids
    finally:
        mesh.stop()
