"""Child-process chores shared by the local stack and the mesh runner.

Both start servers as direct children, refuse ports that are already taken, quote the end of a
child's log when it fails, and stop their children by pid: every child signalled first, all
awaited against one shared deadline, SIGKILL for any that ignore the signal.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path

__all__ = ["port_is_free", "read_log_tail", "stop_children"]


def port_is_free(host: str, port: int) -> bool:
    """True if nothing listens on host:port.

    SO_REUSEADDR mirrors what the servers themselves do, so a port merely in TIME_WAIT after a
    previous run does not count as taken, while a live listener does.
    """
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def read_log_tail(path: Path, offset: int = 0, lines: int = 40) -> str:
    """The last ``lines`` lines written to ``path`` after ``offset`` (this run's part of an appended log)."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace").splitlines()
    except OSError as exc:
        return f"(could not read {path}: {exc})"
    return "\n".join(text[-lines:]) or "(log is empty)"


def stop_children(
    children: Sequence[tuple[str, subprocess.Popen[bytes], int]],
    timeout: float,
    log: Callable[[str], object],
) -> dict[str, int]:
    """Signal each (name, process, signal) still running, wait for all until one deadline, SIGKILL the rest.

    Returns each child's exit code. Stopping takes as long as the slowest child, not the sum.
    """
    for _, popen, sig in children:
        if popen.poll() is None:
            popen.send_signal(sig)
    deadline = time.monotonic() + timeout
    codes: dict[str, int] = {}
    for name, popen, _ in children:
        try:
            codes[name] = popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log(f"{name} (pid {popen.pid}) ignored its stop signal; sending SIGKILL")
            popen.kill()
            codes[name] = popen.wait()
    return codes
