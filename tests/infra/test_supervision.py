"""A supervised mesh restarts what dies, with backoff, and gives up on a crash loop.

Real child processes stand in for the services: Python's ``http.server`` and a grpc.health.v1
server, wrapped so each run appends its pid to a file (``runs``) and, from its second run on, can
crash with the fault-injection exit code or take a while to start. The tests kill them by pid, as a
chaos runner does, and read back what the mesh logged.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from devstack.localstack import free_ports
from devstack.mesh import Mesh, MeshError, ProcessSpec, RestartPolicy, _StopSignal, _wait_for_exit
from infra.faults import CRASH_EXIT_CODE

pytestmark = pytest.mark.integration

# argv: port, runs file, mode ("serve", "crash-after-first", "slow-after-first"), delay seconds.
_STANDIN = """
import http.server, os, sys, time
port, runs, mode, delay = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
with open(runs, "a") as fh:
    fh.write(f"{os.getpid()}\\n")
with open(runs + ".generations", "a") as fh:
    fh.write(os.environ.get("KASSA_FAULTS_GENERATION", "-") + "\\n")
with open(runs) as fh:
    run = len(fh.read().split())
if run > 1 and mode == "crash-after-first":
    print(f"crash-marker: run {run} dies at a fault point", flush=True)
    os._exit(int(os.environ["STANDIN_CRASH_CODE"]))
if run > 1 and mode == "slow-after-first":
    time.sleep(delay)
