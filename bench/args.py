"""Command-line helpers shared by the bench entry points."""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable
from types import FrameType

__all__ = ["interrupt_on_sigterm", "positive"]


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
