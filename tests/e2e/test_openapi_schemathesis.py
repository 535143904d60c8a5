"""Schemathesis against the live gateway and mesh, driven by the gateway's own /openapi.json.

Every operation gets generated requests, valid and invalid (the coverage, fuzzing and stateful phases):
no response may be a 5xx, and every response must match the document (status code, content type, schema:
the error body with an ErrorReason value included). Bounded: KASSA_SCHEMATHESIS_EXAMPLES per operation (10,
about 1,300 requests), a fixed seed, and a hard timeout. Tokens come from contract/schemathesis_hooks.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.openapi import load_document

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

TESTS = Path(__file__).resolve().parents[1]
EXAMPLES = int(os.environ.get("KASSA_SCHEMATHESIS_EXAMPLES", "10"))
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


async def test_the_gateway_keeps_its_openapi_contract(mesh: Any, tmp_path: Path) -> None:
    gateway = mesh.gateway_url
    argv = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{gateway}/openapi.json",
        "--url",
        gateway,
        "--checks",
        CHECKS,
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "20261",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-shrink",
    ]
    env = {
        **os.environ,
        "KASSA_JWT_SECRET": mesh.env["KASSA_JWT_SECRET"],
        "SCHEMATHESIS_HOOKS": "contract.schemathesis_hooks",
        "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")]),
    }
    run = await asyncio.to_thread(
        subprocess.run, argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-8000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", output)
    assert counts is not None, output[-4000:]
    generated, passed = map(int, counts.groups())
    assert generated == passed and generated > 20 * EXAMPLES, output[-4000:]
    operations = sum(len(item) for item in load_document()["paths"].values())
    assert f"{operations} selected / {operations} total" in output
