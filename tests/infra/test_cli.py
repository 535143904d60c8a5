"""The `kassa` command: tokens the gateway accepts, configuration mistakes refused up front, the seed
against stand-in admin APIs, and the scripted demo against a stand-in gateway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import pytest

from devstack import cli
from devstack.cli import external_endpoints, main, redact
from devstack.demo import DEMO_ITEMS, DemoError, run_demo
from devstack.localstack import StackEndpoints, free_port
from infra.auth import JwtVerifier, Unauthenticated
from infra.config import DEV_JWT_SECRET
from kassa.pricing.v1 import pricing_service_pb2, pricing_service_pb2_grpc
from kassa.promotion.v1 import promotion_pb2, promotion_service_pb2, promotion_service_pb2_grpc
from kassa.warehouse.v1 import inventory_service_pb2, inventory_service_pb2_grpc

pytestmark = pytest.mark.unit

_INFRA = ("KASSA_DATABASE_URL", "KASSA_REDIS_URL", "KASSA_NATS_URL")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the KASSA_* variables it sets itself."""
    for name in (*_INFRA, "KASSA_JWT_SECRET", "KASSA_JWT_ISSUER", "KASSA_JWT_AUDIENCE"):
        monkeypatch.delenv(name, raising=False)


def _token(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["token", *argv]) == 0
    out = capsys.readouterr().out.strip()
    assert out.count(".") == 2, out
    return out


def test_token_is_a_customer_token_signed_with_the_dev_secret(capsys: pytest.CaptureFixture[str]) -> None:
    identity = JwtVerifier(DEV_JWT_SECRET).verify(_token(capsys, "alice"))
    assert identity.subject == "alice"
    assert identity.role == "customer"
    assert not identity.is_admin


def test_admin_flag_adds_the_admin_role(capsys: pytest.CaptureFixture[str]) -> None:
    identity = JwtVerifier(DEV_JWT_SECRET).verify(_token(capsys, "--admin", "ops-bob"))
    assert identity.subject == "ops-bob"
    assert identity.role == "admin"
    assert identity.is_admin


