"""The whole mesh, started once per test process, for end-to-end tests over gRPC and REST.

The ``mesh`` fixture runs the eight real processes (six services, the sandbox payment provider and
the gateway) exactly as ``kassa up`` does, but on free ports, against a Postgres/Redis/NATS stack of
its own (so the mesh's background workers, such as the reservation sweeper and the payment-event
consumer, never touch the data of the per-service tests sharing this process), with logs under a
temporary directory, and with the demo catalog seeded
(``devstack.seed``: warehouses wh-us-east / wh-eu-central / wh-ap-south, skus such as KB-001, MS-001,
CB-001, coupons WELCOME10 and FREESHIP).

Starting the mesh costs seconds and two copies would fight over CPU, so every e2e module must run on
one xdist worker; put this at the top of each ``tests/e2e/test_*.py``::

    pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

(``make test`` runs pytest with ``--dist loadgroup``, which honours the group.)

``KASSA_TEST_REPLICAS=2`` (``make test-replicas``) runs every gRPC service and the gateway as two
processes each, as ``kassa up --replicas 2`` does; the services spread their calls over the replicas.

Usage: ``async def test_x(mesh: MeshHandle)`` then ``grpc.aio.insecure_channel(mesh.addr("checkout"))``
or ``httpx.AsyncClient(base_url=mesh.gateway_url)``; ``mesh.admin_token`` is an admin JWT, and
``mesh.env`` is the ``KASSA_*`` environment every process got. Tests share the catalog: use
``helpers.unique`` for anything they create, and never assume exact stock levels of seeded skus.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from e2e.support import BACKUP_SANDBOX_URL
from helpers import external_stack, private_stack

from devstack.localstack import StackEndpoints, free_ports
from devstack.mesh import Mesh, default_specs, free_mesh_ports, mesh_env
from devstack.seed import seed
from infra.auth import ROLE_ADMIN, mint_token
from infra.channels import grpc_target
from infra.config import Settings
from infra.migrate import migrate


@dataclass(frozen=True)
class MeshHandle:
    """Where the running mesh listens and how to talk to it."""

    env: dict[str, str]
    gateway_url: str
    admin_token: str
    log_dir: Path

    def addr(self, name: str) -> str:
        """A gRPC channel target of a process (any name of ``devstack.mesh.MESH_ORDER``): ``127.0.0.1:<port>``, or
        ``ipv4:<replica>,<replica>`` when it runs replicas."""
        return grpc_target(self.env[f"KASSA_{name.upper()}_ADDR"])

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)


def mesh_replicas() -> int:
    """Processes of each gRPC service and of the gateway: KASSA_TEST_REPLICAS, 1 when unset."""
    raw = os.environ.get("KASSA_TEST_REPLICAS") or "1"
    if not raw.isdigit() or int(raw) < 1:
        raise pytest.UsageError(f"KASSA_TEST_REPLICAS must be a whole number of at least 1, got {raw!r}")
    return int(raw)


@pytest.fixture(scope="session")
def mesh_stack() -> Iterator[StackEndpoints]:
    external = external_stack()
    if external is not None:
        migrate(external.database_url)
        yield external
        return
    with private_stack() as endpoints:
        migrate(endpoints.database_url)
        yield endpoints


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def mesh(mesh_stack: StackEndpoints, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MeshHandle]:
    replicas = mesh_replicas()
    env = mesh_env(
        mesh_stack,
        free_mesh_ports(replicas),
        replicas=replicas,
        data_dir=tmp_path_factory.mktemp("mesh-data"),
    )
    log_dir = tmp_path_factory.mktemp("mesh-logs")
    processes = Mesh(env, log_dir, log=lambda _: None)
    # Mesh is synchronous (it polls and sleeps); keep the session event loop free while it starts.
    await asyncio.to_thread(processes.start)
    try:
        await seed(env, log=lambda _: None)
        handle = MeshHandle(
            env=env,
            gateway_url=f"http://{env['KASSA_GATEWAY_ADDR']}",
            admin_token=mint_token(env["KASSA_JWT_SECRET"], "admin-e2e", role=ROLE_ADMIN),
            log_dir=log_dir,
        )
        yield handle
    finally:
        await asyncio.to_thread(processes.stop)


# A second, short-lived mesh for the tests that need other settings than the shared one (a payment window of
# seconds, a dead primary payment provider). It gets a private stack of its own: two meshes on one
# Postgres/NATS would share durable consumers and workers and act on each other's sessions and events.
StartMesh = Callable[..., contextlib.AbstractAsyncContextManager[MeshHandle]]


@pytest.fixture(scope="session")
def start_mesh(tmp_path_factory: pytest.TempPathFactory) -> StartMesh:
    """``async with start_mesh(extra_env, backup="backup") as m:`` — a whole mesh with extra ``KASSA_*`` settings.

    With ``backup``, a second sandbox provider runs beside the mesh, signing webhooks to
    ``/v1/payments/webhooks/<backup>``; ``extra_env`` values may name ``{backup_url}`` (it) and ``{dead_url}``
    (a free port nothing listens on). Costs a private stack and a mesh start (seconds): use sparingly.
    """

    @contextlib.asynccontextmanager
    async def start(extra_env: dict[str, str] | None = None, *, backup: str | None = None) -> AsyncIterator[MeshHandle]:
        with contextlib.ExitStack() as stop:
            endpoints = await asyncio.to_thread(stop.enter_context, private_stack())
            await asyncio.to_thread(migrate, endpoints.database_url)
            replicas = mesh_replicas()
            mesh_ports = free_mesh_ports(replicas)
            taken = {port for ports in mesh_ports.values() for port in ports}
            ports = free_ports(2)
            while taken & set(ports):
                ports = free_ports(2)
            data_dir = tmp_path_factory.mktemp("variant-mesh-data")
            env = mesh_env(endpoints, mesh_ports, replicas=replicas, data_dir=data_dir)
            backup_url = f"http://127.0.0.1:{ports[-2]}"
            values = {"backup_url": backup_url, "dead_url": f"http://127.0.0.1:{ports[-1]}"}
            env.update({k: v.format(**values) for k, v in (extra_env or {}).items()})
            log_dir = tmp_path_factory.mktemp("variant-mesh-logs")
            if backup:
                second = {
                    **env,
                    "KASSA_SANDBOX_ADDR": f"127.0.0.1:{ports[-2]}",
                    "KASSA_SANDBOX_WEBHOOK_URL": f"http://{env['KASSA_GATEWAY_ADDR']}/v1/payments/webhooks/{backup}",
                    "KASSA_SANDBOX_DB": str(data_dir / backup / "ledger.sqlite3"),
                }
                specs = [spec for spec in default_specs(second) if spec.name == "sandbox"]
                backup_proc = Mesh(second, log_dir / backup, specs=specs, log=lambda _: None)
                await asyncio.to_thread(backup_proc.start)
                stop.callback(backup_proc.stop)
            processes = Mesh(env, log_dir, log=lambda _: None)
            await asyncio.to_thread(processes.start)
            stop.callback(processes.stop)
            await seed(env, log=lambda _: None)
            yield MeshHandle(
                env={**env, BACKUP_SANDBOX_URL: backup_url} if backup else env,
                gateway_url=f"http://{env['KASSA_GATEWAY_ADDR']}",
                admin_token=mint_token(env["KASSA_JWT_SECRET"], "admin-e2e", role=ROLE_ADMIN),
                log_dir=log_dir,
            )

    return start
