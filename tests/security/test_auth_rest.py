"""The REST gateway as an attacker sees it: every admin route with every kind of token but an admin's.

Routes come from the gateway's own route table (the ``google.api.http`` annotations), so a new admin route
is covered the day it is added. Against the real mesh:

* a customer's, a guest's or a service's token on an admin route: 403 PERMISSION_DENIED;
* a service token on any route at all: 403 (service tokens are for calls between Kassa's processes, and a
  leaked one must not work from the internet);
* no token, or an expired, forged, ``alg: none`` or role-forging one: 401 UNAUTHENTICATED.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio

from gateway.routing import Route, build_route_table
from infra.auth import ROLE_ADMIN, mint_service_token, mint_token

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

ROUTES = sorted(build_route_table().routes, key=lambda r: (r.template.template, r.http_method))
ADMIN_ROUTES = [r for r in ROUTES if r.template.template.startswith("/v1/admin/")]
_VARIABLE = re.compile(r"\{([^}=]+)(=[^}]*)?\}")


def _ids(route: Route) -> str:
    return f"{route.http_method} {route.template.template}"


def _path(route: Route) -> str:
    return _VARIABLE.sub(lambda m: f"x-{m.group(1)}", route.template.template)


def test_the_admin_routes_are_the_ones_the_design_names() -> None:
    paths = {r.template.template for r in ADMIN_ROUTES}
    assert {"/v1/admin/stock", "/v1/admin/products", "/v1/admin/promotions", "/v1/admin/warehouses"} <= paths
    assert any(p.endswith(":refund") for p in paths)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def http(mesh: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=30) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tokens(mesh: Any, http: httpx.AsyncClient) -> dict[str, str]:
    guest = await http.post("/v1/auth/guest")
    assert guest.status_code == 200, guest.text
    return {
        "customer": mint_token(mesh.env["KASSA_JWT_SECRET"], f"cust-{uuid.uuid4().hex[:8]}"),
        "guest": guest.json()["token"],
        "service": mint_service_token(mesh.env["KASSA_SERVICE_SECRET"], "checkout"),
    }


async def _send(http: httpx.AsyncClient, route: Route, token: str | None) -> httpx.Response:
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = b"{}" if route.body else None
    return await http.request(route.http_method, _path(route), content=body, headers=headers)


def _reason(response: httpx.Response) -> str:
    for detail in response.json().get("details", []):
        if detail.get("@type", "").endswith("google.rpc.ErrorInfo"):
            return str(detail.get("reason"))
    return ""


@pytest.mark.parametrize("who", ["customer", "guest", "service"])
@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=_ids)
async def test_admin_routes_refuse_everyone_but_admins(
    http: httpx.AsyncClient, tokens: dict[str, str], route: Route, who: str
) -> None:
    r = await _send(http, route, tokens[who])
    assert r.status_code == 403, f"{_ids(route)} as a {who}: {r.status_code} {r.text}"
    assert r.json()["code"] == 7
    assert _reason(r) == "PERMISSION_DENIED"


@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=_ids)
async def test_admin_routes_let_admins_through(http: httpx.AsyncClient, mesh: Any, route: Route) -> None:
    """The same requests with an admin token get past authorization (to validation or the lookup, say)."""
    r = await _send(http, route, mesh.admin_token)
    assert r.status_code not in (401, 403), f"{_ids(route)} as an admin: {r.status_code} {r.text}"


@pytest.mark.parametrize("route", ROUTES, ids=_ids)
async def test_a_service_token_opens_no_route_at_the_gateway(
    http: httpx.AsyncClient, tokens: dict[str, str], route: Route
) -> None:
    r = await _send(http, route, tokens["service"])
    assert r.status_code == 403, f"{_ids(route)} with a service token: {r.status_code} {r.text}"


def _forged(secret: str) -> dict[str, str | None]:
    now = int(time.time())
    header = jwt.utils.base64url_encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).decode()
    claims = jwt.utils.base64url_encode(json.dumps({"sub": "ops", "role": "admin", "exp": now + 600}).encode()).decode()
    return {
        "none": None,
        "expired": mint_token(secret, "ops", role=ROLE_ADMIN, ttl_seconds=-10),
        "wrong-key": mint_token("y" * 48, "ops", role=ROLE_ADMIN),
        "alg-none": f"{header}.{claims}.",
        "role-service": jwt.encode({"sub": "cust-1", "role": "service", "exp": now + 600}, secret, algorithm="HS256"),
    }


@pytest.mark.parametrize("route", ROUTES, ids=_ids)
async def test_every_route_refuses_a_missing_or_forged_token(http: httpx.AsyncClient, mesh: Any, route: Route) -> None:
    for name, token in _forged(mesh.env["KASSA_JWT_SECRET"]).items():
        r = await _send(http, route, token)
        assert r.status_code == 401, f"{_ids(route)} with a {name} token: {r.status_code} {r.text}"
        assert r.json()["code"] == 16
