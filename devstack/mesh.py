"""Run the whole Kassa mesh as child processes: six services, the sandbox provider and the gateway.

Why a process manager of our own: ``kassa up`` must work on a fresh machine with no Docker, and the
end-to-end tests need the very same processes the operator runs, on free ports. Every process is a
direct child kept as a ``Popen`` in its own session (so a Ctrl-C in the terminal reaches only the
manager, which then stops the services in reverse dependency order); ``stop()`` signals exactly those
pids and never looks processes up by name, so a mesh never touches processes it did not start.

Supervision (``restart_policy=RestartPolicy()``, what ``kassa up`` uses) makes the mesh behave like
systemd's ``Restart=always`` or a Kubernetes pod: once started, each process has a watcher thread of
its own that notices its exit, logs it (exit code 86 is :data:`infra.faults.CRASH_EXIT_CODE`, a
deliberate crash injected by ``KASSA_FAULTS``, and is named so), waits an exponentially growing
backoff, starts it again on the same address and health-checks it. One watcher per process means a
slow restart of one never delays another. A process that is restarted more than ``max_restarts``
times within ``window`` seconds is in a crash loop: it is reported with the end of its log and left
down, while the rest of the mesh keeps running. The backoff starts over once a process has stayed up
for ``reset_after`` seconds. ``stop()`` stops the watchers before the processes, so nothing is
restarted while the mesh is being stopped. Without a policy a mesh does not restart anything (the
end-to-end tests want a dead process to stay dead and be noticed).

Replicas (``kassa up --replicas N``, :func:`mesh_env` with ``replicas=N``): each gRPC service runs as N
processes, each on an address of its own; its ``KASSA_<SERVICE>_ADDR`` lists them all (clients spread
their calls over them, ``infra.channels``) and ``KASSA_REPLICA`` tells each process which entry is
its own. The gateway runs as N processes sharing ``KASSA_GATEWAY_ADDR`` through SO_REUSEPORT, each also
on an address of its own (``KASSA_GATEWAY_REPLICA_ADDRS``) where its health is probed. The sandbox
provider stays one process. With N > 1 a process is named ``<service>.<replica>`` (``checkout.0``,
``checkout.1``); every replica is started, health-checked, supervised and stopped on its own, and
:attr:`Mesh.services` says which service each name belongs to.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.localstack import StackEndpoints, free_ports
from devstack.procs import port_is_free, read_log_tail, stop_children
from infra.config import (
    DEFAULT_ADDRS,
    DEV_JWT_SECRET,
    DEV_SERVICE_SECRET,
    DEV_WEBHOOK_SECRET,
    DEVELOPMENT,
    GATEWAY_REPLICA_ADDRS,
    REPLICA,
    ConfigError,
    parse_addrs,
)
from infra.faults import CRASH_EXIT_CODE
from infra.tls import MutualTls

__all__ = [
    "MESH_ORDER",
    "REPLICATED",
    "Mesh",
    "MeshError",
    "ProcessSpec",
    "RestartPolicy",
    "default_specs",
    "free_mesh_ports",
    "mesh_env",
    "service_of",
]

# Dependency order: each process only calls processes started before it (payment calls the sandbox,
# checkout calls everything below it, the gateway calls checkout, order, payment and the admin APIs).
MESH_ORDER: tuple[str, ...] = (
    "warehouse",
    "pricing",
    "promotion",
    "sandbox",
    "payment",
    "order",
    "notification",
    "checkout",
    "gateway",
)

HealthKind = Literal["grpc", "http", "http-200"]

# What `--replicas N` multiplies: every gRPC service and the gateway (the sandbox provider is one process).
REPLICATED: tuple[str, ...] = tuple(name for name in MESH_ORDER if name != "sandbox")
# Replica k of a service whose first replica listens on port p listens on p + k * this (kassa up's default
# ports: checkout 50051, 50061, ...). The gateway's replicas have their own addresses at p + 1 + k.
_REPLICA_PORT_STEP = 10

_MODULES: dict[str, str] = {name: name for name in MESH_ORDER} | {"sandbox": "devstack.sandbox"}
# The sandbox provider has no health route (any HTTP answer means up); the gateway has /healthz.
_HEALTH: dict[str, HealthKind] = {"sandbox": "http", "gateway": "http-200"}
_HTTP_PATHS: dict[str, str] = {"gateway": "/healthz"}
_LOG_TAIL_LINES = 40
_PROBE_TIMEOUT = 1.0
# A watcher sleeps on its process's pidfd and the mesh's stop signal, waking only when one of them fires. Where
# Linux has no pidfd it looks at its process this often instead; with one, it still looks this often as a
# safety net (a pid another thread reaped and the system gave to a new process before the pidfd was opened).
_WATCH_INTERVAL = 0.1
_PIDFD_WATCH_INTERVAL = 10.0
# How long stop() waits for the watchers (each is at most one health probe away from noticing).
_WATCHER_JOIN_TIMEOUT = 5.0


class _StopSignal:
    """``threading.Event``'s set/is_set/wait, and a file descriptor that turns readable once set, so a watcher
    can sleep on it and its process's pidfd in one ``select``."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._read, self._write = os.pipe()

    def set(self) -> None:
        if not self._event.is_set():
            self._event.set()
            os.write(self._write, b"x")  # never read: stays readable for every watcher

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def fileno(self) -> int:
        return self._read

    def __del__(self) -> None:  # the last watcher holding it is gone
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)


