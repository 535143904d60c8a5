"""The mesh on a three-node JetStream cluster (``kassa up --nats-cluster 3``): a server killed under load loses
no event and none is applied twice (DESIGN.md §4.5).

A private stack whose NATS is three servers from the same wheel, joined by routes on loopback; the mesh
gets all three URLs and creates its streams with three replicas. Customers check out over REST (some
cancel, so payment, warehouse and promotion consume OrderCancelled) while the server leading the order
stream is SIGKILLed by its pid and left dead. Afterwards ``kassa check`` (devstack.check) must pass: every
outbox row sent and in its stream, every consumer effect applied once, stock and money consistent; and
no stream holds an event twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats.errors
import pytest
import pytest_asyncio
from e2e.support import Rest, confirm, eventually, fill_cart, make_catalog, ready_session

from devstack import check
from devstack.localstack import LocalStack, StackEndpoints, free_ports, nats_nodes
from devstack.mesh import MESH_ORDER, Mesh, mesh_env
from devstack.seed import seed
from infra.auth import ROLE_ADMIN, mint_token
from infra.events import STREAMS, connect
from infra.migrate import migrate

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("nats-cluster")]

CHECKOUTS = 24
AT_ONCE = 6
KILL_AFTER = 8  # checkouts confirmed before the server dies


@dataclass(frozen=True)
class ClusterMesh:
    stack: LocalStack
    endpoints: StackEndpoints
    env: dict[str, str]
    gateway_url: str
    admin_token: str

    def addr(self, name: str) -> str:
        return self.env[f"KASSA_{name.upper()}_ADDR"]


@pytest_asyncio.fixture(loop_scope="session")
async def cluster_mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ClusterMesh]:
    # Not under pytest's temp folder (0700 when another pytest starts; Postgres runs as another user under root).
    data_dir = Path(tempfile.mkdtemp(prefix="kassa-test-cluster-"))
    pg_port, redis_port = free_ports(2)
    stack = LocalStack(
        data_dir,
        pg_port=pg_port,
        redis_port=redis_port,
        nats_cluster_nodes=nats_nodes(3, free=True),
        log=lambda *_: None,
    )
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, data_dir, ignore_errors=True)
        cleanup.callback(stack.stop)
        endpoints = await asyncio.to_thread(stack.start)
        await asyncio.to_thread(migrate, endpoints.database_url)
        env = mesh_env(
            endpoints,
            dict(zip(MESH_ORDER, free_ports(len(MESH_ORDER)), strict=True)),
            data_dir=tmp_path_factory.mktemp("cluster-mesh-data"),
        )
        processes = Mesh(env, tmp_path_factory.mktemp("cluster-mesh-logs"), log=lambda _: None)
        await asyncio.to_thread(processes.start)
        cleanup.callback(processes.stop)
        await seed(env, log=lambda _: None)
        yield ClusterMesh(
            stack=stack,
            endpoints=endpoints,
            env=env,
            gateway_url=f"http://{env['KASSA_GATEWAY_ADDR']}",
            admin_token=mint_token(env["KASSA_JWT_SECRET"], "admin-cluster", role=ROLE_ADMIN),
        )


async def _checkout(mesh: ClusterMesh, skus: list[str], n: int) -> str:
    client = Rest(mesh.gateway_url)
    try:
        await client.guest()
        cart = await fill_cart(client, [skus[n % len(skus)]], [1])
        session = await ready_session(client, cart)
        order = await confirm(client, session["session_id"], session["preview"]["grandTotal"])
        order_id = str(order["orderId"])
        if n % 3 == 0:  # OrderCancelled: payment, warehouse and promotion consume it
            await client.call("POST", f"/v1/orders/{order_id}:cancel", {"reason": "changed my mind"})
        return order_id
    finally:
        await client.close()


async def _leader_of(mesh: ClusterMesh, stream: str) -> str:
    nc, js = await connect(mesh.endpoints.nats_url, "cluster-test")
    try:
        info = await js.stream_info(stream)
    finally:
        await nc.close()
    assert info.config.num_replicas == 3
    assert info.cluster is not None and info.cluster.leader
    assert len(info.cluster.replicas or []) == 2  # the leader and two more copies
    return info.cluster.leader.removeprefix("kassa-")


async def _message_counts(mesh: ClusterMesh) -> dict[str, int]:
    nc, js = await connect(mesh.endpoints.nats_url, "cluster-test")
    try:
        return {service: (await js.stream_info(stream)).state.messages for service, stream in STREAMS.items()}
    finally:
        await nc.close()


async def test_a_nats_server_killed_under_load_loses_no_event_and_applies_none_twice(cluster_mesh: ClusterMesh) -> None:
    mesh = cluster_mesh
    assert mesh.env["KASSA_NATS_REPLICAS"] == "3"
    assert len(mesh.endpoints.nats_url.split(",")) == 3
    skus = await make_catalog(mesh, n=4, on_hand=100)
    victim = await _leader_of(mesh, STREAMS["order"])

    gate = asyncio.Semaphore(AT_ONCE)
    confirmed = 0
    killed = asyncio.Event()

    async def customer(n: int) -> str:
        nonlocal confirmed
        async with gate:
            order_id = await _checkout(mesh, skus, n)
        confirmed += 1
        if confirmed == KILL_AFTER:
            os.kill(mesh.stack.pids[victim], signal.SIGKILL)
            killed.set()
        return order_id

    orders = await asyncio.gather(*(customer(n) for n in range(CHECKOUTS)))
    assert killed.is_set()
    assert len(set(orders)) == CHECKOUTS

    async def new_leader() -> str | None:
        # A JetStream call times out while the two servers left elect a new leader (seconds): ask again.
        with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
            return await _leader_of(mesh, STREAMS["order"])
        return None

    assert await eventually(new_leader, within=60, interval=1, what="a new leader of the order stream") != victim

    last: list[object] = []

    def passed() -> list[check.Finding] | None:
        try:
            findings = check.check_stack(
                mesh.endpoints.database_url, sandbox_url=mesh.env["KASSA_SANDBOX_URL"], nats_url=mesh.endpoints.nats_url
            )
        except check.StackReadError as exc:  # a JetStream call during a re-election: read again
            last[:] = [exc]
            return None
        last[:] = [f for f in findings if not f.passed]
        return findings if all(f.passed for f in findings) else None

    async def invariants_hold() -> list[check.Finding] | None:
        return await asyncio.to_thread(passed)

    try:
        findings = await eventually(invariants_hold, within=120, interval=1, what="kassa check to pass after the kill")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last: {last}") from None
    by_name = {f.name: f for f in findings}
    assert by_name["outbox_sent"].count > CHECKOUTS  # every event, the ones published around the kill included
    assert by_name["consumer_effects_once"].passed

    # No stream holds an event twice: as many messages as distinct Nats-Msg-Ids.
    async def stream_ids() -> dict[str, set[str]] | None:
        # The two servers left may still answer a stream call "unavailable" for a moment after an election.
        with contextlib.suppress(check.StackReadError):
            return await asyncio.to_thread(check.read_stream_ids, mesh.endpoints.nats_url)
        return None

    ids = await eventually(stream_ids, within=60, interval=1, what="the streams' message ids")
    counts = await _message_counts(mesh)
    assert {s: len(v) for s, v in ids.items() if counts.get(s)} == {s: n for s, n in counts.items() if n}

    # The dead server comes back (as an orchestrator would restart it) and catches up from the other two.
    await asyncio.to_thread(mesh.stack.restart, victim)

    async def caught_up() -> bool:
        nc, js = await connect(mesh.endpoints.nats_url, "cluster-test")
        try:
            info = await js.stream_info(STREAMS["order"])
        except (TimeoutError, nats.errors.TimeoutError):
            return False
        finally:
            await nc.close()
        peers = {info.cluster.leader: True} | {p.name: bool(p.current and not p.offline) for p in info.cluster.replicas}
        return info.state.messages == counts["order"] and peers.get(f"kassa-{victim}") is True

    await eventually(caught_up, within=60, interval=1, what=f"{victim} to rejoin and catch up")
