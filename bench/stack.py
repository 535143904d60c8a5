"""Where the mesh under test runs: a private stack the bench starts and stops, or a running one.

A private stack is what ``tests/e2e/conftest.py`` builds: LocalStack (Postgres, Redis, NATS) on free
ports in a temporary directory, the migrations, and ``devstack.mesh.Mesh`` on free ports. It is stopped
at the end through those classes, which signal only the pids they started.

A running stack is described by addresses (``--checkout-addr``, ``--gateway-url``, ... or the
``KASSA_*_ADDR`` environment) and, for CPU accounting, by pids: given with ``--pids`` or found by
scanning /proc for ``python -m <service>`` processes whose environment names the same address.

``own_stack(replicas=N)`` runs N processes of each gRPC service and of the gateway (``devstack.mesh``); their
pids are named ``<service>.<replica>``, and the CPU report sums them per service as well.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bench.args import is_loopback_host
from devstack.localstack import LocalStack, free_ports
from devstack.mesh import MESH_ORDER, Mesh, free_mesh_ports, mesh_env
from infra.config import DEFAULT_ADDRS, DEV_JWT_SECRET, REPLICA

__all__ = [
    "SERVICE_MODULES",
    "Target",
    "find_service_pids",
    "own_stack",
    "parse_pids",
    "require_loopback",
    "running_target",
]

# The processes of the mesh and the module each runs as (``python -m <module>``).
SERVICE_MODULES: dict[str, str] = {name: name for name in MESH_ORDER} | {"sandbox": "devstack.sandbox"}
_PROC = Path("/proc")


@dataclass
class Target:
    """The mesh under test: every ``KASSA_*`` address, the JWT secret, and what is known about it."""

    env: dict[str, str]
    database_url: str | None = None
    pids: dict[str, int] = field(default_factory=dict)
    self_started: bool = False
    notes: list[str] = field(default_factory=list)

    def addr(self, name: str) -> str:
        return self.env[f"KASSA_{name.upper()}_ADDR"]

    @property
    def gateway_url(self) -> str:
        return self.env.get("KASSA_GATEWAY_URL") or f"http://{self.addr('gateway')}"

    @property
    def jwt_secret(self) -> str:
        return self.env.get("KASSA_JWT_SECRET") or DEV_JWT_SECRET


@contextmanager
def own_stack(
    *,
    log: Callable[[str], object] = lambda _: None,
    extra_env: Mapping[str, str] | None = None,
    keep_dir: bool = False,
    replicas: int = 1,
) -> Iterator[Target]:
    """Start LocalStack + migrations + the mesh (``replicas`` of each service) on free ports; stop all of it (and
    delete its files) after.

    The data directory is kept when something failed, so the logs it names can be read.
    """
    from infra.migrate import migrate

    data_dir = Path(tempfile.mkdtemp(prefix="kassa-bench-"))
    completed = False
    try:
        with ExitStack() as cleanup:
            pg_port, redis_port, nats_port = free_ports(3)
            stack = LocalStack(data_dir / "stack", pg_port=pg_port, redis_port=redis_port, nats_port=nats_port, log=log)
            cleanup.callback(stack.stop)
            endpoints = stack.start()
            log("migrating ...")
            migrate(endpoints.database_url)
            env = mesh_env(endpoints, free_mesh_ports(replicas), replicas=replicas, data_dir=data_dir)
            env.update(extra_env or {})
            mesh = Mesh(env, data_dir / "logs", log=log)
            cleanup.callback(mesh.stop)
            mesh.start()
            yield Target(
                env=env,
                database_url=endpoints.database_url,
                pids={**mesh.pids, **stack.pids},
                self_started=True,
                notes=[f"private stack in {data_dir}"],
            )
        completed = True
    except KeyboardInterrupt:
        completed = True  # stopped on purpose: nothing to debug, so the files go as after a normal run
        raise
    finally:
        if completed and not keep_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            log(f"kept {data_dir} (service logs in logs/, postgres/redis/nats logs in stack/logs/)")


def running_target(
    environ: Mapping[str, str],
    *,
    addrs: Mapping[str, str | None],
    gateway_url: str | None,
    jwt_secret: str | None,
    database_url: str | None,
    pids: str | None,
) -> Target:
    """Describe a running mesh from flags, falling back to the environment, then to the defaults."""
    env = {
        f"KASSA_{name.upper()}_ADDR": environ.get(f"KASSA_{name.upper()}_ADDR") or d
        for name, d in DEFAULT_ADDRS.items()
    }
    for name, value in addrs.items():
        if value:
            env[f"KASSA_{name.upper()}_ADDR"] = value
    if gateway_url:
        env["KASSA_GATEWAY_URL"] = gateway_url.rstrip("/")
        env["KASSA_GATEWAY_ADDR"] = urlsplit(gateway_url).netloc
    env["KASSA_JWT_SECRET"] = jwt_secret or environ.get("KASSA_JWT_SECRET") or DEV_JWT_SECRET
    target = Target(env=env, database_url=database_url or environ.get("KASSA_DATABASE_URL") or None)
    if pids:
        target.pids = parse_pids(pids)
        target.notes.append("pids from --pids")
    else:
        target.pids = find_service_pids(env)
        missing = [name for name in MESH_ORDER if name not in target.pids]
        target.notes.append("pids found in /proc" + (f"; not found: {', '.join(missing)}" if missing else ""))
    return target


def parse_pids(spec: str) -> dict[str, int]:
    """``checkout=123,order=456`` -> {"checkout": 123, "order": 456}."""
    out: dict[str, int] = {}
    for raw in spec.split(","):
        part = raw.strip()
        if not part:
            continue
        name, sep, pid = part.partition("=")
        if not sep or not name.strip() or not pid.strip().isdigit():
            raise ValueError(f"--pids wants name=pid[,name=pid...], got {part!r}")
        out[name.strip()] = int(pid)
    return out


def _cmdline(pid: str, proc: Path) -> list[str]:
    try:
        return (proc / pid / "cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _environ(pid: str, proc: Path) -> dict[str, str] | None:
    try:
        raw = (proc / pid / "environ").read_bytes().decode(errors="replace")
    except OSError:
        return None
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def find_service_pids(env: Mapping[str, str], proc: Path = _PROC) -> dict[str, int]:
    """Pids of ``python -m <service>`` processes serving the addresses in ``env``.

    Several meshes may run at once (a ``make run`` next to a test run), so a candidate whose
    environment names another address is skipped; a name with several candidates left is left out, unless
    each names a replica of its own (KASSA_REPLICA, ``kassa up --replicas``): they are ``<name>.<replica>``.
    """
    candidates: dict[str, list[tuple[str, dict[str, str] | None]]] = {}
    modules = {module: name for name, module in SERVICE_MODULES.items()}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        argv = _cmdline(entry.name, proc)
        for i, arg in enumerate(argv[:-1]):
            if arg == "-m" and argv[i + 1] in modules:
                candidates.setdefault(modules[argv[i + 1]], []).append((entry.name, _environ(entry.name, proc)))
                break
    found: dict[str, int] = {}
    for name, pids in candidates.items():
        key = f"KASSA_{name.upper()}_ADDR"
        want = env.get(key)
        matching = [
            pid for pid, penv in pids if penv is None or want is None or penv.get(key, DEFAULT_ADDRS[name]) == want
        ]
        if len(matching) == 1:
            found[name] = int(matching[0])
            continue
        replicas = {(penv or {}).get(REPLICA, ""): pid for pid, penv in pids if pid in matching}
        if len(replicas) == len(matching) and all(r.isdigit() for r in replicas):
            found.update({f"{name}.{r}": int(pid) for r, pid in sorted(replicas.items(), key=lambda kv: int(kv[0]))})

    def order(kv: tuple[str, int]) -> int:
        service = kv[0].split(".", 1)[0]
        return MESH_ORDER.index(service) if service in MESH_ORDER else 99

    return dict(sorted(found.items(), key=order))


def require_loopback(target: Target, names: tuple[str, ...] = tuple(DEFAULT_ADDRS)) -> None:
    """Refuse to load anything but this machine: a bench is a load test, not a probe of someone else."""
    bad = []
    for name in names:
        addr = target.env.get(f"KASSA_{name.upper()}_ADDR", "")
        # A service with replicas lists them all, comma-separated: every one must be loopback.
        if not all(is_loopback_host(one.strip().rsplit(":", 1)[0]) for one in addr.split(",")):
            bad.append(f"{name}={addr}")
    gateway_host = urlsplit(target.gateway_url).hostname or ""
    if not is_loopback_host(gateway_host):
        bad.append(f"gateway-url={target.gateway_url}")
    if target.database_url:
        db_host = urlsplit(target.database_url).hostname or "127.0.0.1"
        if not is_loopback_host(db_host):
            bad.append("database-url (not loopback)")
    if bad:
        raise ValueError(f"the bench only targets loopback addresses; refused: {', '.join(bad)}")
