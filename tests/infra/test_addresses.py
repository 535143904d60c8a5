"""Address lists of replicated services: parsing and validation, the replica a process serves, the gRPC
target its clients dial, and the environment and process list a mesh of N replicas gets."""

from __future__ import annotations

import pytest

from devstack.localstack import StackEndpoints
from devstack.mesh import MESH_ORDER, default_specs, free_mesh_ports, mesh_env, service_of
from infra.channels import grpc_target
from infra.config import ConfigError, Settings, parse_addrs

pytestmark = pytest.mark.unit

_ENDPOINTS = StackEndpoints("postgresql+psycopg://x@127.0.0.1:1/k", "redis://127.0.0.1:1", "nats://127.0.0.1:1")


def test_an_address_list_is_split_trimmed_and_kept_in_order() -> None:
    assert parse_addrs("V", "127.0.0.1:50051") == ("127.0.0.1:50051",)
    assert parse_addrs("V", "127.0.0.1:50051, 127.0.0.1:50061") == ("127.0.0.1:50051", "127.0.0.1:50061")
    assert parse_addrs("V", "[::1]:1,[::1]:2") == ("[::1]:1", "[::1]:2")
    # One address may be a host name (a Kubernetes service, say); only a list must be IP literals.
    assert parse_addrs("V", "checkout.kassa.svc:50051") == ("checkout.kassa.svc:50051",)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "must be host:port or a comma-separated list"),
        ("127.0.0.1:1,", "must be host:port or a comma-separated list"),
        ("127.0.0.1", "is not host:port"),
        ("127.0.0.1:http", "is not host:port"),
        ("127.0.0.1:70000", "is not host:port"),
        (":50051", "is not host:port"),
        ("127.0.0.1:1,checkout:2", "a list of replicas must give IP addresses of one family"),
        ("127.0.0.1:1,[::1]:2", "a list of replicas must give IP addresses of one family"),
        ("127.0.0.1:1,127.0.0.1:1", "lists an address twice"),
    ],
)
def test_a_malformed_address_or_list_is_refused_naming_the_variable(value: str, why: str) -> None:
    with pytest.raises(ConfigError, match="KASSA_CHECKOUT_ADDR") as refused:
        parse_addrs("KASSA_CHECKOUT_ADDR", value)
    assert why in str(refused.value)


def test_settings_refuse_a_bad_list_at_start_up_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="KASSA_PRICING_ADDR: a list of replicas must give IP addresses"):
        Settings.from_env({"KASSA_PRICING_ADDR": "127.0.0.1:1,pricing:2"})
    # The gateway's replicas share one address, and the sandbox is one process.
    for name in ("GATEWAY", "SANDBOX"):
        with pytest.raises(ConfigError, match=f"KASSA_{name}_ADDR must be one host:port"):
            Settings.from_env({f"KASSA_{name}_ADDR": "127.0.0.1:1,127.0.0.1:2"})
    with pytest.raises(ConfigError, match="KASSA_REPLICA must be an integer"):
        Settings.from_env({"KASSA_REPLICA": "first"})
    for negative in ("-1", "-2"):
        with pytest.raises(ConfigError, match="KASSA_REPLICA must be a replica index of 0 or more"):
            Settings.from_env({"KASSA_REPLICA": negative})
    with pytest.raises(ConfigError, match="KASSA_GATEWAY_REPLICA_ADDRS"):
        Settings.from_env({"KASSA_GATEWAY_REPLICA_ADDRS": "127.0.0.1:1,,"})


def test_a_process_serves_the_entry_kassa_replica_names() -> None:
    env = {"KASSA_CHECKOUT_ADDR": "127.0.0.1:50051,127.0.0.1:50061"}
    assert Settings.from_env({**env, "KASSA_REPLICA": "0"}).listen_addr("checkout") == "127.0.0.1:50051"
    assert Settings.from_env({**env, "KASSA_REPLICA": "1"}).listen_addr("checkout") == "127.0.0.1:50061"
    # Clients still see the whole list.
    assert Settings.from_env({**env, "KASSA_REPLICA": "1"}).addr("checkout") == env["KASSA_CHECKOUT_ADDR"]
    # One address needs no KASSA_REPLICA.
    assert Settings.from_env({}).listen_addr("order") == "127.0.0.1:50052"
    with pytest.raises(
        ConfigError, match=r"KASSA_CHECKOUT_ADDR lists 2 replicas: set KASSA_REPLICA to the index \(0-1"
    ):
        Settings.from_env(env).listen_addr("checkout")
    with pytest.raises(ConfigError, match="KASSA_REPLICA=2, but KASSA_CHECKOUT_ADDR lists 2 address"):
        Settings.from_env({**env, "KASSA_REPLICA": "2"}).listen_addr("checkout")