http.server.ThreadingHTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler).serve_forever()
"""

# Serves grpc.health.v1 SERVING on the address in argv[1].
_GRPC_STANDIN = """
import sys
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
servicer = health.HealthServicer()
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
server.add_insecure_port(sys.argv[1])
server.start()
servicer.set("", health_pb2.HealthCheckResponse.SERVING)
server.wait_for_termination()
"""

_EXIT_LINE = re.compile(r"^(\S+) \(pid (\d+)\) exited with code (-?\d+)(?: \(([^)]*)\))?; restart (\d+) in ([\d.]+)s$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class _Log:
    """Collects the mesh's log lines (written from its watcher threads) and waits for one."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()

    def __call__(self, line: str) -> None:
        with self._changed:
            self.lines.append(line)
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((line for line in self.lines if predicate(line)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such log line within {timeout}s; got: {self.lines}")
                self._changed.wait(left)

    def exits(self, name: str) -> list[tuple[int, str, int, float]]:
        """(exit code, its description, restart number, delay) of each logged exit of ``name``."""
        found = (_EXIT_LINE.match(line) for line in list(self.lines))
        return [(int(m[3]), m[4] or "", int(m[5]), float(m[6])) for m in found if m and m[1] == name]


def _standin(name: str, port: int, state: Path, mode: str = "serve", delay: float = 0.0) -> ProcessSpec:
    runs = state / f"{name}.runs"
    argv = (sys.executable, "-c", _STANDIN, str(port), str(runs), mode, str(delay))
    return ProcessSpec(name=name, argv=argv, addr=f"127.0.0.1:{port}", health="http")


def _runs(state: Path, name: str) -> list[int]:
    path = state / f"{name}.runs"
    return [int(pid) for pid in path.read_text().split()] if path.exists() else []


def _mesh(tmp_path: Path, specs: list[ProcessSpec], log: _Log, policy: RestartPolicy, **kwargs: float) -> Mesh:
    env = {"STANDIN_CRASH_CODE": str(CRASH_EXIT_CODE)}
    return Mesh(env, tmp_path / "logs", specs=specs, log=log, restart_policy=policy, **kwargs)  # type: ignore[arg-type]


def test_a_killed_process_comes_back_with_a_new_pid_and_healthy(tmp_path: Path) -> None:
    grpc_port, http_port = free_ports(2)
    grpc_addr = f"127.0.0.1:{grpc_port}"
    specs = [
        ProcessSpec("warehouse", (sys.executable, "-c", _GRPC_STANDIN, grpc_addr), grpc_addr, "grpc"),
        _standin("gateway", http_port, tmp_path),
    ]
    log = _Log()
    mesh = _mesh(tmp_path, specs, log, RestartPolicy(backoff=0.05))
    mesh.start()
    try:
        first = mesh.pids
        assert mesh.restarts == {"warehouse": 0, "gateway": 0}
        os.kill(first["warehouse"], signal.SIGKILL)
        second = mesh.wait_healthy("warehouse", timeout=20)
        assert second != first["warehouse"]
        assert mesh.pids == {"warehouse": second, "gateway": first["gateway"]}  # the other one untouched
        assert mesh.restarts == {"warehouse": 1, "gateway": 0}
        assert log.exits("warehouse") == [(-9, "SIGKILL", 1, 0.05)]
        log.wait_for(
            lambda line: (
                line.startswith("warehouse") and f"healthy again on {grpc_addr} (pid {second}, restart 1)" in line
            )
        )

        # A clean exit is restarted too, as Restart=always would.
        os.kill(first["gateway"], signal.SIGTERM)
        gateway = mesh.wait_healthy("gateway", timeout=20)
        assert gateway != first["gateway"]
        assert log.exits("gateway") == [(-15, "SIGTERM", 1, 0.05)]
        assert mesh.given_up == {}
        # Each run is told its restart number, so it draws its KASSA_FAULTS anew.
        assert (tmp_path / "gateway.runs.generations").read_text().split() == ["0", "1"]
    finally:
        mesh.stop()
    assert not any(_alive(pid) for pid in (*first.values(), second, gateway))
    assert mesh.pids == {}


def test_backoff_grows_and_a_crash_loop_is_given_up_and_reported_while_the_rest_keeps_running(tmp_path: Path) -> None:
    flaky_port, steady_port = free_ports(2)
    specs = [_standin("steady", steady_port, tmp_path), _standin("flaky", flaky_port, tmp_path, "crash-after-first")]
    log = _Log()
    policy = RestartPolicy(backoff=0.05, max_backoff=0.2, max_restarts=4, window=60)
    mesh = _mesh(tmp_path, specs, log, policy)
    mesh.start()
    try:
        started = mesh.pids
        os.kill(started["flaky"], signal.SIGKILL)
        report = log.wait_for(lambda line: "GIVING UP" in line)

        # The first exit was our SIGKILL; every restart then crashed at its "fault point".
        injected = "a deliberate crash injected by KASSA_FAULTS"
        assert log.exits("flaky") == [
            (-9, "SIGKILL", 1, 0.05),
            (CRASH_EXIT_CODE, injected, 2, 0.1),
            (CRASH_EXIT_CODE, injected, 3, 0.2),
            (CRASH_EXIT_CODE, injected, 4, 0.2),  # capped at max_backoff
        ]
        assert report.startswith(f"flaky (pid {_runs(tmp_path, 'flaky')[-1]}) exited with code 86 ({injected})")
        assert "restarted 4 times within 60s" in report
        assert "crash-marker: run 5 dies at a fault point" in report  # the end of its log
        assert mesh.given_up == {"flaky": CRASH_EXIT_CODE}
        assert mesh.restarts == {"steady": 0, "flaky": 4}
        with pytest.raises(MeshError, match="flaky was given up on after a crash loop"):
            mesh.wait_healthy("flaky", timeout=1)

        # Not restarted any more, and nothing of it left running; the rest of the mesh is unharmed.
        time.sleep(0.5)
        runs = _runs(tmp_path, "flaky")
        assert len(runs) == 5
        assert not any(_alive(pid) for pid in runs)
        assert mesh.wait_healthy("steady", timeout=5) == started["steady"]
        assert mesh.exited() == {"flaky": CRASH_EXIT_CODE}
    finally:
        codes = mesh.stop()
    assert codes == {"flaky": CRASH_EXIT_CODE, "steady": -signal.SIGTERM}


def test_the_backoff_starts_over_once_a_process_stayed_up(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    log = _Log()
    policy = RestartPolicy(backoff=0.05, max_backoff=5, reset_after=1.0)
    mesh = _mesh(tmp_path, [_standin("svc", port, tmp_path)], log, policy)
    mesh.start()
    try:
        pid = mesh.pids["svc"]
        for _ in range(2):  # killed again as soon as it is back: the backoff grows
            os.kill(pid, signal.SIGKILL)
            pid = mesh.wait_healthy("svc", timeout=20)
        time.sleep(1.2)  # up for longer than reset_after
        os.kill(pid, signal.SIGKILL)
        mesh.wait_healthy("svc", timeout=20)
        assert [delay for *_, delay in log.exits("svc")] == [0.05, 0.1, 0.05]
        assert mesh.restarts == {"svc": 3}
    finally:
        mesh.stop()


def test_one_slow_restart_does_not_delay_another(tmp_path: Path) -> None:
    slow_port, quick_port = free_ports(2)
    specs = [
        _standin("slow", slow_port, tmp_path, "slow-after-first", delay=4.0),
        _standin("quick", quick_port, tmp_path),
    ]
    mesh = _mesh(tmp_path, specs, _Log(), RestartPolicy(backoff=0.05))
    mesh.start()
    try:
        pids = mesh.pids
        os.kill(pids["slow"], signal.SIGKILL)
        os.kill(pids["quick"], signal.SIGKILL)
        began = time.monotonic()
        mesh.wait_healthy("quick", timeout=20)
        assert time.monotonic() - began < 3.5
        with pytest.raises(MeshError, match=r"slow \(pid \d+\) was not healthy"):
            mesh.wait_healthy("slow", timeout=0.1)
        mesh.wait_healthy("slow", timeout=20)
        assert mesh.restarts == {"slow": 1, "quick": 1}
    finally:
        mesh.stop()


def test_stop_during_the_backoff_starts_nothing_more(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    log = _Log()
    mesh = _mesh(tmp_path, [_standin("svc", port, tmp_path)], log, RestartPolicy(backoff=5))
    mesh.start()
    try:
        pid = mesh.pids["svc"]
        os.kill(pid, signal.SIGKILL)
        log.wait_for(lambda line: line.endswith("restart 1 in 5s"))
    finally:
        began = time.monotonic()
        codes = mesh.stop()
    assert time.monotonic() - began < 2
    assert codes == {"svc": -signal.SIGKILL}
    time.sleep(0.3)
    assert _runs(tmp_path, "svc") == [pid]  # never started again
    assert mesh.pids == {}


def test_stop_while_a_restarted_process_is_starting_leaves_no_process_behind(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    mesh = _mesh(
        tmp_path, [_standin("svc", port, tmp_path, "slow-after-first", 30)], _Log(), RestartPolicy(backoff=0.05)
    )
    mesh.start()
    try:
        os.kill(mesh.pids["svc"], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while len(_runs(tmp_path, "svc")) < 2:  # the restarted one is up and sleeping before it serves
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        codes = mesh.stop()
    runs = _runs(tmp_path, "svc")
    assert len(runs) == 2
    assert codes == {"svc": -signal.SIGTERM}
    assert not any(_alive(pid) for pid in runs)


def test_a_restart_that_never_becomes_healthy_is_killed_and_counts_towards_the_bound(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    log = _Log()
    spec = _standin("svc", port, tmp_path, "slow-after-first", 30)
    mesh = _mesh(tmp_path, [spec], log, RestartPolicy(backoff=0.05, max_restarts=1), start_timeout=3)
    mesh.start()
    try:
        os.kill(mesh.pids["svc"], signal.SIGKILL)
        log.wait_for(lambda line: "GIVING UP" in line)
        runs = _runs(tmp_path, "svc")
        assert any(
            f"svc (pid {runs[1]}) was not healthy within 3s of restart 1; killing it" == line for line in log.lines
        )
        assert mesh.given_up == {"svc": -signal.SIGKILL}
        assert not any(_alive(pid) for pid in runs)
    finally:
        mesh.stop()


def test_a_restart_policy_checks_its_numbers() -> None:
    policy = RestartPolicy()
    assert [policy.delay(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]
    with pytest.raises(ValueError, match="backoff"):
        RestartPolicy(backoff=2, max_backoff=1)
    with pytest.raises(ValueError, match="window"):
        RestartPolicy(window=0)


def test_a_restart_that_cannot_even_execute_is_retried_then_given_up(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    python = tmp_path / "python"
    python.symlink_to(sys.executable)
    argv = (str(python), "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(tmp_path), str(port))
    spec = ProcessSpec("svc", argv, f"127.0.0.1:{port}", "http")
    log = _Log()
    mesh = _mesh(tmp_path, [spec], log, RestartPolicy(backoff=0.05, max_restarts=2))
    mesh.start()
    try:
        pid = mesh.pids["svc"]
        python.unlink()  # the interpreter is gone, as after an upgrade that went wrong
        os.kill(pid, signal.SIGKILL)
        report = log.wait_for(lambda line: "GIVING UP" in line)
        failures = [line for line in log.lines if line.startswith("svc: restart ") and "could not execute" in line]
        assert len(failures) == 2
        assert report.startswith(f"svc (pid {pid}) exited with code -9 (SIGKILL): crash loop, restarted 2 times")
        assert mesh.restarts == {"svc": 2}
        assert mesh.pids == {"svc": pid}
    finally:
        mesh.stop()


class _CountingPopen(subprocess.Popen[bytes]):
    """A child whose ``poll()`` calls are counted: how often its watcher looked at it."""

    polls = 0

    def poll(self) -> int | None:
        self.polls += 1
        return super().poll()


def _blocked_child() -> _CountingPopen:
    """A child that lives until its stdin is closed."""
    return _CountingPopen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="no pidfd here (Linux 5.3+): the watcher polls every 0.1 s")
def test_a_watcher_sleeps_until_its_process_exits_instead_of_polling_it() -> None:
    """A watcher looks at its process when it exits, not every 0.1 s: an idle ``kassa up`` supervisor with 9
    processes made 90 wake-ups a second; now none until something exits or the mesh stops."""
    child = _blocked_child()
    stopping = _StopSignal()
    result: list[int | None] = []
    watcher = threading.Thread(target=lambda: result.append(_wait_for_exit(child, stopping)))
    watcher.start()
    time.sleep(1.0)  # the child lives a second (10 looks under the old 0.1 s polling)
    assert child.stdin is not None
    child.stdin.close()
    watcher.join(10)
    assert result == [0]
    assert child.polls == 2  # once before it slept, once when the pidfd woke it


def test_a_sleeping_watcher_wakes_for_the_mesh_stopping() -> None:
    child = _blocked_child()
    stopping = _StopSignal()
    result: list[int | None] = []
    watcher = threading.Thread(target=lambda: result.append(_wait_for_exit(child, stopping)))
    watcher.start()
    try:
        time.sleep(0.5)
        stopping.set()
        watcher.join(10)
        assert result == [None]
        assert child.polls == 1
        assert child.poll() is None  # stopping the watcher left the process alone (stop() signals it)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)
