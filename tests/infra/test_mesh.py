"""The mesh process manager, exercised with tiny stand-in programs instead of the real services.

Stand-ins: a grpc.health.v1 server (``_GRPC_STANDIN``), Python's ``http.server`` and one-liners that
crash or ignore SIGTERM. They prove the order of start-up, the health waiting, the fail-fast error
with the log tail, and that stop() signals exactly the pids the mesh started.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.localstack import StackEndpoints, free_ports
from devstack.mesh import MESH_ORDER, Mesh, MeshError, ProcessSpec, default_specs, mesh_env
from infra.config import DEFAULT_ADDRS

pytestmark = pytest.mark.integration

# Serves grpc.health.v1 on $KASSA_WAREHOUSE_ADDR with overall status $STANDIN_STATUS.
_GRPC_STANDIN = """
import os
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
servicer = health.HealthServicer()
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
server.add_insecure_port(os.environ["KASSA_WAREHOUSE_ADDR"])
server.start()
status = os.environ.get("STANDIN_STATUS", "SERVING")
servicer.set("", health_pb2.HealthCheckResponse.ServingStatus.Value(status))
server.wait_for_termination()
"""

# Refuses to start (exit 4) unless the warehouse stand-in is already SERVING: proves start order.
_DEPENDENT_HTTP_STANDIN = """
import http.server, os, sys
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
with grpc.insecure_channel(os.environ["KASSA_WAREHOUSE_ADDR"]) as channel:
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
    except grpc.RpcError:
        sys.exit(4)
if reply.status != health_pb2.HealthCheckResponse.SERVING:
    sys.exit(4)
host, port = os.environ["KASSA_SANDBOX_ADDR"].rsplit(":", 1)
http.server.ThreadingHTTPServer((host, int(port)), http.server.SimpleHTTPRequestHandler).serve_forever()
"""

_IGNORE_SIGTERM_HTTP = """
import http.server, signal, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _http_server(name: str, port: int, directory: Path, *, health: str = "http") -> ProcessSpec:
    argv = (sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(directory), str(port))
    return ProcessSpec(name=name, argv=argv, addr=f"127.0.0.1:{port}", health=health)  # type: ignore[arg-type]


def _pids_from(lines: list[str]) -> dict[str, int]:
    found = (re.match(r"(\S+)\s+healthy on \S+ \(pid (\d+)\)", line) for line in lines)
    return {m.group(1): int(m.group(2)) for m in found if m}


def _env(ports: dict[str, int]) -> dict[str, str]:
    return mesh_env(
        StackEndpoints("postgresql+psycopg://x@127.0.0.1:1/k", "redis://127.0.0.1:1", "nats://127.0.0.1:1"), ports
    )


def _grpc_status(addr: str) -> int:
    with grpc.insecure_channel(addr) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status


def test_starts_in_dependency_order_waits_for_health_and_stops_by_pid(tmp_path: Path) -> None:
    grpc_port, dependent_port, http_port = free_ports(3)
    env = _env({"warehouse": grpc_port, "sandbox": dependent_port, "gateway": http_port})
    specs = [
        ProcessSpec("warehouse", (sys.executable, "-c", _GRPC_STANDIN), env["KASSA_WAREHOUSE_ADDR"], "grpc"),
        ProcessSpec("sandbox", (sys.executable, "-c", _DEPENDENT_HTTP_STANDIN), env["KASSA_SANDBOX_ADDR"], "http"),
        _http_server("gateway", http_port, tmp_path, health="http-200"),
    ]
    lines: list[str] = []
    mesh = Mesh(env, tmp_path / "logs", specs=specs, log=lines.append)
    mesh.start()
    try:
        pids = mesh.pids
        assert list(pids) == ["warehouse", "sandbox", "gateway"]
        assert _pids_from(lines) == pids
        assert all(_alive(pid) for pid in pids.values())
        assert mesh.exited() == {}
        assert _grpc_status(mesh.addr("warehouse")) == health_pb2.HealthCheckResponse.SERVING
        assert "=== kassa mesh: starting gateway" in (tmp_path / "logs" / "gateway.log").read_text()
    finally:
        codes = mesh.stop()
    assert codes == {"gateway": -signal.SIGTERM, "sandbox": -signal.SIGTERM, "warehouse": -signal.SIGTERM}
    assert not any(_alive(pid) for pid in pids.values())
    assert mesh.pids == {}
    assert mesh.stop() == {}  # idempotent


def test_a_process_that_exits_fails_fast_with_its_log_tail_and_stops_the_rest(tmp_path: Path) -> None:
    (http_port,) = free_ports(1)
    crash = "import sys; print('boom-marker: cannot start', file=sys.stderr); raise SystemExit(3)"
    specs = [
        _http_server("warehouse", http_port, tmp_path),
        ProcessSpec("pricing", (sys.executable, "-c", crash), f"127.0.0.1:{free_ports(1)[0]}"),
        ProcessSpec("never", (sys.executable, "-c", "raise SystemExit(9)"), f"127.0.0.1:{free_ports(1)[0]}"),
    ]
    lines: list[str] = []
    mesh = Mesh(_env({}), tmp_path / "logs", specs=specs, log=lines.append)
    with pytest.raises(MeshError, match="pricing exited with code 3") as failure:
        mesh.start()
    assert "boom-marker: cannot start" in str(failure.value)
    started = _pids_from(lines)
    assert list(started) == ["warehouse"]
    assert not _alive(started["warehouse"])
    assert mesh.pids == {}
    assert not (tmp_path / "logs" / "never.log").exists()