def test_a_gateway_replica_has_an_own_address_only_beside_others() -> None:
    assert Settings.from_env({}).gateway_own_addr() is None
    env = {"KASSA_GATEWAY_REPLICA_ADDRS": "127.0.0.1:8081,127.0.0.1:8082", "KASSA_REPLICA": "1"}
    assert Settings.from_env(env).gateway_own_addr() == "127.0.0.1:8082"


def test_a_list_becomes_an_ipv4_or_ipv6_target_and_one_address_stays_as_it_is() -> None:
    assert grpc_target("127.0.0.1:50051") == "127.0.0.1:50051"
    assert grpc_target("checkout:50051") == "checkout:50051"
    assert grpc_target("127.0.0.1:1, 127.0.0.1:2") == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert grpc_target("[::1]:1,[::1]:2") == "ipv6:[::1]:1,[::1]:2"
    with pytest.raises(ConfigError):
        grpc_target("127.0.0.1:1,nowhere:2")


def test_mesh_env_with_replicas_derives_each_replicas_port_from_kassa_ups_defaults() -> None:
    env = mesh_env(_ENDPOINTS, replicas=2)
    assert env["KASSA_CHECKOUT_ADDR"] == "127.0.0.1:50051,127.0.0.1:50061"
    assert env["KASSA_PROMOTION_ADDR"] == "127.0.0.1:50056,127.0.0.1:50066"
    assert env["KASSA_GATEWAY_ADDR"] == "127.0.0.1:8080"
    assert env["KASSA_GATEWAY_REPLICA_ADDRS"] == "127.0.0.1:8081,127.0.0.1:8082"
    assert env["KASSA_SANDBOX_ADDR"] == "127.0.0.1:8090"
    # Every process reads a valid configuration from it.
    assert Settings.from_env({**env, "KASSA_REPLICA": "1"}).listen_addr("warehouse") == "127.0.0.1:50064"
    one = mesh_env(_ENDPOINTS)
    assert one["KASSA_CHECKOUT_ADDR"] == "127.0.0.1:50051" and "KASSA_GATEWAY_REPLICA_ADDRS" not in one


def test_mesh_env_refuses_ports_that_collide_or_do_not_fit_the_replicas() -> None:
    with pytest.raises(ValueError, match="must be distinct"):
        mesh_env(_ENDPOINTS, {"order": 50051}, replicas=1)
    with pytest.raises(ValueError, match="checkout needs 2 ports with replicas=2"):
        mesh_env(_ENDPOINTS, {"checkout": [1, 2, 3]}, replicas=2)
    with pytest.raises(ValueError, match="replicas must be at least 1"):
        mesh_env(_ENDPOINTS, replicas=0)


def test_default_specs_name_each_replica_and_give_it_its_own_address_and_index() -> None:
    ports = free_mesh_ports(2)
    env = mesh_env(_ENDPOINTS, ports, replicas=2)
    specs = default_specs(env)
    names = [spec.name for spec in specs]
    assert names[:2] == ["warehouse.0", "warehouse.1"]
    assert "sandbox" in names and names[-2:] == ["gateway.0", "gateway.1"]
    assert len(specs) == 2 * (len(MESH_ORDER) - 1) + 1
    by_name = {spec.name: spec for spec in specs}
    checkout = env["KASSA_CHECKOUT_ADDR"].split(",")
    assert by_name["checkout.1"].addr == checkout[1]
    assert dict(by_name["checkout.1"].env) == {"KASSA_REPLICA": "1"}
    assert by_name["checkout.1"].service_name == "checkout"
    gateway = by_name["gateway.0"]
    assert gateway.addr == f"127.0.0.1:{ports['gateway'][1]}"
    assert gateway.also_binds == (env["KASSA_GATEWAY_ADDR"],)
    assert by_name["sandbox"].env == () and by_name["sandbox"].service_name == "sandbox"
    assert [service_of(n) for n in ("checkout.1", "checkout", "devstack.sandbox")] == [
        "checkout",
        "checkout",
        "devstack.sandbox",
    ]