def _open_pidfd(pid: int) -> int | None:
    """A pidfd of ``pid`` (readable once it exits), or None where Linux has none or the pid is gone."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        return int(pidfd_open(pid))
    except OSError:
        return None


def _wait_for_exit(popen: subprocess.Popen[bytes], stopping: _StopSignal) -> int | None:
    """Sleep until ``popen`` exits (its exit code) or the mesh stops (None): on its pidfd and the stop signal, so
    an idle supervisor does not wake at all; every ``_WATCH_INTERVAL`` where there is no pidfd."""
    pidfd = _open_pidfd(popen.pid)
    # poll(), not select(): a descriptor numbered 1024 or more (a supervisor with many files open) is fine.
    waiting = select.poll()
    if pidfd is not None:
        waiting.register(pidfd, select.POLLIN)
        waiting.register(stopping.fileno(), select.POLLIN)
    try:
        while (code := popen.poll()) is None:
            if pidfd is None:
                if stopping.wait(_WATCH_INTERVAL):
                    return None
                continue
            waiting.poll(_PIDFD_WATCH_INTERVAL * 1000)
            if stopping.is_set():
                return None
        return code
    finally:
        if pidfd is not None:
            os.close(pidfd)


class MeshError(RuntimeError):
    """A process of the mesh could not be started or did not become healthy."""


@dataclass(frozen=True)
class ProcessSpec:
    """One process to run and how to tell that it is ready.

    ``health`` is ``"grpc"`` (grpc.health.v1 overall status SERVING), ``"http"`` (any HTTP response
    counts, for servers without a health route) or ``"http-200"`` (a 2xx answer at ``http_path``).
    """

    name: str
    argv: tuple[str, ...]
    addr: str
    health: HealthKind = "grpc"
    http_path: str = "/"
    # The service this process is a replica of ("" = its name), and what its environment adds to the mesh's.
    service: str = ""
    env: tuple[tuple[str, str], ...] = ()
    # Other addresses it listens on (the gateway's shared one), refused at start when already taken.
    also_binds: tuple[str, ...] = ()

    @property
    def port(self) -> int:
        return int(self.addr.rsplit(":", 1)[1])

    @property
    def service_name(self) -> str:
        return self.service or self.name


@dataclass(frozen=True)
class RestartPolicy:
    """How a supervised mesh restarts a process that exited.

    The n-th restart since the backoff was last reset waits ``backoff * 2**(n-1)`` seconds, at most
    ``max_backoff``. A process that stayed up for ``reset_after`` seconds starts over at ``backoff``.
    When a process exits after ``max_restarts`` restarts within the last ``window`` seconds, it is
    given up on: reported with the end of its log and not restarted again.
    """

    backoff: float = 0.5
    max_backoff: float = 10.0
    max_restarts: int = 5
    window: float = 60.0
    reset_after: float = 30.0

    def __post_init__(self) -> None:
        if self.backoff < 0 or self.max_backoff < self.backoff:
            raise ValueError(f"need 0 <= backoff <= max_backoff, got {self.backoff} and {self.max_backoff}")
        if self.max_restarts < 0 or self.window <= 0 or self.reset_after < 0:
            raise ValueError("max_restarts and reset_after must be >= 0 and window > 0")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before restart number ``attempt`` (1-based) since the last reset."""
        return min(self.backoff * 2 ** max(attempt - 1, 0), self.max_backoff)