def test_a_grpc_server_that_never_reports_serving_times_out(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    env = {**_env({"warehouse": port}), "STANDIN_STATUS": "NOT_SERVING"}
    spec = ProcessSpec("warehouse", (sys.executable, "-c", _GRPC_STANDIN), env["KASSA_WAREHOUSE_ADDR"], "grpc")
    mesh = Mesh(env, tmp_path / "logs", specs=[spec], log=lambda _: None, start_timeout=3)
    with pytest.raises(MeshError, match=r"warehouse \(pid \d+\) was not healthy on .* within 3s") as failure:
        mesh.start()
    pid = int(re.search(r"pid (\d+)", str(failure.value)).group(1))  # type: ignore[union-attr]
    assert not _alive(pid)


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    spec = ProcessSpec("stubborn", (sys.executable, "-c", _IGNORE_SIGTERM_HTTP, str(port)), f"127.0.0.1:{port}", "http")
    lines: list[str] = []
    with Mesh(_env({}), tmp_path / "logs", specs=[spec], log=lines.append, stop_timeout=1) as mesh:
        pid = mesh.pids["stubborn"]
        assert _alive(pid)
    assert not _alive(pid)
    assert any("stubborn" in line and "SIGKILL" in line for line in lines)


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (free,) = free_ports(1)
        specs = [_http_server("warehouse", free, tmp_path), _http_server("pricing", port, tmp_path)]
        mesh = Mesh(_env({}), tmp_path / "logs", specs=specs, log=lambda _: None)
        with pytest.raises(MeshError, match=f"pricing: 127.0.0.1:{port} is already in use"):
            mesh.start()
    assert not (tmp_path / "logs" / "warehouse.log").exists()


def test_mesh_env_wires_every_process_to_the_same_addresses() -> None:
    ports = dict(zip(MESH_ORDER, free_ports(len(MESH_ORDER)), strict=True))
    endpoints = StackEndpoints("postgresql+psycopg://p@127.0.0.1:5/k", "redis://127.0.0.1:6/0", "nats://127.0.0.1:7")
    env = mesh_env(endpoints, ports, jwt_secret="jwt-s", webhook_secret="wh-s")
    assert env["KASSA_DATABASE_URL"] == endpoints.database_url
    assert env["KASSA_REDIS_URL"] == endpoints.redis_url
    assert env["KASSA_NATS_URL"] == endpoints.nats_url
    for name, port in ports.items():
        assert env[f"KASSA_{name.upper()}_ADDR"] == f"127.0.0.1:{port}"
    assert env["KASSA_SANDBOX_URL"] == f"http://127.0.0.1:{ports['sandbox']}"
    assert env["KASSA_SANDBOX_WEBHOOK_URL"] == f"http://127.0.0.1:{ports['gateway']}/v1/payments/webhooks/sandbox"
    assert env["KASSA_JWT_SECRET"] == "jwt-s"
    assert env["KASSA_WEBHOOK_SECRET"] == "wh-s"
    assert "KASSA_SMTP_URL" not in env  # external infrastructure: the operator sets it
    with_sink = mesh_env(dataclasses.replace(endpoints, smtp_url="smtp://127.0.0.1:8", mail_dir="/m"), ports)
    assert (with_sink["KASSA_SMTP_URL"], with_sink["KASSA_MAIL_DIR"]) == ("smtp://127.0.0.1:8", "/m")

    defaults = mesh_env(endpoints)
    assert {n: defaults[f"KASSA_{n.upper()}_ADDR"] for n in DEFAULT_ADDRS} == DEFAULT_ADDRS
    with pytest.raises(ValueError, match="unknown process names"):
        mesh_env(endpoints, {"inventory": 1})


def test_default_specs_run_each_service_as_a_module_in_dependency_order() -> None:
    ports = dict(zip(MESH_ORDER, free_ports(len(MESH_ORDER)), strict=True))
    specs = default_specs(_env(ports))
    assert [s.name for s in specs] == list(MESH_ORDER)
    modules = {s.name: s.argv[2] for s in specs}
    assert modules["sandbox"] == "devstack.sandbox"
    assert modules["checkout"] == "checkout"
    assert all(s.argv[:2] == (sys.executable, "-m") for s in specs)
    assert {s.name: s.port for s in specs} == ports
    health = {s.name: (s.health, s.http_path) for s in specs}
    assert health["gateway"] == ("http-200", "/healthz")
    assert health["sandbox"][0] == "http"
    assert all(health[n][0] == "grpc" for n in ("warehouse", "pricing", "promotion", "payment", "order", "checkout"))
