"""Command-line helpers shared by the bench entry points."""

from __future__ import annotations

import argparse
import ipaddress
import signal
import socket
from collections.abc import Callable
from types import FrameType

__all__ = ["interrupt_on_sigterm", "is_loopback_host", "positive"]


def positive(kind: type[int] | type[float], upper: float) -> Callable[[str], int | float]:
    """An argparse ``type=`` accepting ``0 < value <= upper``."""

    def parse(text: str) -> int | float:
        value = kind(text)
        if not 0 < value <= upper:
            raise argparse.ArgumentTypeError(f"must be > 0 and <= {upper:g}")
        return value

    return parse


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def interrupt_on_sigterm() -> None:
    """A plain ``kill`` unwinds like Ctrl-C, through every cleanup (the private stack is stopped too)."""
    signal.signal(signal.SIGTERM, _interrupt)


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name, or an address, bracketed or not) is this machine: a loopback address, or a name every
    address of which is one. The bench and its probes load nothing else."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)