def _describe_exit(code: int) -> str:
    """``exited with code -9 (SIGKILL)``; a fault-injection crash (exit code 86) is named as such."""
    text = f"exited with code {code}"
    if code == CRASH_EXIT_CODE:
        return f"{text} (a deliberate crash injected by KASSA_FAULTS)"
    if code < 0:
        try:
            return f"{text} ({signal.Signals(-code).name})"
        except ValueError:
            return text
    return text


def service_of(name: str) -> str:
    """The service a process name belongs to: ``checkout.1`` -> ``checkout``, ``checkout`` -> ``checkout``."""
    base, dot, replica = name.rpartition(".")
    return base if dot and replica.isdigit() else name


def free_mesh_ports(replicas: int = 1) -> dict[str, list[int]]:
    """Free ports for every process of a mesh of ``replicas``, in the shape :func:`mesh_env` takes."""
    counts = {name: replicas for name in MESH_ORDER} | {"sandbox": 1}
    if replicas > 1:
        counts["gateway"] = replicas + 1  # the shared port first, then each replica's own
    ports = iter(free_ports(sum(counts.values())))
    return {name: [next(ports) for _ in range(count)] for name, count in counts.items()}


def _replica_ports(name: str, given: int | Sequence[int], replicas: int) -> list[int]:
    """The ports of ``name``'s processes: the gateway's shared one first, then (with replicas) each one's own."""
    wanted = replicas + 1 if name == "gateway" and replicas > 1 else replicas if name in REPLICATED else 1
    if isinstance(given, int):
        if name == "gateway":
            return [given, *(given + 1 + k for k in range(wanted - 1))]
        return [given + k * _REPLICA_PORT_STEP for k in range(wanted)]
    ports = list(given)
    if len(ports) != wanted:
        raise ValueError(f"{name} needs {wanted} ports with replicas={replicas}, got {ports}")
    return ports


