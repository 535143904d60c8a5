"""The private stack a chaos run breaks: LocalStack + migrations + a supervised Mesh, on free ports.

Like ``bench.stack.own_stack``, but the run needs the handles themselves, not only addresses: it kills
mesh processes by their pids (the supervisor brings them back), restarts Redis and NATS through
``LocalStack.restart`` and reads the logs afterwards. Everything is stopped by the pids this run
started; the data folder is kept when the run failed, so its logs can be read.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from devstack.localstack import LocalStack, StackEndpoints, free_ports
from devstack.mesh import MESH_ORDER, Mesh, RestartPolicy, mesh_env

__all__ = ["CHAOS_RESTART_POLICY", "ChaosStack", "private_stack"]

# A chaos run kills processes on purpose, many times over: the supervisor must keep restarting them
# (a crash loop is still bounded, so a process that can no longer start is reported, not retried forever).
CHAOS_RESTART_POLICY = RestartPolicy(backoff=0.25, max_backoff=4.0, max_restarts=30, window=60.0, reset_after=10.0)


@dataclass
class ChaosStack:
    local: LocalStack
    mesh: Mesh
    endpoints: StackEndpoints
    env: dict[str, str]
    data_dir: Path

    def addr(self, name: str) -> str:
        return self.env[f"KASSA_{name.upper()}_ADDR"]

    @property
    def gateway_url(self) -> str:
        return f"http://{self.addr('gateway')}"

    @property
    def sandbox_url(self) -> str:
        return self.env["KASSA_SANDBOX_URL"]

    @property
    def log_dirs(self) -> list[Path]:
        return [self.data_dir / "logs", self.data_dir / "stack" / "logs"]


@contextmanager
def private_stack(
    extra_env: Mapping[str, str],
    *,
    log: Callable[[str], object] = lambda _: None,
    keep: Callable[[], bool] = lambda: False,
) -> Iterator[ChaosStack]:
    """Start it all, yield it, stop it all; the files go unless ``keep()`` says otherwise at the end."""
    from infra.migrate import migrate

    data_dir = Path(tempfile.mkdtemp(prefix="kassa-chaos-"))
    kept = True
    try:
        with ExitStack() as cleanup:
            pg_port, redis_port, nats_port = free_ports(3)
            local = LocalStack(data_dir / "stack", pg_port=pg_port, redis_port=redis_port, nats_port=nats_port, log=log)
            cleanup.callback(local.stop)
            endpoints = local.start()
            log("chaos: migrating ...")
            migrate(endpoints.database_url)
            env = mesh_env(
                endpoints, dict(zip(MESH_ORDER, free_ports(len(MESH_ORDER)), strict=True)), data_dir=data_dir
            )
            env.update(extra_env)
            mesh = Mesh(env, data_dir / "logs", log=log, restart_policy=CHAOS_RESTART_POLICY)
            cleanup.callback(mesh.stop)
            mesh.start()
            yield ChaosStack(local, mesh, endpoints, env, data_dir)
            kept = keep()
    finally:
        if kept:
            log(f"chaos: kept {data_dir} (service logs in logs/, postgres/redis/nats logs in stack/logs/)")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
