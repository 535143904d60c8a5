"""Replicas for real: a channel to a service's address list spreads calls over every replica, and a mesh of
N replicas starts, probes, restarts and stops each one on its own.

The servers are real processes and real grpc.aio servers; the mesh runs stand-ins that read their address
the way a Kassa process does (``infra.config.Settings.listen_addr`` with KASSA_REPLICA, and for the gateway
``gateway.server.listening_socket`` on the shared port with SO_REUSEPORT beside its own).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import grpc
import httpx
import pytest

from devstack.localstack import StackEndpoints, free_ports
from devstack.mesh import Mesh, RestartPolicy, default_specs, free_mesh_ports, mesh_env
from infra.channels import open_channel

pytestmark = pytest.mark.integration

_WHO = "/kassa.test.Who/Am"


def _who_server(identity: bytes) -> grpc.aio.Server:
    async def answer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return identity

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("kassa.test.Who", {"Am": grpc.unary_unary_rpc_method_handler(answer)}),)
    )
    return server


async def test_a_channel_to_two_replicas_spreads_its_calls_over_both_and_skips_one_that_is_down() -> None:
    first, second = _who_server(b"first"), _who_server(b"second")
    ports = [first.add_insecure_port("127.0.0.1:0"), second.add_insecure_port("127.0.0.1:0")]
    await first.start()
    await second.start()
    try:
        async with open_channel(",".join(f"127.0.0.1:{port}" for port in ports)) as channel:
            call = channel.unary_unary(_WHO)
            await channel.channel_ready()
            seen: Counter[bytes] = Counter()
            for _ in range(40):
                seen[await call(b"", timeout=10)] += 1
            # One client, one channel: the calls (not only the connections) go to both replicas.
            assert set(seen) == {b"first", b"second"}
            assert min(seen.values()) >= 10
            await second.stop(grace=None)
            answers = {await call(b"", timeout=10, wait_for_ready=True) for _ in range(10)}
            assert answers == {b"first"}
    finally:
        await first.stop(grace=None)
        await second.stop(grace=None)


# A gRPC service replica: serves grpc.health.v1 on the address its settings give it.
_GRPC_REPLICA = """
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from infra.config import Settings
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
servicer = health.HealthServicer()
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
server.add_insecure_port(Settings.from_env().listen_addr("warehouse"))
server.start()
servicer.set("", health_pb2.HealthCheckResponse.SERVING)
server.wait_for_termination()
"""

# A gateway replica: answers "replica <k>" on the shared port (SO_REUSEPORT) and on its own address.
_GATEWAY_REPLICA = """
import http.server, os, threading
from gateway.server import listening_socket
from infra.config import Settings
settings = Settings.from_env()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"replica {os.environ['KASSA_REPLICA']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
def serve(sock):
    server = http.server.ThreadingHTTPServer(sock.getsockname(), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.server_activate()
    server.serve_forever()
shared = listening_socket(settings.addr("gateway"), reuse_port=True)
own = listening_socket(settings.gateway_own_addr(), reuse_port=False)
threading.Thread(target=serve, args=(shared,), daemon=True).start()
serve(own)
"""


def _wait_for_line(lines: list[str], text: str, timeout: float = 20.0) -> None:
    """The watcher logs a restart just after the probe that wait_healthy also saw: wait for its line."""
    deadline = time.monotonic() + timeout
    while not any(text in line for line in list(lines)):
        assert time.monotonic() < deadline, f"no line with {text!r} in {lines}"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_mesh_of_two_replicas_runs_probes_restarts_and_stops_each_replica(tmp_path: Path) -> None:
    endpoints = StackEndpoints("postgresql+psycopg://x@127.0.0.1:1/k", "redis://127.0.0.1:1", "nats://127.0.0.1:1")
    env = mesh_env(endpoints, free_mesh_ports(2), replicas=2)
    stand_ins = {"warehouse": _GRPC_REPLICA, "gateway": _GATEWAY_REPLICA}
    specs = [
        dataclasses.replace(spec, argv=(sys.executable, "-c", stand_ins[spec.service_name]))
        for spec in default_specs(env)
        if spec.service_name in stand_ins
    ]
    lines: list[str] = []
    mesh = Mesh(env, tmp_path / "logs", specs=specs, log=lines.append, restart_policy=RestartPolicy(backoff=0.05))
    mesh.start()
    try:
        first = mesh.pids
        assert list(first) == ["warehouse.0", "warehouse.1", "gateway.0", "gateway.1"]
        assert len(set(first.values())) == 4
        assert mesh.replicas("warehouse") == ["warehouse.0", "warehouse.1"]
        assert mesh.services == {name: name.split(".")[0] for name in first}
        warehouse = env["KASSA_WAREHOUSE_ADDR"].split(",")
        for k, addr in enumerate(warehouse):
            assert any(line.startswith(f"warehouse.{k}") and f"healthy on {addr} (pid" in line for line in lines)
        # Each gateway replica answers on its own address; the shared one reaches them both.
        own = env["KASSA_GATEWAY_REPLICA_ADDRS"].split(",")
        for k, addr in enumerate(own):
            assert httpx.get(f"http://{addr}/", trust_env=False).text == f"replica {k}"
        shared = f"http://{env['KASSA_GATEWAY_ADDR']}/"
        answers = {httpx.get(shared, trust_env=False).text for _ in range(60)}
        assert answers == {"replica 0", "replica 1"}

        # A killed replica comes back on its own address; its sibling is left alone.
        os.kill(first["warehouse.1"], signal.SIGKILL)
        again = mesh.wait_healthy("warehouse.1", timeout=30)
        assert again != first["warehouse.1"]
        assert mesh.pids["warehouse.0"] == first["warehouse.0"]
        assert mesh.restarts == {"warehouse.0": 0, "warehouse.1": 1, "gateway.0": 0, "gateway.1": 0}
        _wait_for_line(lines, f"healthy again on {warehouse[1]} (pid {again}, restart 1)")

        # While one gateway replica is down, the shared port is served by the other.
        os.kill(first["gateway.0"], signal.SIGKILL)
        mesh.wait_healthy("gateway.1", timeout=5)
        back = mesh.wait_healthy("gateway.0", timeout=30)
        assert back != first["gateway.0"]
        assert httpx.get(shared, trust_env=False).status_code == 200
        running = mesh.pids
    finally:
        codes = mesh.stop()
    assert set(codes) == {"warehouse.0", "warehouse.1", "gateway.0", "gateway.1"}
    assert not any(_alive(pid) for pid in (*first.values(), *running.values()))
    assert mesh.pids == {}


def test_a_taken_shared_gateway_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    import socket

    endpoints = StackEndpoints("postgresql+psycopg://x@127.0.0.1:1/k", "redis://127.0.0.1:1", "nats://127.0.0.1:1")
    ports = free_mesh_ports(2)
    env = mesh_env(endpoints, ports, replicas=2)
    specs = [
        dataclasses.replace(spec, argv=(sys.executable, "-c", _GATEWAY_REPLICA))
        for spec in default_specs(env)
        if spec.service_name == "gateway"
    ]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports["gateway"][0]))
        squatter.listen()
        mesh = Mesh(env, tmp_path / "logs", specs=specs, log=lambda _: None)
        with pytest.raises(Exception, match=f"{env['KASSA_GATEWAY_ADDR']} is already in use"):
            mesh.start()
    assert mesh.pids == {}


def test_free_mesh_ports_hands_out_distinct_ports_for_every_replica() -> None:
    ports = free_mesh_ports(3)
    every = [port for group in ports.values() for port in group]
    assert len(every) == len(set(every))
    assert len(ports["checkout"]) == 3 and len(ports["gateway"]) == 4 and len(ports["sandbox"]) == 1
    assert free_ports(1)  # still usable afterwards
