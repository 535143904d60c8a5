"""The operator console's files: served at /console with a strict CSP, and written to never render data as HTML."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.console import CONTENT_SECURITY_POLICY, ConsoleConfig
from infra.auth import ROLE_ADMIN, mint_token
from infra.config import ConfigError, Settings

pytestmark = pytest.mark.unit

STATIC = Path(__file__).resolve().parents[3] / "gateway" / "console" / "static"


SETTINGS = Settings.from_env({"KASSA_ENV": "development"})


def _client(console: ConsoleConfig | None = None) -> httpx.AsyncClient:
    app = create_app(
        SETTINGS,
        GatewayConfig(rate_limit_per_minute=0),
        console or ConsoleConfig(),
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


def _directives(policy: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


async def test_the_page_and_its_files_are_served_without_a_token_under_a_strict_csp() -> None:
    async with _client() as client:
        page = await client.get("/console")
        script = await client.get("/console/static/console.js")
        style = await client.get("/console/static/console.css")
        missing = await client.get("/console/static/secrets.txt")
        traversal = await client.get("/console/static/..%2f..%2fapp.py")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script src="/console/static/console.js"' in page.text
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert style.headers["content-type"].startswith("text/css")
    assert missing.status_code == 404
    assert missing.json()["details"][0]["reason"] == "NOT_FOUND"
    # Not a console file: it falls through to the REST routes, which want a token.
    assert traversal.status_code == 401
    assert "create_app" not in traversal.text
    for answer in (page, script, style, missing):
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
    csp = _directives(CONTENT_SECURITY_POLICY)
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["require-trusted-types-for"] == ["'script'"]
    assert not any("unsafe" in v for values in csp.values() for v in values)


async def test_the_page_has_no_inline_script_style_or_handler() -> None:
    html = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert "<style" not in html
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert not re.search(r"\sstyle\s*=", html), "inline style attribute"
    # The token field has no name: a form submitted before the script ran sends nothing.
    assert re.search(r"<textarea id=\"token\"(?![^>]*\bname=)", html)


def test_the_script_never_writes_html_or_evaluates_strings() -> None:
    source = (STATIC / "console.js").read_text()
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("//"))
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        'setTimeout("',
    ):
        assert sink not in code, sink
    # The token is read from and written to sessionStorage only, never localStorage or a URL.
    assert "localStorage" not in code
    assert "sessionStorage.setItem(TOKEN_KEY" in code
    assert not re.search(r"[?&]token=", code)


async def test_the_trace_url_template_reaches_the_page_and_must_be_an_http_url() -> None:
    template = "http://127.0.0.1:16686/search?service=gateway&tags=%7B%22order_id%22%3A%22{order_id}%22%7D"
    config = ConsoleConfig.from_env({"KASSA_CONSOLE_TRACE_URL": template})
    async with _client(config) as client:
        answer = await client.get("/console/config.json")
    assert answer.json() == {"traceUrlTemplate": template}
    assert ConsoleConfig.from_env({}).trace_url_template == ""
    with pytest.raises(ConfigError, match="http"):
        ConsoleConfig.from_env({"KASSA_CONSOLE_TRACE_URL": "javascript:alert(1)//{order_id}"})
    with pytest.raises(ConfigError, match="customer_email"):
        ConsoleConfig.from_env({"KASSA_CONSOLE_TRACE_URL": "http://jaeger/{customer_email}"})


async def test_console_slash_redirects_to_the_page() -> None:
    async with _client() as client:
        answer = await client.get("/console/")
    assert answer.status_code == 308
    assert answer.headers["location"] == "/console"


def _span(trace_id: str, span_id: str, parent: str | None, name: str, start: int, **attributes: str) -> str:
    record = {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_id": parent,
        "service": name.split(" ", maxsplit=1)[0],
        "name": name,
        "kind": "SERVER",
        "start_ns": start,
        "end_ns": start + 2_000_000,
        "status": "OK",
        "attributes": attributes,
    }
    return json.dumps(record) + "\n"


async def test_an_orders_traces_are_read_from_the_trace_files_for_an_admin_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    order_id = "5d2c8a52-8f7e-4d7e-9a55-3e4c1a9f0b11"
    (tmp_path / "gateway-1.jsonl").write_text(
        _span("t1", "a", None, "gateway POST /v1/checkout/confirm", 1_000_000_000)
        + _span("t1", "b", "a", "checkout ConfirmCheckout", 1_001_000_000, **{"kassa.order_id": order_id})
        + _span("t2", "c", None, "gateway GET /v1/carts", 2_000_000_000)
    )
    monkeypatch.setenv("KASSA_TRACE_DIR", str(tmp_path))
    admin = {"Authorization": f"Bearer {mint_token(SETTINGS.jwt_secret, 'ops', role=ROLE_ADMIN)}"}
    customer = {"Authorization": f"Bearer {mint_token(SETTINGS.jwt_secret, 'alice')}"}
    async with _client() as client:
        found = await client.get(f"/console/api/traces/{order_id}", headers=admin)
        nothing = await client.get("/console/api/traces/no-such-id", headers=admin)
        anonymous = await client.get(f"/console/api/traces/{order_id}")
        forged = await client.get(f"/console/api/traces/{order_id}", headers={"Authorization": "Bearer forged"})
        refused = await client.get(f"/console/api/traces/{order_id}", headers=customer)
        invalid = await client.get("/console/api/traces/a%20b", headers=admin)
    assert found.status_code == 200
    [trace] = found.json()["traces"]
    assert trace["trace_id"] == "t1" and trace["span_count"] == 2
    [root] = trace["roots"]
    assert root["name"] == "gateway POST /v1/checkout/confirm"
    assert [child["name"] for child in root["children"]] == ["checkout ConfirmCheckout"]
    assert found.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert nothing.json() == {"traces": []}
    assert (anonymous.status_code, anonymous.json()["details"][0]["reason"]) == (401, "UNAUTHENTICATED")
    assert forged.status_code == 401
    assert (refused.status_code, refused.json()["details"][0]["reason"]) == (403, "PERMISSION_DENIED")
    assert (invalid.status_code, invalid.json()["details"][0]["metadata"]) == (400, {"field": "id"})
