"""The options that make the local NATS a cluster (``kassa up --nats-cluster 3``, ``LocalStack(nats_cluster=3)``);
the cluster itself runs in tests/e2e/test_nats_cluster.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.cli import build_parser
from devstack.localstack import LocalStack, NatsNode, nats_nodes
from infra.events import servers

pytestmark = pytest.mark.unit


def test_kassa_up_takes_a_cluster_of_one_three_or_five() -> None:
    assert build_parser().parse_args(["up"]).nats_cluster == 1
    assert build_parser().parse_args(["up", "--nats-cluster", "3"]).nats_cluster == 3
    with pytest.raises(SystemExit):
        build_parser().parse_args(["up", "--nats-cluster", "2"])


def test_a_cluster_gets_client_route_and_monitoring_ports_each() -> None:
    assert nats_nodes(1) == (NatsNode(54222),)
    assert nats_nodes(3) == (
        NatsNode(54222, 55222, 56222),
        NatsNode(54223, 55223, 56223),
        NatsNode(54224, 55224, 56224),
    )
    free = nats_nodes(3, free=True)
    ports = [p for node in free for p in (node.client_port, node.route_port, node.monitor_port)]
    assert len(set(ports)) == 9
    with pytest.raises(ValueError, match="1 to 5"):
        nats_nodes(6)


def test_the_stack_refuses_a_cluster_without_route_ports_or_with_a_port_twice(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="route and a monitoring port"):
        LocalStack(tmp_path, nats_cluster_nodes=(NatsNode(1001), NatsNode(1002)))
    with pytest.raises(ValueError, match="distinct"):
        LocalStack(tmp_path, pg_port=54222, nats_cluster=3)


def test_clients_get_every_server_of_the_cluster() -> None:
    assert servers("nats://a:4222") == ["nats://a:4222"]
    assert servers("nats://a:4222, nats://b:4222,nats://c:4222") == ["nats://a:4222", "nats://b:4222", "nats://c:4222"]
