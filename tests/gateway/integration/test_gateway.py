"""The gateway against real grpc.aio backends (fakes served by infra.server, so ErrorInfo is real).

Checks the REST contract of DESIGN.md §2 end to end over HTTP: lowerCamelCase JSON, the Status JSON
for refusals with the field named, the gRPC -> HTTP table, identity (401/403, guest tokens),
Idempotency-Key reaching ConfirmCheckout, webhook signatures, request ids and rate limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
import uvicorn
from helpers import unique
from starlette.applications import Starlette

from devstack.localstack import StackEndpoints, free_ports
from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.ratelimit import Limit
from gateway.server import uvicorn_config
from infra import webhook_signature
from infra.admission import CheckoutAdmission
from infra.auth import ROLE_ADMIN, mint_token, require_identity, require_privileged
from infra.config import Settings
from infra.runner import verifier_for
from infra.server import Registration, Server, start_server
from kassa.checkout.v1 import (
    cart_pb2,
    cart_service_pb2,
    cart_service_pb2_grpc,
    checkout_service_pb2,
    checkout_service_pb2_grpc,
)
from kassa.order.v1 import order_pb2
from kassa.payment.v1 import payment_pb2, payment_service_pb2, payment_service_pb2_grpc
from kassa.warehouse.v1 import inventory_pb2, inventory_service_pb2, inventory_service_pb2_grpc
from kernel import errors

pytestmark = pytest.mark.integration

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


class Recorder:
    """What the fake backends received, by method name."""

    def __init__(self) -> None:
        self.requests: dict[str, Any] = {}
        self.metadata: dict[str, dict[str, str]] = {}

    def record(self, name: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        self.requests[name] = request
        self.metadata[name] = {m.key: m.value for m in context.invocation_metadata() or ()}


def _cart(cart_id: str, items: list[cart_pb2.CartItem] | None = None) -> cart_pb2.Cart:
    return cart_pb2.Cart(
        cart_id=cart_id,
        customer_id=require_identity().subject,
        status=cart_pb2.CART_STATUS_ACTIVE,
        currency_code="USD",
        items=items or [],
    )


class FakeCarts(cart_service_pb2_grpc.CartServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.rec = recorder

    async def CreateCart(self, request, context):
        self.rec.record("CreateCart", request, context)
        return cart_service_pb2.CreateCartResponse(cart=_cart(unique("cart")))

    async def GetCart(self, request, context):
        self.rec.record("GetCart", request, context)
        if request.cart_id == "missing":
            raise errors.NotFound("cart not found")
        return cart_service_pb2.GetCartResponse(cart=_cart(request.cart_id))

    async def AddCartItem(self, request, context):
        self.rec.record("AddCartItem", request, context)
        if not 1 <= request.quantity <= 999:
            raise errors.InvalidArgument("quantity", "must be between 1 and 999")
        if request.sku == "SOLD-OUT":
            raise errors.FailedPrecondition("not enough stock", reason="OUT_OF_STOCK", metadata={"sku": request.sku})
        if request.sku == "BUSY":
            raise errors.Aborted("a checkout is running", reason="CHECKOUT_IN_PROGRESS")
        if request.sku == "AT-CAPACITY":
            raise errors.Unavailable("this service is at capacity", retry_after_s=2.5)
        item = cart_pb2.CartItem(sku=request.sku, quantity=request.quantity)
        return cart_service_pb2.AddCartItemResponse(cart=_cart(request.cart_id, [item]))

    async def UpdateCartItem(self, request, context):
        self.rec.record("UpdateCartItem", request, context)
        item = cart_pb2.CartItem(sku=request.sku, quantity=request.quantity)
        return cart_service_pb2.UpdateCartItemResponse(cart=_cart(request.cart_id, [item]))


class FakeCheckout(checkout_service_pb2_grpc.CheckoutServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.rec = recorder

    async def ConfirmCheckout(self, request, context):
        self.rec.record("ConfirmCheckout", request, context)
        return checkout_service_pb2.ConfirmCheckoutResponse(
            order_id=f"order-{request.idempotency_key}",
            order_status=order_pb2.ORDER_STATUS_CONFIRMED,
            payment_status=payment_pb2.PAYMENT_STATUS_AUTHORIZED,
        )


class FakeInventory(inventory_service_pb2_grpc.InventoryServiceServicer):
    async def ListWarehouses(self, request, context):
        require_privileged()
        return inventory_service_pb2.ListWarehousesResponse(
            warehouses=[inventory_pb2.Warehouse(warehouse_id="wh-1", name="Main")]
        )


class FakePayments(payment_service_pb2_grpc.PaymentServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.rec = recorder
        self.seen: set[bytes] = set()
        self.roles: list[str] = []

    async def HandleWebhook(self, request, context):
        self.rec.record("HandleWebhook", request, context)
        self.roles.append(require_identity().role)
        duplicate = request.payload in self.seen
        self.seen.add(request.payload)
        return payment_service_pb2.HandleWebhookResponse(event_id="evt-1", duplicate=duplicate)


@pytest.fixture(scope="session")
def settings(stack: StackEndpoints) -> Settings:
    """The gateway owns no schema: it needs the stack's Redis, not the other services' migrations."""
    return Settings.from_env(
        {
            "KASSA_ENV": "development",
            "KASSA_DATABASE_URL": stack.database_url,
            "KASSA_REDIS_URL": stack.redis_url,
            "KASSA_NATS_URL": stack.nats_url,
        }
    )


@dataclasses.dataclass
class Env:
    settings: Settings
    client: httpx.AsyncClient
    recorder: Recorder
    payments: FakePayments
    app: Starlette


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def backend(settings: Settings) -> AsyncIterator[tuple[Server, Recorder, FakePayments]]:
    recorder = Recorder()
    payments = FakePayments(recorder)
    server = await start_server(
        "127.0.0.1:0",
        [
            Registration(cart_service_pb2_grpc.add_CartServiceServicer_to_server, FakeCarts(recorder), "c"),
            Registration(checkout_service_pb2_grpc.add_CheckoutServiceServicer_to_server, FakeCheckout(recorder), "k"),
            Registration(inventory_service_pb2_grpc.add_InventoryServiceServicer_to_server, FakeInventory(), "w"),
            Registration(payment_service_pb2_grpc.add_PaymentServiceServicer_to_server, payments, "p"),
        ],
        verifier_for(settings),
    )
    try:
        yield server, recorder, payments
    finally:
        await server.stop(grace=1)


def gateway_settings(settings: Settings, port: int) -> Settings:
    """Every backend on the fake server except order, pricing and promotion, which point at closed ports."""
    dead = free_ports(3)
    here = f"127.0.0.1:{port}"
    addrs = {
        **settings.addrs,
        "checkout": here,
        "warehouse": here,
        "payment": here,
        "order": f"127.0.0.1:{dead[0]}",
        "pricing": f"127.0.0.1:{dead[1]}",
        "promotion": f"127.0.0.1:{dead[2]}",
    }
    return dataclasses.replace(settings, addrs=addrs)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def env(settings: Settings, backend: tuple[Server, Recorder, FakePayments]) -> AsyncIterator[Env]:
    server, recorder, payments = backend
    gw_settings = gateway_settings(settings, server.port)
    app = create_app(gw_settings, GatewayConfig(rate_limit_per_minute=0, max_body_bytes=64 * 1024))
    async with serving(app) as client:
        yield Env(gw_settings, client, recorder, payments, app)


@contextlib.asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan (channels, Redis) around an in-process HTTP client."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client,
    ):
        yield client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_info(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    (detail,) = body["details"]
    assert detail["@type"] == ERROR_INFO
    assert detail["domain"] == "kassa"
    return detail


async def test_create_cart_returns_lower_camel_case_json(env: Env, customer_id: str, customer_token: str) -> None:
    r = await env.client.post("/v1/carts", json={"currency_code": "USD"}, headers=auth(customer_token))
    assert r.status_code == 200
    cart = r.json()["cart"]
    assert cart["customerId"] == customer_id
    assert cart["currencyCode"] == "USD"
    assert cart["status"] == "CART_STATUS_ACTIVE"
    assert cart["items"] == []
    assert "customer_id" not in cart


async def test_patch_item_binds_path_variables(env: Env, customer_token: str) -> None:
    r = await env.client.patch("/v1/carts/c1/items/SKU-1", json={"quantity": 4}, headers=auth(customer_token))
    assert r.status_code == 200
    assert r.json()["cart"]["items"] == [{"sku": "SKU-1", "name": "", "quantity": "4"}]
    assert env.recorder.requests["UpdateCartItem"] == cart_service_pb2.UpdateCartItemRequest(
        cart_id="c1", sku="SKU-1", quantity=4
    )


async def test_backend_invalid_argument_is_400_naming_the_field(env: Env, customer_token: str) -> None:
    r = await env.client.post("/v1/carts/c1/items", json={"sku": "A", "quantity": 0}, headers=auth(customer_token))
    assert r.status_code == 400
    assert r.json()["code"] == 3
    info = error_info(r)
    assert info["reason"] == "INVALID_ARGUMENT"
    assert info["metadata"]["field"] == "quantity"


async def test_out_of_stock_is_400_with_its_reason(env: Env, customer_token: str) -> None:
    r = await env.client.post(
        "/v1/carts/c1/items", json={"sku": "SOLD-OUT", "quantity": 1}, headers=auth(customer_token)
    )
    assert r.status_code == 400
    assert r.json()["code"] == 9
    assert error_info(r)["reason"] == "OUT_OF_STOCK"
    assert error_info(r)["metadata"] == {"sku": "SOLD-OUT"}


async def test_aborted_is_409(env: Env, customer_token: str) -> None:
    r = await env.client.post("/v1/carts/c1/items", json={"sku": "BUSY", "quantity": 1}, headers=auth(customer_token))
    assert r.status_code == 409
    assert error_info(r)["reason"] == "CHECKOUT_IN_PROGRESS"


async def test_not_found_is_404(env: Env, customer_token: str) -> None:
    r = await env.client.get("/v1/carts/missing", headers=auth(customer_token))
    assert r.status_code == 404
    assert error_info(r)["reason"] == "NOT_FOUND"


async def test_unknown_json_field_is_400_before_any_backend_call(env: Env, customer_token: str) -> None:
    env.recorder.requests.pop("AddCartItem", None)
    r = await env.client.post(
        "/v1/carts/c1/items", json={"sku": "A", "quantity": 1, "price": 1}, headers=auth(customer_token)
    )
    assert r.status_code == 400
    assert error_info(r)["metadata"]["field"] == "price"
    assert "AddCartItem" not in env.recorder.requests


async def test_malformed_json_is_400(env: Env, customer_token: str) -> None:
    r = await env.client.post(
        "/v1/carts", content=b'{"currencyCode": ', headers={**auth(customer_token), "Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert error_info(r)["reason"] == "INVALID_ARGUMENT"


async def test_oversized_body_is_413(env: Env, customer_token: str) -> None:
    r = await env.client.post("/v1/carts", content=b" " * (65 * 1024), headers=auth(customer_token))
    assert r.status_code == 413
    assert r.json()["code"] == 3


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic abc"}])
async def test_missing_or_bad_token_is_401(env: Env, headers: dict[str, str]) -> None:
    r = await env.client.get("/v1/carts/c1", headers=headers)
    assert r.status_code == 401
    assert r.json()["code"] == 16


async def test_token_signed_with_another_secret_is_401(env: Env) -> None:
    forged = mint_token("a-different-secret-that-is-long-enough-to-sign", "cust-x", role=ROLE_ADMIN)
    r = await env.client.get("/v1/admin/warehouses", headers=auth(forged))
    assert r.status_code == 401


async def test_admin_routes_refuse_customers_with_403(env: Env, customer_token: str) -> None:
    r = await env.client.get("/v1/admin/warehouses", headers=auth(customer_token))
    assert r.status_code == 403
    assert error_info(r)["reason"] == "PERMISSION_DENIED"


async def test_admin_routes_serve_admins(env: Env, admin_token: str) -> None:
    r = await env.client.get("/v1/admin/warehouses", headers=auth(admin_token))
    assert r.status_code == 200
    assert r.json()["warehouses"][0]["warehouseId"] == "wh-1"


async def test_the_callers_token_is_forwarded_unchanged(env: Env, customer_token: str) -> None:
    await env.client.get("/v1/carts/c7", headers=auth(customer_token))
    assert env.recorder.metadata["GetCart"]["authorization"] == f"Bearer {customer_token}"


async def test_request_id_is_forwarded_and_echoed(env: Env, customer_token: str) -> None:
    rid = unique("req")
    r = await env.client.get("/v1/carts/c2", headers={**auth(customer_token), "X-Request-Id": rid})
    assert r.headers["x-request-id"] == rid
    assert env.recorder.metadata["GetCart"]["x-request-id"] == rid


async def test_a_request_id_is_made_when_none_or_a_bad_one_is_sent(env: Env, customer_token: str) -> None:
    r = await env.client.get("/v1/carts/c2", headers={**auth(customer_token), "X-Request-Id": "bad id\twith junk"})
    made = r.headers["x-request-id"]
    assert made
    assert made != "bad id\twith junk"
    assert env.recorder.metadata["GetCart"]["x-request-id"] == made


async def test_guest_token_is_accepted_by_the_verifier_and_the_backends(env: Env) -> None:
    r = await env.client.post("/v1/auth/guest")
    assert r.status_code == 200
    body = r.json()
    identity = verifier_for(env.settings).verify(body["token"])
    assert identity.guest is True
    assert identity.subject == body["customerId"]
    assert body["customerId"].startswith("guest-")
    cart = await env.client.post("/v1/carts", json={}, headers=auth(body["token"]))
    assert cart.status_code == 200
    assert cart.json()["cart"]["customerId"] == body["customerId"]


async def test_each_guest_gets_a_fresh_identity(env: Env) -> None:
    first = (await env.client.post("/v1/auth/guest")).json()["customerId"]
    second = (await env.client.post("/v1/auth/guest")).json()["customerId"]
    assert first != second


async def test_idempotency_key_header_reaches_confirm_checkout(env: Env, customer_token: str) -> None:
    key = unique("idem")
    r = await env.client.post(
        "/v1/checkout/confirm",
        json={"sessionId": "s1", "expectedGrandTotal": {"currencyCode": "USD", "amountMinor": "1999"}},
        headers={**auth(customer_token), "Idempotency-Key": key},
    )
    assert r.status_code == 200
    assert r.json()["orderId"] == f"order-{key}"
    assert r.json()["orderStatus"] == "ORDER_STATUS_CONFIRMED"
    sent = env.recorder.requests["ConfirmCheckout"]
    assert sent.idempotency_key == key
    assert sent.expected_grand_total.amount_minor == 1999


async def test_confirm_without_idempotency_key_is_400(env: Env, customer_token: str) -> None:
    r = await env.client.post("/v1/checkout/confirm", json={"sessionId": "s1"}, headers=auth(customer_token))
    assert r.status_code == 400
    assert error_info(r)["metadata"]["field"] == "idempotency_key"
    assert "Idempotency-Key header is required" in r.json()["message"]


async def test_confirm_with_conflicting_keys_is_400(env: Env, customer_token: str) -> None:
    r = await env.client.post(
        "/v1/checkout/confirm",
        json={"sessionId": "s1", "idempotencyKey": "a"},
        headers={**auth(customer_token), "Idempotency-Key": "b"},
    )
    assert r.status_code == 400
    assert error_info(r)["metadata"]["field"] == "idempotency_key"


async def test_unavailable_backend_is_503(env: Env, customer_token: str) -> None:
    r = await env.client.get("/v1/orders", headers=auth(customer_token))
    assert r.status_code == 503
    assert r.json()["code"] == 14
    assert error_info(r)["reason"] == "UNAVAILABLE"


async def test_unimplemented_backend_method_is_501(env: Env, customer_token: str) -> None:
    r = await env.client.post("/v1/checkout/start", json={"cartId": "c1"}, headers=auth(customer_token))
    assert r.status_code == 501


async def test_unknown_route_is_404_and_wrong_method_405(env: Env, customer_token: str) -> None:
    missing = await env.client.get("/v1/nothing-here", headers=auth(customer_token))
    wrong = await env.client.put("/v1/carts/c1", json={}, headers=auth(customer_token))
    assert missing.status_code == 404
    assert error_info(missing)["reason"] == "NOT_FOUND"
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET"


class TestWebhook:
    async def test_signed_webhook_is_forwarded_raw_with_a_service_token(self, env: Env) -> None:
        raw = json.dumps({"id": unique("evt"), "type": "payment_intent.succeeded"}, separators=(",", ":")).encode()
        sig = webhook_signature.sign(env.settings.webhook_secret, raw)
        r = await env.client.post(
            "/v1/payments/webhooks/sandbox", content=raw, headers={webhook_signature.SIGNATURE_HEADER: sig}
        )
        assert r.status_code == 200
        assert r.json() == {"received": True, "duplicate": False}
        sent = env.recorder.requests["HandleWebhook"]
        assert (sent.provider, sent.payload, sent.signature) == ("sandbox", raw, sig)
        assert env.payments.roles[-1] == "service"

    async def test_a_redelivery_reports_duplicate(self, env: Env) -> None:
        raw = json.dumps({"id": unique("evt")}).encode()
        headers = {webhook_signature.SIGNATURE_HEADER: webhook_signature.sign(env.settings.webhook_secret, raw)}
        await env.client.post("/v1/payments/webhooks/sandbox", content=raw, headers=headers)
        again = await env.client.post("/v1/payments/webhooks/sandbox", content=raw, headers=headers)
        assert again.json() == {"received": True, "duplicate": True}

    @pytest.mark.parametrize("how", ["wrong-secret", "tampered", "missing", "stale"])
    async def test_bad_signature_is_400_and_not_forwarded(self, env: Env, how: str) -> None:
        raw = json.dumps({"id": unique("evt")}).encode()
        headers: dict[str, str] = {}
        if how == "wrong-secret":
            headers[webhook_signature.SIGNATURE_HEADER] = webhook_signature.sign("whsec_other", raw)
        elif how == "tampered":
            headers[webhook_signature.SIGNATURE_HEADER] = webhook_signature.sign(env.settings.webhook_secret, b"{}")
        elif how == "stale":
            old = webhook_signature.sign(env.settings.webhook_secret, raw, timestamp=1_000_000_000)
            headers[webhook_signature.SIGNATURE_HEADER] = old
        env.recorder.requests.pop("HandleWebhook", None)
        r = await env.client.post("/v1/payments/webhooks/sandbox", content=raw, headers=headers)
        assert r.status_code == 400
        assert error_info(r)["metadata"]["field"] == "signature"
        assert "HandleWebhook" not in env.recorder.requests

    async def test_bad_provider_name_is_400(self, env: Env) -> None:
        r = await env.client.post("/v1/payments/webhooks/Not%20Valid", content=b"{}")
        assert r.status_code == 400
        assert error_info(r)["metadata"]["field"] == "provider"


async def test_healthz(env: Env) -> None:
    r = await env.client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_readyz_reports_the_backends_that_are_down(env: Env) -> None:
    r = await env.client.get("/readyz")
    assert r.status_code == 503
    backends = r.json()["backends"]
    assert backends["checkout"] is True
    assert backends["order"] is False


async def test_rate_limit_returns_429_with_retry_after(
    settings: Settings, backend: tuple[Server, Recorder, FakePayments]
) -> None:
    server, _, _ = backend
    limit = 2
    app = create_app(gateway_settings(settings, server.port), GatewayConfig(rate_limit_per_minute=limit))
    token = mint_token(settings.jwt_secret, unique("cust"))
    statuses: list[int] = []
    limited: httpx.Response | None = None
    async with serving(app) as client:
        # Two windows' worth, so a minute boundary mid-test cannot hide the limit.
        for _ in range(2 * (limit + 1)):
            r = await client.get("/v1/carts/c1", headers=auth(token))
            statuses.append(r.status_code)
            if r.status_code == 429:
                limited = r
                break
    assert statuses[0] == 200
    assert limited is not None
    assert limited.json()["code"] == 8
    assert error_info(limited)["reason"] == "RATE_LIMITED"
    assert 1 <= int(limited.headers["retry-after"]) <= 60


async def test_rate_limit_fails_open_when_redis_is_down(
    settings: Settings, backend: tuple[Server, Recorder, FakePayments]
) -> None:
    server, _, _ = backend
    (dead,) = free_ports(1)
    gw_settings = dataclasses.replace(gateway_settings(settings, server.port), redis_url=f"redis://127.0.0.1:{dead}/0")
    app = create_app(gw_settings, GatewayConfig(rate_limit_per_minute=1))
    token = mint_token(settings.jwt_secret, unique("cust"))
    async with serving(app) as client:
        codes = [(await client.get("/v1/carts/c1", headers=auth(token))).status_code for _ in range(3)]
    assert codes == [200, 200, 200]


@pytest.mark.parametrize(
    ("config", "script_calls"),
    [
        # Development (the bench): 600 per subject a minute only; before leases 8 (one per limited request).
        (GatewayConfig(rate_limit_per_minute=600), 4),
        # Production: also 1200 per IP a minute and 60 guest tokens per IP an hour; before leases 9.
        (GatewayConfig(rate_limit_per_minute=600, ip_rate_limit_per_minute=1200, guest_tokens_per_ip_per_hour=60), 5),
    ],
)
async def test_a_checkouts_nine_requests_take_few_rate_limit_script_calls(
    settings: Settings,
    backend: tuple[Server, Recorder, FakePayments],
    monkeypatch: pytest.MonkeyPatch,
    config: GatewayConfig,
    script_calls: int,
) -> None:
    """The bench's flow through the app: a guest token, then 8 calls with it (gateway.ratelimit's token leases)."""
    server, _, _ = backend
    app = create_app(gateway_settings(settings, server.port), config)
    sent: list[str] = []
    async with serving(app) as client:
        limiter = app.state.gateway._limiter
        # Buckets of this run only (a Redis kept between runs would otherwise count this client's guest tokens on).
        limiter._prefix = unique("rl")
        await limiter.hit((Limit("warm", 1), unique("warm")))  # Redis has the script (no NOSCRIPT, SCRIPT LOAD)
        minute = time.time() // 60
        redis = limiter._redis
        execute = redis.execute_command

        async def counting(*args: object, **options: object) -> object:
            sent.append(str(args[0]))
            return await execute(*args, **options)

        monkeypatch.setattr(redis, "execute_command", counting)
        guest = await client.post("/v1/auth/guest")
        assert guest.status_code == 200
        token = guest.json()["token"]
        codes = [(await client.get("/v1/carts/c1", headers=auth(token))).status_code for _ in range(8)]
    assert codes == [200] * 8
    assert set(sent) == {"EVALSHA"}
    if time.time() // 60 == minute:
        assert len(sent) == script_calls
    else:  # a new window mid-test starts new leases: at most one more series of them
        assert script_calls <= len(sent) <= 2 * script_calls


async def test_served_by_uvicorn_over_real_http(
    settings: Settings, backend: tuple[Server, Recorder, FakePayments]
) -> None:
    server, _, _ = backend
    (port,) = free_ports(1)
    gw_settings = gateway_settings(settings, server.port)
    gw_settings = dataclasses.replace(gw_settings, addrs={**gw_settings.addrs, "gateway": f"127.0.0.1:{port}"})
    config = uvicorn_config(gw_settings, GatewayConfig(rate_limit_per_minute=0))
    config.loop = "none"  # already inside the test's event loop
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve())
    try:
        while not uv.started:
            assert not task.done(), "uvicorn exited during start-up"
            await asyncio.sleep(0.02)
        token = mint_token(settings.jwt_secret, unique("cust"))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            health = await client.get("/healthz")
            cart = await client.get("/v1/carts/c9", headers=auth(token))
    finally:
        uv.should_exit = True
        await task
    assert health.json() == {"status": "ok"}
    assert cart.status_code == 200
    assert cart.json()["cart"]["cartId"] == "c9"
    assert "server" not in cart.headers


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _until(condition: Any) -> None:
    """Wait (bounded) for the app to reach a state in its own time; not a timing assertion."""
    for _ in range(int(10 / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("not reached within 10 s")


async def test_new_checkouts_wait_for_a_slot_and_get_503_with_retry_after_only_when_their_wait_would_be_too_long(
    env: Env, customer_token: str, customer_id: str
) -> None:
    gateway = env.app.state.gateway
    original = gateway._admission
    clock = FakeClock()
    policy = dataclasses.replace(
        original.policy,
        limit=1,
        call_cap=8,
        max_wait_s=30,
        idle_s=10,  # before any checkout ended, a slot is expected to free every 10 s: 3 waiters fit in 30 s
        latency_target_s=0.0,
    )
    gate = gateway._admission = CheckoutAdmission(policy, clock=clock)
    other = auth(mint_token(env.settings.jwt_secret, f"{customer_id}-other"))
    confirm = {"sessionId": "s1", "expectedGrandTotal": {"currencyCode": "USD", "amountMinor": "1999"}}
    try:
        # The customer's new cart is a checkout in progress: the one slot is taken.
        created = await env.client.post("/v1/carts", json={}, headers=auth(customer_token))
        assert created.status_code == 200
        cart_id = created.json()["cart"]["cartId"]
        assert (gate.in_progress, gate.waiting) == (1, 0)
        first = asyncio.create_task(env.client.post("/v1/auth/guest"))
        await _until(lambda: gate.waiting == 1)
        clock.now += 5  # a wait far past CoDel's target refuses no one: the next are expected to wait 20 s and 30 s
        second = asyncio.create_task(env.client.post("/v1/carts", json={}, headers=other))
        await _until(lambda: gate.waiting == 2)
        third = asyncio.create_task(env.client.post("/v1/auth/guest"))
        await _until(lambda: gate.waiting == 3)
        # A fourth would wait 40 s: new checkouts are refused on arrival.
        env.recorder.requests.pop("CreateCart", None)
        for refused in (
            await env.client.post("/v1/auth/guest"),
            await env.client.post("/v1/carts", json={}, headers=other),
        ):
            assert refused.status_code == 503
            assert refused.headers["Retry-After"].isdigit() and int(refused.headers["Retry-After"]) >= 1
            body = refused.json()
            assert body["code"] == grpc.StatusCode.UNAVAILABLE.value[0]
            info = error_info(refused)
            assert info["reason"] == "UNAVAILABLE" and info["metadata"]["why"] == "max_wait"
            assert info["metadata"]["retry_after_seconds"] == refused.headers["Retry-After"]
        assert "CreateCart" not in env.recorder.requests  # the refused cart never reached the backend
        # The checkout under way passes the queue, answered at once: its cart, even a second new cart of its own.
        got = await env.client.get(f"/v1/carts/{cart_id}", headers=auth(customer_token))
        assert got.status_code == 200 and "Retry-After" not in got.headers
        again = await env.client.post("/v1/carts", json={}, headers=auth(customer_token))
        assert again.status_code == 200 and "CreateCart" in env.recorder.requests
        assert not first.done() and not second.done() and not third.done()
        assert (gate.in_progress, gate.waiting) == (1, 3)

        # ConfirmCheckout's answer ends the checkout: its slot goes to the head of the queue.
        confirmed = await env.client.post(
            "/v1/checkout/confirm", json=confirm, headers={**auth(customer_token), "Idempotency-Key": unique("idem")}
        )
        assert confirmed.status_code == 200
        guest = await first
        assert guest.status_code == 200
        assert gate.tracks(guest.json()["customerId"])  # the slot is bound to the guest's new subject
        # A guest that walks away holds its slot only until it is idle for idle_s; then the next is served.
        clock.now += 11
        assert gate.expire() == 1
        assert (await second).status_code == 200
        clock.now += 11
        assert gate.expire() == 1
        assert (await third).status_code == 200
        assert (gate.in_progress, gate.waiting, gate.queue.refused) == (1, 0, 2)
        assert (gate.calls_in_flight, gate.arrivals_in_flight) == (0, 0)
    finally:
        gateway._admission = original


async def test_a_backend_at_capacity_is_503_with_its_retry_delay_as_retry_after(env: Env, customer_token: str) -> None:
    r = await env.client.post(
        "/v1/carts/c1/items", json={"sku": "AT-CAPACITY", "quantity": 1}, headers=auth(customer_token)
    )
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "3"  # 2.5 s, in the whole seconds HTTP has
    types = [d["@type"] for d in r.json()["details"]]
    assert types == [ERROR_INFO, "type.googleapis.com/google.rpc.RetryInfo"]