def mesh_env(
    endpoints: StackEndpoints,
    ports: Mapping[str, int | Sequence[int]] | None = None,
    *,
    replicas: int = 1,
    jwt_secret: str = DEV_JWT_SECRET,
    webhook_secret: str = DEV_WEBHOOK_SECRET,
    service_secret: str = DEV_SERVICE_SECRET,
    environment: str = DEVELOPMENT,
    host: str = "127.0.0.1",
    data_dir: Path | None = None,
    metrics_port_offset: bool = False,
) -> dict[str, str]:
    """The ``KASSA_*`` environment every process of the mesh reads ``infra.config.Settings`` from.

    ``ports`` maps process names to ports; a name it leaves out keeps its default port from
    ``DEFAULT_ADDRS``. All processes share one environment so they agree on where everything is.
    With ``replicas`` > 1 each gRPC service's address is the list of its replicas' and the gateway's
    replicas get addresses of their own (module docstring): a name may map to the list of its ports
    (:func:`free_mesh_ports`), or to one port the others are derived from (``+10`` per replica for a
    gRPC service, the gateway's own ones right after its shared port).
    The local mesh runs in development mode (``KASSA_ENV=development``) with the development secrets
    unless told otherwise: production is what a process assumes when nobody says.
    Each gRPC replica serves ``/metrics`` (infra.metrics) on its own port + 1000 with ``metrics_port_offset``
    (``kassa up``: the operator's ports, so 51051 for 50051), else on a free port of its own, listed in
    ``KASSA_<SERVICE>_METRICS_ADDR`` (meshes on free ports, where port + 1000 may well be taken).
    """
    unknown = set(ports or ()) - set(DEFAULT_ADDRS)
    if unknown:
        raise ValueError(f"unknown process names in ports: {sorted(unknown)}")
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    chosen = {
        name: _replica_ports(name, (ports or {}).get(name, int(default.rsplit(":", 1)[1])), replicas)
        for name, default in DEFAULT_ADDRS.items()
    }
    every = [port for name_ports in chosen.values() for port in name_ports]
    if len(set(every)) != len(every) or not all(0 < port < 65536 for port in every):
        raise ValueError(f"the mesh's ports must be distinct and within 1-65535, got {chosen}")
    gateway_replicas = chosen["gateway"][1:]
    addrs = {
        name: ",".join(f"{host}:{port}" for port in (name_ports[:1] if name == "gateway" else name_ports))
        for name, name_ports in chosen.items()
    }
    env = {
        "KASSA_DATABASE_URL": endpoints.database_url,
        "KASSA_REDIS_URL": endpoints.redis_url,
        "KASSA_NATS_URL": endpoints.nats_url,
        "KASSA_ENV": environment,
        "KASSA_JWT_SECRET": jwt_secret,
        "KASSA_SERVICE_SECRET": service_secret,
        "KASSA_WEBHOOK_SECRET": webhook_secret,
        "KASSA_SANDBOX_URL": f"http://{addrs['sandbox']}",
        "KASSA_SANDBOX_WEBHOOK_URL": f"http://{addrs['gateway']}/v1/payments/webhooks/sandbox",
        "KASSA_PUBLIC_URL": f"http://{addrs['gateway']}",
    }
    if endpoints.smtp_url:
        env["KASSA_SMTP_URL"] = endpoints.smtp_url
        env["KASSA_MAIL_DIR"] = endpoints.mail_dir  # where `kassa mail` (and the tests) read what was sent
    env.update({f"KASSA_{name.upper()}_ADDR": addr for name, addr in addrs.items()})
    if endpoints.nats_replicas > 1:
        # A local NATS cluster (kassa up --nats-cluster 3): every stream on three servers, as in production.
        env["KASSA_NATS_REPLICAS"] = str(endpoints.nats_replicas)
    if gateway_replicas:
        env[GATEWAY_REPLICA_ADDRS] = ",".join(f"{host}:{port}" for port in gateway_replicas)
    if not metrics_port_offset:
        env.update(_free_metrics_addrs(chosen, set(every), host))
    if data_dir is not None:
        # The sandbox provider's ledger lives beside the stack it belongs to, so a fresh stack gets a fresh one.
        env["KASSA_SANDBOX_DB"] = str(data_dir / "sandbox" / "ledger.sqlite3")
        # Each process's spans, as JSON lines beside the stack's data, for `kassa trace` (infra.tracing).
        env["KASSA_TRACE_DIR"] = str(data_dir / "stack" / "traces")
    return env


def _free_metrics_addrs(chosen: Mapping[str, list[int]], taken: set[int], host: str) -> dict[str, str]:
    """KASSA_<SERVICE>_METRICS_ADDR of every gRPC service: a free port per replica, none of ``taken``."""
    services = [name for name in REPLICATED if name != "gateway"]
    count = sum(len(chosen[name]) for name in services)
    ports = free_ports(count)
    while taken & set(ports):
        ports = free_ports(count)
    spare = iter(ports)
    return {
        f"KASSA_{name.upper()}_METRICS_ADDR": ",".join(f"{host}:{next(spare)}" for _ in chosen[name])
        for name in services
    }


