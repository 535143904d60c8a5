"""Fuzzing every public RPC over gRPC and REST against a mesh of its own (``make fuzz``; ``make test``: short).

The mesh is the e2e one (``start_mesh``), on a private stack so the fuzzer's stock, prices and coupons
never reach another test, with the gateway's rate limit off (the fuzzer is one client sending thousands
of requests). Hypothesis settings: ``fuzz.profile``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from e2e.conftest import MeshHandle, StartMesh, start_mesh  # noqa: F401  (start_mesh: the fixture itself)
from fuzz.contract import Fingerprint
from fuzz.report import pytest_sessionfinish, pytest_terminal_summary  # noqa: F401  (the report's hooks)
from fuzz.world import Anchors, Fresh, FuzzWorld, build_anchors, make_fresh

from devstack.check import sqlalchemy_to_libpq

_HERE = Path(__file__).parent
_GROUP = "fuzz"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the fuzz tests on one xdist worker (one fuzz mesh) under ``--dist loadgroup``.

    pytest-xdist 3.8 marks an ``xdist_group`` by appending ``@group`` to ``item._nodeid``, but pytest 9 derives
    ``nodeid`` from ``item._id``, so the suffix is lost and loadgroup degrades to load for every group. This puts
    it back for the fuzz tests only. The e2e group has the same problem; the fix for every group belongs in
    tests/conftest.py.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    from _pytest.nodeid import NodeId

    suffix = f"@{_GROUP}"
    for item in items:
        if item.path.is_relative_to(_HERE) and not item.nodeid.endswith(suffix):
            item._id = NodeId.parse(item.nodeid + suffix)  # type: ignore[attr-defined]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def fuzz_mesh(start_mesh: StartMesh) -> AsyncIterator[MeshHandle]:  # noqa: F811
    async with start_mesh(
        {"KASSA_RATE_LIMIT_PER_MINUTE": "0", "KASSA_GATEWAY_RATE_LIMIT_PER_IP_PER_MINUTE": "0"}
    ) as mesh:
        yield mesh


@pytest.fixture(scope="session")
def anchors(fuzz_mesh: MeshHandle) -> Anchors:
    return build_anchors(fuzz_mesh.settings, fuzz_mesh.gateway_url)


@pytest.fixture(scope="session")
def db(fuzz_mesh: MeshHandle) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(sqlalchemy_to_libpq(fuzz_mesh.env["KASSA_DATABASE_URL"]), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def shared_fresh(anchors: Anchors) -> Fresh:
    return make_fresh(anchors)


@pytest.fixture
def fresh(request: pytest.FixtureRequest, anchors: Anchors, shared_fresh: Fresh) -> Fresh:
    """A new ACTIVE cart and OPEN session for the test of an RPC that takes a cart or session id: what the
    previous test's requests did to theirs (a checkout started, a session confirmed) must not hide this one's
    inputs behind CHECKOUT_IN_PROGRESS. Other RPCs share one pair (their fingerprint still hashes it)."""
    callspec = getattr(request.node, "callspec", None)
    target = callspec.params.get("rpc") or getattr(callspec.params.get("route"), "rpc", None) if callspec else None
    fields = target.descriptor.input_type.fields_by_name if target is not None else {}
    return make_fresh(anchors) if "cart_id" in fields or "session_id" in fields else shared_fresh


@pytest.fixture
def fingerprint(db: psycopg.Connection[Any], anchors: Anchors, fresh: Fresh) -> Fingerprint:
    return Fingerprint(db, cart_id=fresh.cart_id, session_id=fresh.session_id, skus=anchors.skus, coupon=anchors.coupon)


@pytest.fixture
def world(anchors: Anchors, fresh: Fresh, fingerprint: Fingerprint) -> FuzzWorld:
    return FuzzWorld(anchors, fresh, fingerprint)