def test_token_uses_kassa_jwt_secret_and_ttl(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KASSA_JWT_SECRET", "another-secret-at-least-32-bytes-long")
    token = _token(capsys, "--ttl", "120", "carol")
    assert JwtVerifier("another-secret-at-least-32-bytes-long").verify(token).subject == "carol"
    with pytest.raises(Unauthenticated, match="invalid token"):
        JwtVerifier(DEV_JWT_SECRET).verify(token)
    claims = jwt.decode(token, "another-secret-at-least-32-bytes-long", algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 120
    assert claims["exp"] <= time.time() + 121


def test_token_refuses_a_non_positive_ttl(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--ttl", "0", "dave"]) == 2
    assert "--ttl" in capsys.readouterr().err


@pytest.mark.parametrize("present", [("KASSA_DATABASE_URL",), ("KASSA_REDIS_URL", "KASSA_NATS_URL")])
def test_up_refuses_mixed_infrastructure_config(
    present: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    for name in present:
        monkeypatch.setenv(name, "scheme://127.0.0.1:1/x")
    assert main(["up", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "mixed configuration" in err
    for name in _INFRA:
        assert name in err
    # Refused before anything was started or created.
    assert not (tmp_path / "stack").exists()
    assert not (tmp_path / "logs").exists()


def test_external_endpoints_all_or_nothing() -> None:
    assert external_endpoints({}) is None
    endpoints = external_endpoints(
        {
            "KASSA_DATABASE_URL": "postgresql+psycopg://u@db/k",
            "KASSA_REDIS_URL": "redis://r",
            "KASSA_NATS_URL": "nats://n",
        }
    )
    assert endpoints is not None
    assert endpoints.database_url == "postgresql+psycopg://u@db/k"
    assert endpoints.nats_url == "nats://n"


def test_migrate_needs_a_database_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate"]) == 2
    assert "KASSA_DATABASE_URL" in capsys.readouterr().err


def test_redact_hides_passwords_only() -> None:
    assert redact("postgresql+psycopg://kassa:s3cret@db.internal:5432/kassa") == (
        "postgresql+psycopg://kassa:***@db.internal:5432/kassa"
    )
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_a_subcommand_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# kassa stock check: runs the warehouse's reconciliation as a child process (infra imports no service)


class _FakeRun:
    """Stands in for subprocess.run: records the child's argv and environment, exits with ``code``."""

    def __init__(self, code: int = 0, error: OSError | None = None) -> None:
        self.code = code
        self.error = error
        self.calls: list[tuple[list[str], dict[str, str]]] = []

    def __call__(self, argv: list[str], *, env: dict[str, str], check: bool) -> subprocess.CompletedProcess[bytes]:
        assert check is False
        self.calls.append((argv, env))
        if self.error is not None:
            raise self.error
        return subprocess.CompletedProcess(argv, self.code)


def test_stock_check_needs_a_database_url(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeRun()
    monkeypatch.setattr(cli.subprocess, "run", fake)
    assert main(["stock", "check"]) == cli.STOCK_CHECK_FAILED
    assert "KASSA_DATABASE_URL" in capsys.readouterr().err
    assert fake.calls == []


@pytest.mark.parametrize("code", [0, 1, 2])
def test_stock_check_runs_warehouse_reconcile_and_passes_its_exit_code_through(
    code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _FakeRun(code)
    monkeypatch.setattr(cli.subprocess, "run", fake)
    url = "postgresql+psycopg://kassa:s3cret@db:5432/kassa"

    assert main(["stock", "check", "--repair", "--sku", "A", "--sku", "B", "--database-url", url]) == code

    [(argv, env)] = fake.calls
    assert argv == [sys.executable, "-m", "warehouse.reconcile", "--repair", "--sku", "A", "--sku", "B"]
    assert env["KASSA_DATABASE_URL"] == url  # in the environment, never on the command line
    assert not any("s3cret" in arg for arg in argv)


def test_stock_check_uses_kassa_database_url_and_checks_only_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeRun()
    monkeypatch.setattr(cli.subprocess, "run", fake)
    monkeypatch.setenv("KASSA_DATABASE_URL", "postgresql+psycopg://u@h/k")

    assert main(["stock", "check"]) == 0
    [(argv, env)] = fake.calls
    assert argv == [sys.executable, "-m", "warehouse.reconcile"]
    assert env["KASSA_DATABASE_URL"] == "postgresql+psycopg://u@h/k"


@pytest.mark.parametrize("fake", [_FakeRun(-signal.SIGKILL), _FakeRun(error=OSError("no such interpreter"))])
def test_stock_check_that_could_not_finish_exits_3(fake: _FakeRun, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.subprocess, "run", fake)
    assert main(["stock", "check", "--database-url", "postgresql+psycopg://u@h/k"]) == cli.STOCK_CHECK_FAILED
    assert len(fake.calls) == 1


# --------------------------------------------------------------------------------------------------
# kassa seed, against stand-in admin APIs that record what they were sent


class _AdminApis(
    inventory_service_pb2_grpc.InventoryServiceServicer,
    pricing_service_pb2_grpc.PricingServiceServicer,
    promotion_service_pb2_grpc.PromotionServiceServicer,
):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, str]] = []
        self.promotions: dict[str, promotion_pb2.Promotion] = {}

    def _record(self, method: str, request: Any, context: grpc.ServicerContext) -> None:
        auth = dict(context.invocation_metadata()).get("authorization", "")
        self.calls.append((method, request, auth))

    def requests(self, method: str) -> list[Any]:
        return [request for name, request, _ in self.calls if name == method]

    def UpsertWarehouses(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._record("UpsertWarehouses", request, context)
        return inventory_service_pb2.UpsertWarehousesResponse(warehouses=request.warehouses)

    def SetStock(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._record("SetStock", request, context)
        return inventory_service_pb2.SetStockResponse()

    def UpsertProducts(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._record("UpsertProducts", request, context)
        return pricing_service_pb2.UpsertProductsResponse(products=request.products)

    def CreatePromotion(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._record("CreatePromotion", request, context)
        if request.promotion.code in self.promotions:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"promotion {request.promotion.code} exists")
        self.promotions[request.promotion.code] = request.promotion
        return promotion_service_pb2.CreatePromotionResponse(promotion=request.promotion)


@pytest.fixture
def admin_apis() -> Iterator[tuple[_AdminApis, str]]:
    apis = _AdminApis()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    inventory_service_pb2_grpc.add_InventoryServiceServicer_to_server(apis, server)
    pricing_service_pb2_grpc.add_PricingServiceServicer_to_server(apis, server)
    promotion_service_pb2_grpc.add_PromotionServiceServicer_to_server(apis, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield apis, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


@pytest.mark.integration
def test_seed_creates_the_demo_catalog_as_admin_and_can_be_rerun(
    admin_apis: tuple[_AdminApis, str], capsys: pytest.CaptureFixture[str]
) -> None:
    apis, addr = admin_apis
    argv = ["seed", "--warehouse-addr", addr, "--pricing-addr", addr, "--promotion-addr", addr]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "WELCOME10 (created)" in first
    assert "FREESHIP (created)" in first

    verifier = JwtVerifier(DEV_JWT_SECRET)
    for _, _, auth in apis.calls:
        scheme, _, token = auth.partition(" ")
        assert scheme == "Bearer"
        assert verifier.verify(token).is_admin

    (warehouses,) = apis.requests("UpsertWarehouses")
    countries = {w.warehouse_id: w.address.country_code for w in warehouses.warehouses}
    assert countries == {"wh-us-east": "US", "wh-eu-central": "DE", "wh-ap-south": "SG"}
    assert all(w.address.line1 and w.address.city and w.address.postal_code for w in warehouses.warehouses)

    (products,) = apis.requests("UpsertProducts")
    skus = [p.sku for p in products.products]
    assert len(skus) >= 12
    assert len(set(skus)) == len(skus)
    for product in products.products:
        assert product.name and product.category and product.brand and product.tax_class
        prices = {m.currency_code: m.amount_minor for m in product.prices}
        assert set(prices) == {"USD", "EUR"}
        assert all(amount > 0 for amount in prices.values())

    (stock,) = apis.requests("SetStock")
    where: dict[str, set[str]] = {}
    for item in stock.items:
        assert item.on_hand >= 100
        assert item.warehouse_id in countries
        where.setdefault(item.sku, set()).add(item.warehouse_id)
    assert set(where) == set(skus)
    assert any(len(w) == 1 for w in where.values())
    assert all(sku in where and "wh-us-east" in where[sku] for sku, _ in DEMO_ITEMS)

    welcome = apis.promotions["WELCOME10"]
    assert welcome.type == promotion_pb2.PROMOTION_TYPE_PERCENTAGE
    assert welcome.percent_off == 10
    assert welcome.combinable
    assert welcome.usage_limit_per_customer == 0
    assert apis.promotions["FREESHIP"].type == promotion_pb2.PROMOTION_TYPE_FREE_SHIPPING

    # Re-seeding: upserts again, and a coupon that exists already is fine.
    assert main(argv) == 0
    second = capsys.readouterr().out
    assert "WELCOME10 (already there)" in second
    assert len(apis.requests("UpsertProducts")) == 2
    assert len(apis.promotions) == 2


# --------------------------------------------------------------------------------------------------
# kassa demo, against a stand-in gateway


def _money(amount: int) -> dict[str, str]:
    return {"currencyCode": "USD", "amountMinor": str(amount)}


class _Gateway:
    """Answers the demo's routes in canonical proto JSON; ``fail`` makes one route return an error."""

    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = f"{request.method} {request.url.path}"
        if self.fail == route:
            status = {
                "code": 9,
                "message": "not enough stock",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "OUT_OF_STOCK"}],
            }
            return httpx.Response(400, json=status)
        body = json.loads(request.content) if request.content else {}
        totals = {"subtotal": _money(17596), "discountTotal": _money(1760), "grandTotal": _money(17235)}
        routes: dict[str, Any] = {
            "POST /v1/auth/guest": {"token": "guest-jwt", "customerId": "guest-1"},
            "POST /v1/carts": {"cart": {"cartId": "cart-1", "currencyCode": body.get("currencyCode")}},
            "POST /v1/carts/cart-1/items": {"cart": {"cartId": "cart-1", "subtotal": _money(17596)}},
            "POST /v1/checkout/start": {"session": {"sessionId": "cs-1"}, "priceChanges": []},
            "PUT /v1/checkout/state": {"session": {"sessionId": "cs-1"}},
            "GET /v1/checkout/sessions/cs-1/preview": {"preview": totals},
            "POST /v1/checkout/confirm": {
                "orderId": "ord-1",
                "orderStatus": "ORDER_STATUS_CONFIRMED",
                "paymentStatus": "PAYMENT_STATUS_CAPTURED",
                "grandTotal": _money(17235),
            },
            "GET /v1/orders/ord-1": {
                "order": {
                    "orderId": "ord-1",
                    "status": "ORDER_STATUS_CONFIRMED",
                    "lines": [{"sku": "KB-001", "name": "Keyboard", "quantity": "1", "unitPrice": _money(8999)}],
                    "totals": totals,
                }
            },
        }
        return httpx.Response(200, json=routes[route])


async def test_demo_places_one_order_like_a_web_client() -> None:
    gateway = _Gateway()
    lines: list[str] = []
    order = await run_demo("http://gateway.test", log=lines.append, transport=httpx.MockTransport(gateway))
    assert order["orderId"] == "ord-1"
    routes = [f"{r.method} {r.url.path}" for r in gateway.requests]
    assert routes == [
        "POST /v1/auth/guest",
        "POST /v1/carts",
        *["POST /v1/carts/cart-1/items"] * len(DEMO_ITEMS),
        "POST /v1/checkout/start",
        "PUT /v1/checkout/state",
        "GET /v1/checkout/sessions/cs-1/preview",
        "POST /v1/checkout/confirm",
        "GET /v1/orders/ord-1",
    ]
    assert "authorization" not in gateway.requests[0].headers
    assert all(r.headers["authorization"] == "Bearer guest-jwt" for r in gateway.requests[1:])
    state = json.loads(gateway.requests[-4].content)
    assert state["paymentMethod"] == "tok_visa"
    assert state["promotionCodes"] == ["WELCOME10"]
    assert state["shippingAddress"]["countryCode"] == "US"
    confirm = gateway.requests[-2]
    assert confirm.headers["idempotency-key"]
    assert json.loads(confirm.content) == {"sessionId": "cs-1", "expectedGrandTotal": _money(17235)}
    assert any("172.35 USD" in line for line in lines)
    assert any("KB-001" in line and "89.99 USD" in line for line in lines)


async def test_demo_stops_at_the_first_refused_step_with_the_error_body() -> None:
    gateway = _Gateway(fail="POST /v1/checkout/start")
    with pytest.raises(DemoError) as failure:
        await run_demo("http://gateway.test", log=lambda _: None, transport=httpx.MockTransport(gateway))
    assert failure.value.step == "start checkout"
    assert failure.value.status == 400
    assert failure.value.body["details"][0]["reason"] == "OUT_OF_STOCK"
    assert gateway.requests[-1].url.path == "/v1/checkout/start"


def test_demo_command_exits_non_zero_when_the_gateway_is_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--gateway-url", f"http://127.0.0.1:{free_port()}"]) == 1
    err = capsys.readouterr().err
    assert "guest token failed" in err
    assert "ConnectError" in err


def test_migrate_reports_an_unreachable_database_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql+psycopg://kassa:hunter2@127.0.0.1:{free_port()}/kassa"
    assert main(["migrate", "--database-url", url]) == 1
    err = capsys.readouterr().err
    assert "migrating postgresql+psycopg://kassa:***@127.0.0.1" in err
    assert "hunter2" not in err


# --------------------------------------------------------------------------------------------------
# kassa up: the orchestration, with the stack, migrations and mesh replaced by recorders


class _Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []


def _fake_up_parts(monkeypatch: pytest.MonkeyPatch, recorder: _Recorder, *, crash: bool) -> None:
    """``crash``: the mesh gives up on ``order`` while running; either way a SIGTERM ends `kassa up`."""
    import signal

    from devstack.localstack import StackEndpoints
    from devstack.mesh import Mesh, RestartPolicy, default_specs

    class FakeStack:
        def __init__(self, data_dir: Path, *, nats_cluster: int = 1) -> None:
            recorder.events.append(f"stack dir {data_dir.name}")
            self.nats_cluster = nats_cluster
            if nats_cluster != 1:
                recorder.events.append(f"stack nats cluster {nats_cluster}")

        def start(self) -> StackEndpoints:
            recorder.events.append("stack start")
            nats = ",".join(f"nats://127.0.0.1:{3 + i}" for i in range(self.nats_cluster))
            return StackEndpoints(
                "postgresql+psycopg://p@127.0.0.1:1/k",
                "redis://127.0.0.1:2/0",
                nats,
                nats_replicas=min(self.nats_cluster, 3),
            )

        def stop(self) -> None:
            recorder.events.append("stack stop")

    class FakeMesh:
        def __init__(self, env: dict[str, str], log_dir: Path, *, restart_policy: RestartPolicy, **_: Any) -> None:
            recorder.events.append(f"mesh env db={env['KASSA_DATABASE_URL']}")
            if "KASSA_NATS_REPLICAS" in env:
                recorder.events.append(f"mesh env nats={env['KASSA_NATS_URL']} replicas={env['KASSA_NATS_REPLICAS']}")
            assert restart_policy == RestartPolicy()  # supervised, with the default backoff and bound
            self.polls = 0
            self.env = env
            self.specs = default_specs(env)
            self.pids = {spec.name: 4000 + i for i, spec in enumerate(self.specs)}

        addr = Mesh.addr

        def start(self) -> None:
            recorder.events.append("mesh start")

        @property
        def given_up(self) -> dict[str, int]:
            self.polls += 1
            if self.polls == 3:  # `kassa up` kept running after the give-up; now its service manager stops it
                os.kill(os.getpid(), signal.SIGTERM)
            return {"order": 3} if crash and self.polls >= 2 else {}

        def stop(self) -> dict[str, int]:
            recorder.events.append("mesh stop")
            return {}

    monkeypatch.setattr(cli, "LocalStack", FakeStack)
    monkeypatch.setattr(cli, "Mesh", FakeMesh)
    # `kassa up` migrates with the mesh's keys to personal data (development: the development key).
    monkeypatch.setattr(
        cli, "_migrate", lambda url, *, pii: recorder.events.append(f"migrate {url} keys {pii.current_key_id}")
    )
    monkeypatch.setattr(cli, "_UP_POLL_SECONDS", 0.01)


def test_up_starts_everything_in_order_and_stops_cleanly_on_sigterm(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorder = _Recorder()
    _fake_up_parts(monkeypatch, recorder, crash=False)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["up", "--data-dir", str(tmp_path), "--no-seed"]) == 0
    assert recorder.events == [
        "stack dir stack",
        "stack start",
        "migrate postgresql+psycopg://p@127.0.0.1:1/k keys dev",
        "mesh env db=postgresql+psycopg://p@127.0.0.1:1/k",
        "mesh start",
        "mesh stop",
        "stack stop",
    ]
    out = capsys.readouterr().out
    for part in ("postgres", "redis", "nats", "checkout", "sandbox", "gateway", "curl", "kassa token --admin"):
        assert part in out
    assert signal.getsignal(signal.SIGTERM) == before


def test_up_with_a_nats_cluster_gives_every_process_all_servers_and_three_replicas(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    recorder = _Recorder()
    _fake_up_parts(monkeypatch, recorder, crash=False)
    assert main(["up", "--data-dir", str(tmp_path), "--no-seed", "--nats-cluster", "3"]) == 0
    assert recorder.events[:2] == ["stack dir stack", "stack nats cluster 3"]
    nats = "nats://127.0.0.1:3,nats://127.0.0.1:4,nats://127.0.0.1:5"
    assert f"mesh env nats={nats} replicas=3" in recorder.events


def test_up_keeps_running_when_a_service_is_given_up_on_and_then_exits_non_zero(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorder = _Recorder()
    _fake_up_parts(monkeypatch, recorder, crash=True)
    for name, value in (("KASSA_DATABASE_URL", "postgresql+psycopg://u:pw@db/k"), ("KASSA_REDIS_URL", "redis://r"),
                        ("KASSA_NATS_URL", "nats://n")):  # fmt: skip
        monkeypatch.setenv(name, value)
    assert main(["up", "--data-dir", str(tmp_path), "--no-seed"]) == 1
    # External infrastructure: no local stack started or stopped.
    assert recorder.events == [
        "migrate postgresql+psycopg://u:pw@db/k keys dev",
        "mesh env db=postgresql+psycopg://u:pw@db/k",
        "mesh start",
        "mesh stop",
    ]
    err = capsys.readouterr().err
    assert err.count("kassa: gave up on order after a crash loop (last exit code 3") == 1  # reported once
    assert f"its log: {tmp_path.absolute() / 'logs' / 'order.log'}" in err
    assert "the rest of the mesh keeps running" in err
    assert "kassa: gave up on order while running" in err


def test_kassa_check_hands_its_options_to_the_invariant_checker(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as shown:
        main(["check", "--help"])
    assert shown.value.code == 0
    assert "--sandbox-url" in capsys.readouterr().out
    # Nothing listens on port 1: the checker says it could not read the stack (2), not "invariants broken" (1).
    code = main(["check", "--database-url", "postgresql://kassa@127.0.0.1:1/kassa", "--sandbox-url", "none"])
    assert code == 2
    assert "cannot connect" in capsys.readouterr().err


def test_mail_lists_the_sinks_messages_and_shows_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from email.message import EmailMessage

    for n, subject in enumerate(("Your Kassa order AB is confirmed", "Your Kassa order AB has shipped")):
        mail = EmailMessage()
        mail["To"], mail["Subject"], mail["Date"] = "ada@example.com", subject, "Sun, 06 Dec 2026 20:00:00 +0000"
        mail.set_content(f"text {n}")
        mail.add_alternative(f"<p>html {n}</p>", subtype="html")
        (tmp_path / f"17650{n}-abc{n}.eml").write_bytes(bytes(mail))
    assert main(["mail", "--dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["176500-abc0", "176501-abc1"]
    assert "2026-12-06 20:00:00" in lines[0] and lines[1].endswith("Your Kassa order AB has shipped")
    assert main(["mail", "--dir", str(tmp_path), "176501"]) == 0
    shown = capsys.readouterr().out
    assert "Subject: Your Kassa order AB has shipped" in shown and "text 1" in shown
    assert main(["mail", "--dir", str(tmp_path), "--html", "176501"]) == 0
    assert "<p>html 1</p>" in capsys.readouterr().out
    assert main(["mail", "--dir", str(tmp_path), "1765"]) == 2  # two match: say so rather than guess
    assert main(["mail", "--dir", str(tmp_path / "none")]) == 0
    assert "no mail in" in capsys.readouterr().out


def test_demo_shows_the_confirmation_email_of_its_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from email.message import EmailMessage

    mail = EmailMessage()
    mail["To"], mail["Subject"] = "ada@example.com", "Your Kassa order 0F1E2D3C is confirmed"
    mail.set_content("Order: 0f1e2d3c-1111\n  Total      $42.00\n")
    (tmp_path / "1-a.eml").write_bytes(bytes(mail))
    cli._show_confirmation("0f1e2d3c-1111", tmp_path, wait_seconds=0)
    out = capsys.readouterr().out
    assert "email to ada@example.com: Your Kassa order 0F1E2D3C is confirmed" in out and "$42.00" in out
    cli._show_confirmation("another-order", tmp_path, wait_seconds=0)
    assert "no email about another-order" in capsys.readouterr().out


def test_up_with_replicas_runs_each_service_and_the_gateway_n_times_and_lists_every_pid(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorder = _Recorder()
    _fake_up_parts(monkeypatch, recorder, crash=False)
    assert main(["up", "--data-dir", str(tmp_path), "--no-seed", "--replicas", "2"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  ") and line.split()}
    # Replica k of a service listens on its default port + 10 k; each row names its own pid.
    assert rows["checkout.0"][1:3] == ["127.0.0.1:50051", "gRPC"]
    assert rows["checkout.1"][1:3] == ["127.0.0.1:50061", "gRPC"]
    assert rows["promotion.1"][1] == "127.0.0.1:50066"
    # The gateway's replicas share its port and are probed on their own; the sandbox stays one process.
    assert rows["gateway.0"][1:4] == ["http://127.0.0.1:8081", "REST", "(shares"]
    assert rows["gateway.1"][1] == "http://127.0.0.1:8082"
    assert "sandbox" in rows and "sandbox.0" not in rows
    pids = [row[-1] for name, row in rows.items() if name.split(".")[0] in ("checkout", "gateway", "sandbox")]
    assert len(pids) == 5 and len(set(pids)) == 5 and all(pid.isdigit() for pid in pids)
    assert "curl -s -X POST http://127.0.0.1:8080/v1/auth/guest" in out


def test_up_refuses_fewer_than_one_replica_or_an_address_list_of_another_length(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorder = _Recorder()
    _fake_up_parts(monkeypatch, recorder, crash=False)
    assert main(["up", "--data-dir", str(tmp_path), "--replicas", "0"]) == 2
    assert "--replicas must be at least 1" in capsys.readouterr().err
    monkeypatch.setenv("KASSA_ORDER_ADDR", "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003")
    assert main(["up", "--data-dir", str(tmp_path), "--replicas", "2"]) == 2
    assert "KASSA_ORDER_ADDR lists 3 addresses but --replicas is 2" in capsys.readouterr().err
    monkeypatch.setenv("KASSA_ORDER_ADDR", "127.0.0.1:7001,order:7002")
    assert main(["up", "--data-dir", str(tmp_path), "--replicas", "2"]) == 2
    assert "KASSA_ORDER_ADDR: a list of replicas must give IP addresses" in capsys.readouterr().err
    assert recorder.events == []  # refused before anything started
