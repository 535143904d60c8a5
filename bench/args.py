"""Command-line helpers shared by the bench entry points."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["positive"]


def positive(kind: type[int] | type[float], upper: float) -> Callable[[str], int | float]:
    """An argparse ``type=`` accepting ``0 < value <= upper``."""

    def parse(text: str) -> int | float:
        value = kind(text)
        if not 0 < value <= upper:
            raise argparse.ArgumentTypeError(f"must be > 0 and <= {upper:g}")
        return value

    return parse
