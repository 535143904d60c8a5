"""Where each process serves /metrics: its gRPC port + 1000 (each replica its own), or KASSA_<SERVICE>_METRICS_ADDR;
and the local mesh gives each replica a metrics port of its own."""

from __future__ import annotations

import pytest

from devstack.localstack import StackEndpoints
from devstack.mesh import free_mesh_ports, mesh_env
from infra.config import ConfigError, Settings

_ENDPOINTS = StackEndpoints("postgresql+psycopg://p@127.0.0.1:5/k", "redis://127.0.0.1:6/0", "nats://127.0.0.1:7")


def _metrics(env: dict[str, str], service: str) -> str:
    settings = Settings.from_env(env)
    return settings.metrics_listen_addr(service, settings.listen_addr(service))


def test_a_service_serves_metrics_on_its_grpc_port_plus_1000_on_the_same_interface() -> None:
    assert _metrics({}, "checkout") == "127.0.0.1:51051"
    assert _metrics({}, "notification") == "127.0.0.1:51057"
    assert _metrics({"KASSA_ORDER_ADDR": "0.0.0.0:50052"}, "order") == "0.0.0.0:51052"
    # A free port (tests bind :0) gets a free metrics port, not port 1000.
    assert Settings.from_env({}).metrics_listen_addr("pricing", "127.0.0.1:0") == "127.0.0.1:0"
    with pytest.raises(ConfigError, match="KASSA_PAYMENT_METRICS_ADDR must be set"):
        Settings.from_env({}).metrics_listen_addr("payment", "127.0.0.1:65000")


def test_each_replica_gets_its_own_metrics_port() -> None:
    replicas = {"KASSA_CHECKOUT_ADDR": "127.0.0.1:50051,127.0.0.1:50061"}
    assert _metrics({**replicas, "KASSA_REPLICA": "0"}, "checkout") == "127.0.0.1:51051"
    assert _metrics({**replicas, "KASSA_REPLICA": "1"}, "checkout") == "127.0.0.1:51061"
    chosen = {**replicas, "KASSA_CHECKOUT_METRICS_ADDR": "127.0.0.1:9101,127.0.0.1:9102"}
    assert _metrics({**chosen, "KASSA_REPLICA": "1"}, "checkout") == "127.0.0.1:9102"
    with pytest.raises(ConfigError, match="KASSA_CHECKOUT_METRICS_ADDR lists 2 replicas: set KASSA_REPLICA"):
        Settings.from_env({"KASSA_CHECKOUT_METRICS_ADDR": "127.0.0.1:9101,127.0.0.1:9102"}).metrics_listen_addr(
            "checkout", "127.0.0.1:50051"
        )


def test_a_malformed_metrics_address_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match="KASSA_WAREHOUSE_METRICS_ADDR"):
        Settings.from_env({"KASSA_WAREHOUSE_METRICS_ADDR": "nowhere"})


def test_the_local_mesh_gives_every_replica_a_free_metrics_port_or_kassa_ups_plus_1000() -> None:
    ports = free_mesh_ports(2)
    env = mesh_env(_ENDPOINTS, ports, replicas=2)
    grpc_ports = {p for ps in ports.values() for p in ps}
    metrics = [
        int(addr.rsplit(":", 1)[1])
        for service in ("checkout", "order", "payment", "warehouse", "pricing", "promotion", "notification")
        for addr in env[f"KASSA_{service.upper()}_METRICS_ADDR"].split(",")
    ]
    assert len(metrics) == 14 and len(set(metrics)) == 14 and not set(metrics) & grpc_ports
    assert _metrics({**env, "KASSA_REPLICA": "1"}, "checkout") == env["KASSA_CHECKOUT_METRICS_ADDR"].split(",")[1]
    assert "KASSA_GATEWAY_METRICS_ADDR" not in env  # the gateway serves /metrics on its own port

    kassa_up = mesh_env(_ENDPOINTS, replicas=2, metrics_port_offset=True)
    assert not {k for k in kassa_up if k.endswith("_METRICS_ADDR")}
    assert _metrics({**kassa_up, "KASSA_REPLICA": "1"}, "warehouse") == "127.0.0.1:51064"
