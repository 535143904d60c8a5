"""Run the whole Kassa mesh as child processes: six services, the sandbox provider and the gateway.

Why a process manager of our own: ``kassa up`` must work on a fresh machine with no Docker, and the
end-to-end tests need the very same processes the operator runs, on free ports. Every process is a
direct child kept as a ``Popen`` in its own session (so a Ctrl-C in the terminal reaches only the
manager, which then stops the services in reverse dependency order); ``stop()`` signals exactly those
pids and never looks processes up by name, so a mesh never touches processes it did not start.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from infra.config import DEFAULT_ADDRS, DEV_JWT_SECRET, DEV_WEBHOOK_SECRET
from infra.localstack import StackEndpoints
from infra.procs import port_is_free, read_log_tail, stop_children

__all__ = ["MESH_ORDER", "Mesh", "MeshError", "ProcessSpec", "default_specs", "mesh_env"]

# Dependency order: each process only calls processes started before it (payment calls the sandbox,
# checkout calls everything below it, the gateway calls checkout, order, payment and the admin APIs).
MESH_ORDER: tuple[str, ...] = (
    "warehouse",
    "pricing",
    "promotion",
    "sandbox",
    "payment",
    "order",
    "checkout",
    "gateway",
)

HealthKind = Literal["grpc", "http", "http-200"]

_MODULES: dict[str, str] = {name: name for name in MESH_ORDER} | {"sandbox": "payment.sandbox"}
# The sandbox provider has no health route (any HTTP answer means up); the gateway has /healthz.
_HEALTH: dict[str, HealthKind] = {"sandbox": "http", "gateway": "http-200"}
_HTTP_PATHS: dict[str, str] = {"gateway": "/healthz"}
_LOG_TAIL_LINES = 40
_PROBE_TIMEOUT = 1.0


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

    @property
    def port(self) -> int:
        return int(self.addr.rsplit(":", 1)[1])


def mesh_env(
    endpoints: StackEndpoints,
    ports: Mapping[str, int] | None = None,
    *,
    jwt_secret: str = DEV_JWT_SECRET,
    webhook_secret: str = DEV_WEBHOOK_SECRET,
    host: str = "127.0.0.1",
    data_dir: Path | None = None,
) -> dict[str, str]:
    """The ``KASSA_*`` environment every process of the mesh reads ``infra.config.Settings`` from.

    ``ports`` maps process names to ports; a name it leaves out keeps its default port from
    ``DEFAULT_ADDRS``. All processes share one environment so they agree on where everything is.
    """
    unknown = set(ports or ()) - set(DEFAULT_ADDRS)
    if unknown:
        raise ValueError(f"unknown process names in ports: {sorted(unknown)}")
    addrs = {
        name: f"{host}:{(ports or {}).get(name, int(default.rsplit(':', 1)[1]))}"
        for name, default in DEFAULT_ADDRS.items()
    }
    env = {
        "KASSA_DATABASE_URL": endpoints.database_url,
        "KASSA_REDIS_URL": endpoints.redis_url,
        "KASSA_NATS_URL": endpoints.nats_url,
        "KASSA_JWT_SECRET": jwt_secret,
        "KASSA_WEBHOOK_SECRET": webhook_secret,
        "KASSA_SANDBOX_URL": f"http://{addrs['sandbox']}",
        "KASSA_SANDBOX_WEBHOOK_URL": f"http://{addrs['gateway']}/v1/payments/webhooks/sandbox",
        "KASSA_PUBLIC_URL": f"http://{addrs['gateway']}",
    }
    env.update({f"KASSA_{name.upper()}_ADDR": addr for name, addr in addrs.items()})
    if data_dir is not None:
        # The sandbox provider's ledger lives beside the stack it belongs to, so a fresh stack gets a fresh one.
        env["KASSA_SANDBOX_DB"] = str(data_dir / "sandbox" / "ledger.sqlite3")
    return env


def default_specs(env: Mapping[str, str]) -> list[ProcessSpec]:
    """The eight Kassa processes in dependency order, each run as ``python -m <module>``."""
    specs = []
    for name in MESH_ORDER:
        addr = env.get(f"KASSA_{name.upper()}_ADDR") or DEFAULT_ADDRS[name]
        specs.append(
            ProcessSpec(
                name=name,
                argv=(sys.executable, "-m", _MODULES[name]),
                addr=addr,
                health=_HEALTH.get(name, "grpc"),
                http_path=_HTTP_PATHS.get(name, "/"),
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


class Mesh:
    """Start processes one after the other, each only once the previous one is healthy.

    ``env`` (the ``KASSA_*`` variables, usually from :func:`mesh_env`) is laid over the parent's
    environment; ``log_dir`` receives one ``<name>.log`` per process, appended to across runs.
    ``specs`` defaults to the eight Kassa processes; tests pass stand-ins.
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
        self._processes: list[_Process] = []

    # -- public API --------------------------------------------------------------------------------

    @property
    def pids(self) -> dict[str, int]:
        """Pids of the processes this mesh started and has not stopped yet, in start order."""
        return {proc.spec.name: proc.pid for proc in self._processes}

    def addr(self, name: str) -> str:
        for spec in self.specs:
            if spec.name == name:
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
        # Safety net for callers that forget stop(): a normal interpreter exit still stops children.
        atexit.register(self.stop)
        try:
            self._check_ports_free()
            for spec in self.specs:
                proc = self._spawn(spec)
                self._wait_healthy(proc)
                self._log(f"{spec.name:<10} healthy on {spec.addr} (pid {proc.pid})")
        except BaseException:
            self.stop()
            raise

    def exited(self) -> dict[str, int]:
        """Processes that have exited on their own since start, with their exit codes."""
        return {proc.spec.name: code for proc in self._processes if (code := proc.popen.poll()) is not None}

    def log_tail(self, name: str) -> str:
        for proc in self._processes:
            if proc.spec.name == name:
                return proc.log_tail()
        raise KeyError(name)

    def stop(self) -> dict[str, int]:
        """Stop every process this mesh started, in reverse start order; safe to call repeatedly.

        Each process gets SIGTERM by its own pid (the services drain in-flight calls on it), all
        are then awaited against one shared deadline, and anything still alive after
        ``stop_timeout`` is SIGKILLed. Returns each process's exit code (empty when nothing ran).
        """
        atexit.unregister(self.stop)
        processes, self._processes = self._processes, []
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
            host = spec.addr.rsplit(":", 1)[0]
            if not port_is_free(host, spec.port):
                raise MeshError(f"{spec.name}: {spec.addr} is already in use (another mesh still running?)")

    def _spawn(self, spec: ProcessSpec) -> _Process:
        log_path = self.log_dir / f"{spec.name}.log"
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
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
        self._processes.append(proc)
        return proc

    def _wait_healthy(self, proc: _Process) -> None:
        """Probe until healthy; fail fast if the process exits, or after ``start_timeout``."""
        deadline = time.monotonic() + self._start_timeout
        probe = self._grpc_healthy if proc.spec.health == "grpc" else self._http_healthy
        while True:
            code = proc.popen.poll()
            if code is not None:
                raise MeshError(
                    f"{proc.spec.name} exited with code {code} while starting; end of {proc.log_path}:\n"
                    f"{proc.log_tail()}"
                )
            if probe(proc.spec):
                return
            if time.monotonic() > deadline:
                raise MeshError(
                    f"{proc.spec.name} (pid {proc.pid}) was not healthy on {proc.spec.addr} within "
                    f"{self._start_timeout:.0f}s; end of {proc.log_path}:\n{proc.log_tail()}"
                )
            time.sleep(0.1)

    @staticmethod
    def _grpc_healthy(spec: ProcessSpec) -> bool:
        """grpc.health.v1 overall status (service "") is SERVING."""
        with grpc.insecure_channel(spec.addr) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=_PROBE_TIMEOUT)
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