def default_specs(env: Mapping[str, str]) -> list[ProcessSpec]:
    """The Kassa processes in dependency order, each run as ``python -m <module>``; every replica of a
    service (as many as its address list, or ``KASSA_GATEWAY_REPLICA_ADDRS``, names) right after the other."""
    specs = []
    for name in MESH_ORDER:
        variable = f"KASSA_{name.upper()}_ADDR"
        shared = env.get(variable) or DEFAULT_ADDRS[name]
        try:
            if name == "gateway":
                raw = env.get(GATEWAY_REPLICA_ADDRS)
                own = parse_addrs(GATEWAY_REPLICA_ADDRS, raw) if raw else (shared,)
                also = (shared,) if raw else ()
            else:
                own, also = parse_addrs(variable, shared), ()
        except ConfigError as exc:
            raise MeshError(str(exc)) from exc
        for k, addr in enumerate(own):
            several = len(own) > 1
            specs.append(
                ProcessSpec(
                    name=f"{name}.{k}" if several else name,
                    argv=(sys.executable, "-m", _MODULES[name]),
                    addr=addr,
                    health=_HEALTH.get(name, "grpc"),
                    http_path=_HTTP_PATHS.get(name, "/"),
                    service=name,
                    env=((REPLICA, str(k)),) if several else (),
                    also_binds=also,
                )
            )
    return specs


@dataclass
class _Process:
    spec: ProcessSpec
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_offset: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self) -> str:
        """The end of what this run wrote to its log, for error messages."""
        return read_log_tail(self.log_path, self.log_offset, _LOG_TAIL_LINES)


def _grpc_tls(env: Mapping[str, str]) -> MutualTls | None:
    """The client side of KASSA_GRPC_TLS_* (all three files set), as infra.config reads it; None without."""
    files = [env.get(f"KASSA_GRPC_TLS_{part}_FILE") for part in ("CA", "CERT", "KEY")]
    return MutualTls(*files) if all(files) else None  # type: ignore[arg-type]


