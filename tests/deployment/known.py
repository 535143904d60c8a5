"""What the deployment files may name: the KASSA_* variables the processes read, and the commands they run.

The variables are found in the code itself (every ``KASSA_…`` string in infra/, gateway/ and the services, plus
the names built from a process or service name: ``KASSA_<NAME>_ADDR``, ``KASSA_<SERVICE>_DATABASE_URL``,
``KASSA_<SERVICE>_METRICS_ADDR``), so a
deployment file that sets a variable nothing reads (a typo, a removed setting) fails its test.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from functools import cache
from pathlib import Path

from helpers import KASSA_PACKAGES

from devstack.cli import build_parser
from infra.config import DATABASE_SERVICES, DEFAULT_ADDRS

ROOT = Path(__file__).resolve().parents[2]
# Every package of the image (tests/deployment checks the Dockerfile copies them).
PACKAGES = KASSA_PACKAGES
_NAME = re.compile(r"""["'](KASSA_[A-Z0-9_]*[A-Z0-9])["']""")


@cache
def kassa_variables() -> frozenset[str]:
    found = {f"KASSA_{name.upper()}_ADDR" for name in DEFAULT_ADDRS}
    found |= {f"KASSA_{name.upper()}_DATABASE_URL" for name in DATABASE_SERVICES}
    found |= {f"KASSA_{name.upper()}_METRICS_ADDR" for name in DATABASE_SERVICES}  # the gRPC services' /metrics
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found |= set(_NAME.findall(path.read_text()))
    return frozenset(found)


def command_problem(command: list[str]) -> str | None:
    """Why the image can't run ``command`` (``python -m <module>`` or ``kassa <subcommand>``), or None."""
    if command[:2] == ["python", "-m"] and len(command) >= 3:
        spec = importlib.util.find_spec(command[2])
        if spec is None:
            return f"no module {command[2]!r}"
        if spec.submodule_search_locations is not None and importlib.util.find_spec(f"{command[2]}.__main__") is None:
            return f"{command[2]!r} is a package without __main__"
        return None
    if command[:1] == ["kassa"] and len(command) >= 2:
        try:
            build_parser().parse_args(command[1:])
        except SystemExit:
            return f"`{shlex.join(command)}` is no kassa command"
        return None
    return f"unknown command {command!r}"