class Mesh:
    """Start processes one after the other, each only once the previous one is healthy.

    ``env`` (the ``KASSA_*`` variables, usually from :func:`mesh_env`) is laid over the parent's
    environment; ``log_dir`` receives one ``<name>.log`` per process, appended to across runs.
    ``specs`` defaults to the eight Kassa processes; tests pass stand-ins. With ``restart_policy``
    the mesh supervises what it started (see the module docstring); ``start_timeout`` then also
    bounds how long a restarted process has to become healthy before it is killed and retried.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        log_dir: Path,
        *,
        specs: Iterable[ProcessSpec] | None = None,
        log: Callable[[str], object] = print,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        cwd: Path | None = None,
        restart_policy: RestartPolicy | None = None,
    ) -> None:
        self.env = dict(env)
        self.log_dir = Path(log_dir)
        self.specs = list(specs) if specs is not None else default_specs(self.env)
        names = [spec.name for spec in self.specs]
        if len(set(names)) != len(names):
            raise ValueError(f"process names must be distinct: {names}")
        self._log = log
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._cwd = cwd
        self.restart_policy = restart_policy
        # Guards _processes, _restarts and _given_up, which the watcher threads change. A restart
        # spawns under it after checking _stopping, so stop() never misses a process.
        self._lock = threading.Lock()
        self._processes: dict[str, _Process] = {}
        self._restarts: dict[str, int] = {}
        self._given_up: dict[str, int] = {}
        self._stopping = _StopSignal()
        self._watchers: list[threading.Thread] = []
        # With mutual TLS (KASSA_GRPC_TLS_*, which the processes inherit) a service takes only clients with a
        # certificate its CA signed: the health probe presents the same one.
        self._grpc_tls = _grpc_tls({**os.environ, **self.env})

    # -- public API --------------------------------------------------------------------------------

    @property
    def pids(self) -> dict[str, int]:
        """Pids of the processes this mesh started and has not stopped yet, in start order.

        Under supervision a pid changes when its process is restarted; between an exit and the
        restart it is still the dead process's pid (and stays so for a process given up on).
        """
        with self._lock:
            return {name: proc.pid for name, proc in self._processes.items()}

    @property
    def restarts(self) -> dict[str, int]:
        """How many times each process has been restarted since ``start()``."""
        with self._lock:
            return dict(self._restarts)

    @property
    def given_up(self) -> dict[str, int]:
        """Processes left down after a crash loop, with their last exit code."""
        with self._lock:
            return dict(self._given_up)

    @property
    def services(self) -> dict[str, str]:
        """Each process name -> the service it is a replica of (itself when it has no replicas)."""
        return {spec.name: spec.service_name for spec in self.specs}

    def replicas(self, service: str) -> list[str]:
        """The process names of ``service``'s replicas, in start order."""
        return [spec.name for spec in self.specs if spec.service_name == service]

    def addr(self, name: str) -> str:
        """A process's own address; for a service with replicas, the first replica's."""
        for spec in self.specs:
            if spec.name == name:
                return spec.addr
        for spec in self.specs:
            if spec.service_name == name:
                return spec.addr
        raise KeyError(name)

    def start(self) -> None:
        """Start every process in order and return once all are healthy.

        Fails fast with the tail of the process's log when it exits or is not healthy within
        ``start_timeout``; whatever was already started is stopped again before the error propagates.
        """
        if self._processes:
            raise MeshError("the mesh is already started")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._stopping = _StopSignal()
        self._restarts = {}
        self._given_up = {}
        # Safety net for callers that forget stop(): a normal interpreter exit still stops children.
        atexit.register(self.stop)
        try:
            self._check_ports_free()
            for spec in self.specs:
                with self._lock:
                    proc = self._spawn(spec)
                    self._restarts[spec.name] = 0
                self._wait_healthy(proc)
                self._log(f"{spec.name:<10} healthy on {spec.addr} (pid {proc.pid})")
                if self.restart_policy is not None:
                    self._watch(spec)
        except BaseException:
            self.stop()
            raise

    def wait_healthy(self, name: str, timeout: float = 30.0) -> int:
        """Wait until process ``name`` is running and passes its health check; return its pid.

        Meant for a caller that killed a supervised process and wants it back: compare the pid
        returned with the one killed. Raises ``KeyError`` for a name the mesh is not running, and
        ``MeshError`` when the process was given up on or is not healthy within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                proc = self._processes.get(name)
                code = self._given_up.get(name)
            if proc is None:
                raise KeyError(f"{name!r} is not running in this mesh")
            if code is not None:
                raise MeshError(
                    f"{name} was given up on after a crash loop (last {_describe_exit(code)}); "
                    f"end of {proc.log_path}:\n{proc.log_tail()}"
                )
            if proc.popen.poll() is None and self._probe(proc.spec) and proc.popen.poll() is None:
                return proc.pid
            if time.monotonic() > deadline:
                raise MeshError(f"{name} (pid {proc.pid}) was not healthy on {proc.spec.addr} within {timeout:g}s")
            time.sleep(0.1)

    def exited(self) -> dict[str, int]:
        """Processes that have exited on their own since start, with their exit codes."""
        with self._lock:
            processes = list(self._processes.values())
        return {proc.spec.name: code for proc in processes if (code := proc.popen.poll()) is not None}

    def log_tail(self, name: str) -> str:
        """The end of what the current run of process ``name`` wrote to its log."""
        with self._lock:
            proc = self._processes.get(name)
        if proc is None:
            raise KeyError(name)
        return proc.log_tail()

    def stop(self) -> dict[str, int]:
        """Stop every process this mesh started, in reverse start order; safe to call repeatedly.

        Each process gets SIGTERM by its own pid (the services drain in-flight calls on it), all
        are then awaited against one shared deadline, and anything still alive after
        ``stop_timeout`` is SIGKILLed. Returns each process's exit code (empty when nothing ran).
        Under supervision the watchers are stopped first, and a restart that was pending (waiting
        out its backoff, or waiting for the restarted process to become healthy) is abandoned.
        """
        atexit.unregister(self.stop)
        with self._lock:
            self._stopping.set()
            processes = list(self._processes.values())
            self._processes = {}
        watchers, self._watchers = self._watchers, []
        current = threading.current_thread()
        for watcher in watchers:
            if watcher is not current:
                watcher.join(_WATCHER_JOIN_TIMEOUT)
        return stop_children(
            [(proc.spec.name, proc.popen, signal.SIGTERM) for proc in reversed(processes)],
            self._stop_timeout,
            self._log,
        )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------------

    def _check_ports_free(self) -> None:
        """Refuse a taken port, or the health check could pass against a leftover process."""
        for spec in self.specs:
            for addr in dict.fromkeys((spec.addr, *spec.also_binds)):
                host, port = addr.rsplit(":", 1)
                if not port_is_free(host.strip("[]"), int(port)):
                    raise MeshError(f"{spec.name}: {addr} is already in use (another mesh still running?)")

    def _spawn(self, spec: ProcessSpec, restart: int = 0) -> _Process:
        log_path = self.log_dir / f"{spec.name}.log"
        # A restarted process draws its KASSA_FAULTS anew (infra.faults mixes the generation into its seed).
        env = {
            **os.environ,
            **self.env,
            **dict(spec.env),
            "PYTHONUNBUFFERED": "1",
            "KASSA_FAULTS_GENERATION": str(restart),
        }
        with log_path.open("ab") as log_file:
            log_file.write(f"=== kassa mesh: starting {spec.name} at {time.ctime()} ===\n".encode())
            log_file.flush()
            offset = log_file.tell()
            try:
                popen = subprocess.Popen(
                    spec.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self._cwd,
                    close_fds=True,
                    start_new_session=True,
                )
            except OSError as exc:
                raise MeshError(f"{spec.name}: could not execute {spec.argv[0]}: {exc}") from exc
        proc = _Process(spec, popen, log_path, offset)
        self._processes[spec.name] = proc
        return proc

    def _wait_healthy(self, proc: _Process) -> None:
        """Probe until healthy; fail fast if the process exits, or after ``start_timeout``."""
        outcome = self._await_health(proc, self._stopping)
        if outcome == "exited":
            raise MeshError(
                f"{proc.spec.name} exited with code {proc.popen.poll()} while starting; end of {proc.log_path}:\n"
                f"{proc.log_tail()}"
            )
        if outcome == "timeout":
            raise MeshError(
                f"{proc.spec.name} (pid {proc.pid}) was not healthy on {proc.spec.addr} within "
                f"{self._start_timeout:.0f}s; end of {proc.log_path}:\n{proc.log_tail()}"
            )
        if outcome == "stopped":
            raise MeshError(f"{proc.spec.name}: the mesh was stopped while it was starting")

    def _await_health(self, proc: _Process, stopping: _StopSignal) -> str:
        """Probe until ``"healthy"``, or ``"exited"``, ``"timeout"`` (``start_timeout``) or ``"stopped"``."""
        deadline = time.monotonic() + self._start_timeout
        while True:
            if stopping.is_set():
                return "stopped"
            if proc.popen.poll() is not None:
                return "exited"
            if self._probe(proc.spec):
                return "healthy"
            if time.monotonic() > deadline:
                return "timeout"
            stopping.wait(0.1)

    # -- supervision -------------------------------------------------------------------------------

    def _watch(self, spec: ProcessSpec) -> None:
        thread = threading.Thread(
            target=self._supervise_safely,
            args=(spec, self._stopping),
            name=f"kassa-mesh-watch-{spec.name}",
            daemon=True,
        )
        self._watchers.append(thread)
        thread.start()

    def _supervise_safely(self, spec: ProcessSpec, stopping: _StopSignal) -> None:
        try:
            self._supervise(spec, stopping)
        except Exception:
            # A bug here must not pass silently: the process would quietly stop being supervised.
            self._log(f"{spec.name}: its supervisor failed and no longer restarts it:\n{traceback.format_exc()}")

    def _supervise(self, spec: ProcessSpec, stopping: _StopSignal) -> None:
        """Restart ``spec``'s process whenever it exits, until the mesh stops or it crash-loops."""
        policy = self.restart_policy
        assert policy is not None
        name = spec.name
        attempt = 0  # restarts since the backoff was last reset
        recent: deque[float] = deque()  # when the restarts within the window happened
        healthy_since: float | None = time.monotonic()
        while True:
            with self._lock:
                proc = self._processes.get(name)
            if proc is None:
                return
            code = _wait_for_exit(proc.popen, stopping)
            if code is None or stopping.is_set():
                return
            now = time.monotonic()
            if healthy_since is not None and now - healthy_since >= policy.reset_after:
                attempt = 0
            while recent and now - recent[0] > policy.window:
                recent.popleft()
            if len(recent) >= policy.max_restarts:
                with self._lock:
                    self._given_up[name] = code
                self._log(
                    f"{name} (pid {proc.pid}) {_describe_exit(code)}: crash loop, restarted {len(recent)} times "
                    f"within {policy.window:g}s; GIVING UP on it (no more restarts; the rest of the mesh keeps "
                    f"running); end of {proc.log_path}:\n{proc.log_tail()}"
                )
                return
            attempt += 1
            delay = policy.delay(attempt)
            number = self._restarts.get(name, 0) + 1
            self._log(f"{name} (pid {proc.pid}) {_describe_exit(code)}; restart {number} in {delay:g}s")
            if stopping.wait(delay):
                return
            failure: MeshError | None = None
            with self._lock:
                if stopping.is_set():
                    return
                try:
                    new = self._spawn(spec, number)
                except MeshError as exc:
                    failure, new = exc, None
                self._restarts[name] = number
            recent.append(time.monotonic())
            healthy_since = None
            if new is None:
                self._log(f"{name}: restart {number} failed: {failure}")
                continue  # the dead process is still the current one: its exit counts again
            outcome = self._await_health(new, stopping)
            if outcome == "healthy":
                healthy_since = time.monotonic()
                self._log(f"{name:<10} healthy again on {spec.addr} (pid {new.pid}, restart {number})")
            elif outcome == "timeout":
                self._log(
                    f"{name} (pid {new.pid}) was not healthy within {self._start_timeout:g}s of restart {number}; "
                    "killing it"
                )
                new.popen.kill()
            # "exited" and "timeout" loop back to the exit handling; "stopped" returns there.

    def _probe(self, spec: ProcessSpec) -> bool:
        return self._grpc_healthy(spec) if spec.health == "grpc" else self._http_healthy(spec)

    def _grpc_healthy(self, spec: ProcessSpec) -> bool:
        """grpc.health.v1 overall status (service "") is SERVING."""
        tls = self._grpc_tls
        channel = (
            grpc.insecure_channel(spec.addr)
            if tls is None
            else grpc.secure_channel(spec.addr, tls.channel_credentials())
        )
        with channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                # types-grpcio-health-checking declares HealthStub without its methods (Check is set in __init__).
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=_PROBE_TIMEOUT)  # type: ignore[attr-defined]
            except grpc.RpcError:
                return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    @staticmethod
    def _http_healthy(spec: ProcessSpec) -> bool:
        # trust_env=False: a loopback probe must never go through an HTTP proxy from the environment.
        try:
            response = httpx.get(f"http://{spec.addr}{spec.http_path}", timeout=_PROBE_TIMEOUT, trust_env=False)
        except httpx.HTTPError:
            return False
        return response.is_success if spec.health == "http-200" else True
