"""One checkout is one trace (issue 13): gateway → services → Postgres, Redis, NATS and the provider, read back
from the mesh's JSON-lines trace files the way ``kassa trace`` reads them.

The test client sends no trace context of its own: the trace starts at the gateway's span of ConfirmCheckout,
and everything that checkout causes — the saga's calls, each service's statements, the provider's HTTP calls,
the events through the outbox and NATS to their consumers (notification's email, order's and payment's
consumers), and for 3-D Secure the webhook that completes it — must land in that one trace, each span's parent
in it too. The test reads nothing back over REST for the order it traces, so any other trace naming the order
would be a break in propagation.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from e2e.conftest import mesh_replicas
from e2e.support import Rest, Sandbox, confirm, eventually, fill_cart, make_catalog, make_coupon, ready_session

from infra.trace_view import SpanNode, TraceTree, find_traces

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

CONFIRMED = "ORDER_STATUS_CONFIRMED"
PENDING = "ORDER_STATUS_PENDING_PAYMENT"
# The batch processors write every 5 s; consumers and webhooks run after the answer.
WITHIN = 60.0
SERVICES = {"gateway", "checkout", "pricing", "promotion", "warehouse", "payment", "order", "notification"}


def kassa_trace(key: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "devstack.cli", "trace", key]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def trace_dir(mesh: Any) -> Path:
    return Path(mesh.env["KASSA_TRACE_DIR"])


def spans(tree: TraceTree) -> list[SpanNode]:
    return list(tree.spans())


def named(tree: TraceTree, suffix: str) -> list[SpanNode]:
    return [s for s in tree.spans() if s.name.endswith(suffix)]


async def checkout_trace(mesh: Any, order_id: str, complete: Any) -> TraceTree:
    """The one trace naming ``order_id``, once ``complete(tree)`` says everything it should hold was written."""

    async def probe() -> TraceTree | None:
        trees = find_traces(order_id, trace_dir(mesh))
        return trees[0] if len(trees) == 1 and complete(trees[0]) else None

    try:
        return await eventually(probe, within=WITHIN, interval=0.5, what="the checkout's trace")
    except AssertionError:
        trees = find_traces(order_id, trace_dir(mesh))
        summary = [(t.trace_id, t.span_count, t.services, [r.name for r in t.roots]) for t in trees]
        raise AssertionError(f"traces naming {order_id}: {summary}") from None


def assert_connected(tree: TraceTree) -> None:
    """A single root (the gateway's request) and every other span's parent inside the trace."""
    orphans = [(s.service, s.name, s.parent_id) for s in spans(tree) if s.missing_parent]
    assert not orphans, f"spans whose parent is not in the trace: {orphans}"
    assert len(tree.roots) == 1, [(r.service, r.name) for r in tree.roots]
    assert tree.roots[0].service == "gateway" and tree.roots[0].kind == "server", tree.roots[0]


def has_everything(tree: TraceTree) -> bool:
    names = {s.name for s in tree.spans()}
    return (
        set(tree.services) >= SERVICES
        and any(n.endswith("CheckoutService/ConfirmCheckout") for n in names)
        and any(n.endswith("PaymentService/CapturePayment") for n in names)
        and any(s.service == "notification" and s.kind == "consumer" for s in tree.spans())
        and not any(s.missing_parent for s in tree.spans())
    )


async def test_one_rest_checkout_is_one_connected_trace(mesh: Any) -> None:
    skus = await make_catalog(mesh, n=2, on_hand=10)
    coupon = await make_coupon(mesh)
    client = Rest(mesh.gateway_url)
    try:
        await client.guest()
        cart_id = await fill_cart(client, skus, [1, 2])
        s = await ready_session(client, cart_id, codes=[coupon])
        result = await confirm(client, s["session_id"], s["preview"]["grandTotal"])
    finally:
        await client.close()
    assert result["orderStatus"] == CONFIRMED, result
    order_id = result["orderId"]

    tree = await checkout_trace(mesh, order_id, has_everything)
    assert_connected(tree)
    assert set(tree.services) >= SERVICES, tree.services
    ids = {s.span_id for s in spans(tree)}
    assert len(ids) == tree.span_count
    # The gateway's request names the route, and the session and order it worked on.
    root = tree.roots[0]
    assert root.name == "POST /v1/checkout/confirm", root.name
    assert root.attributes.get("kassa.session_id") == s["session_id"]
    assert root.attributes.get("kassa.order_id") == order_id
    # gRPC: the gateway's client span, each service's server span under a caller's span.
    confirm_spans = named(tree, "CheckoutService/ConfirmCheckout")
    assert {(c.service, c.kind) for c in confirm_spans} == {("gateway", "client"), ("checkout", "server")}
    for rpc in ("PricingService/QuoteOrder", "PromotionService/ReservePromotionUsage", "OrderService/CreateOrder"):
        assert any(x.kind == "server" for x in named(tree, rpc)), (rpc, sorted({x.name for x in spans(tree)}))
    # Step 3's totals with the coupon: promotions on the prices the session holds, then one QuoteOrder that checks
    # them and taxes the discounted lines (was GetProducts, QuoteShipping, ValidatePromotions, CalculateTax). With
    # replicas, the update may have been priced by another checkout process, which leaves this one no shipping
    # to guess from: it quotes the shipping first.
    totals = {
        rpc: sum(1 for x in named(tree, rpc) if x.kind == "server")
        for rpc in ("PricingService/GetProducts", "PricingService/QuoteShipping", "PricingService/CalculateTax",
                    "PricingService/QuoteOrder", "PromotionService/ValidatePromotions")
    }  # fmt: skip
    shipping_quotes = totals.pop("PricingService/QuoteShipping")
    assert shipping_quotes == 0 or (mesh_replicas() > 1 and shipping_quotes == 1), shipping_quotes
    assert totals == {
        "PricingService/GetProducts": 0,
        "PricingService/CalculateTax": 0,
        "PricingService/QuoteOrder": 1,
        "PromotionService/ValidatePromotions": 1,
    }
    assert any(x.service == "warehouse" and x.kind == "server" for x in spans(tree))
    authorize = [x for x in named(tree, "PaymentService/AuthorizePayment") if x.kind == "server"]
    assert len(authorize) == 1
    assert authorize[0].attributes.get("kassa.session_id") or authorize[0].attributes.get("kassa.payment_id")
    # Postgres: statements of every service that owns a schema, as child spans, with SQL but no values.
    db = [x for x in spans(tree) if x.attributes.get("db.system") == "postgresql"]
    assert {"checkout", "order", "payment", "warehouse", "pricing", "promotion"} <= {x.service for x in db}
    assert all("ada@example.com" not in str(x.attributes.get("db.statement")) for x in db)
    # Redis: checkout's idempotency lock.
    assert any(x.attributes.get("db.system") == "redis" and x.service == "checkout" for x in spans(tree))
    # The provider: payment's HTTP calls to the sandbox (authorize, capture), in the payment's server spans.
    provider = [x for x in spans(tree) if x.service == "payment" and x.name.startswith("POST /v1/payment_intents")]
    assert {x.name for x in provider} >= {"POST /v1/payment_intents", "POST /v1/payment_intents/{id}/capture"}
    assert all(x.attributes.get("http.response.status_code") == 200 for x in provider)
    # NATS: outbox publications and the consumers that continue from them.
    producers = [x for x in spans(tree) if x.kind == "producer" and x.name.startswith("publish kassa.")]
    consumers = [x for x in spans(tree) if x.kind == "consumer"]
    assert any(p.name == "publish kassa.order.OrderConfirmed" for p in producers), [p.name for p in producers]
    assert {"notification"} <= {c.service for c in consumers}
    by_id = {x.span_id: x for x in spans(tree)}
    for consumer in consumers:
        assert by_id[consumer.parent_id or ""].kind == "producer", consumer
    # Every span of the checkout is well formed: ended, and not before the trace began.
    assert all(x.end_ns >= x.start_ns and x.offset_ms >= 0 for x in spans(tree))


async def test_three_d_secure_webhook_continues_the_checkout_trace(mesh: Any) -> None:
    skus = await make_catalog(mesh, n=1, on_hand=10)
    client = Rest(mesh.gateway_url)
    sandbox = Sandbox(mesh.env["KASSA_SANDBOX_URL"])
    try:
        await client.guest()
        cart_id = await fill_cart(client, skus, [1])
        s = await ready_session(client, cart_id, token="tok_threeDSecure")
        result = await confirm(client, s["session_id"], s["preview"]["grandTotal"])
        assert result["orderStatus"] == PENDING, result
        intent_id = result["nextActionUrl"].rstrip("/").rsplit("/", 1)[-1]
        # The customer authenticates at the provider; its webhook (to the gateway) completes the order.
        await sandbox.complete_3ds(intent_id)
    finally:
        await client.close()
        await sandbox.close()
    order_id = result["orderId"]

    def webhook_done(tree: TraceTree) -> bool:
        return (
            any(x.name.endswith("PaymentService/HandleWebhook") and x.kind == "server" for x in tree.spans())
            and any(x.name.endswith("PaymentService/CapturePayment") and x.kind == "server" for x in tree.spans())
            and not any(x.missing_parent for x in tree.spans())
        )

    tree = await checkout_trace(mesh, order_id, webhook_done)
    assert_connected(tree)
    assert tree.roots[0].name == "POST /v1/checkout/confirm"
    hooks = [x for x in spans(tree) if x.service == "gateway" and x.name == "POST /v1/payments/webhooks/{provider}"]
    assert hooks, sorted({(x.service, x.name) for x in spans(tree)})
    by_id = {x.span_id: x for x in spans(tree)}
    # The webhook hangs under the provider call that created the intent (the sandbox sent its traceparent back).
    for hook in hooks:
        parent = by_id[hook.parent_id or ""]
        assert parent.service == "payment" and parent.name == "POST /v1/payment_intents", parent
    # Its processing: payment applies it, checkout's consumer settles the session, capture follows.
    handle = [x for x in spans(tree) if x.name.endswith("PaymentService/HandleWebhook") and x.kind == "server"]
    assert any(by_id[h.parent_id or ""].service == "gateway" for h in handle)
    settle = [x for x in spans(tree) if x.service == "checkout" and x.kind == "consumer"]
    assert settle, "checkout's payment-event consumer is not in the trace"
    captures = [x for x in spans(tree) if x.name.endswith("PaymentService/CapturePayment") and x.kind == "server"]
    assert min(c.start_ns for c in captures) > min(h.start_ns for h in hooks)


async def test_kassa_trace_prints_the_order_s_span_tree(mesh: Any) -> None:
    skus = await make_catalog(mesh, n=1, on_hand=5)
    client = Rest(mesh.gateway_url)
    try:
        await client.guest()
        cart_id = await fill_cart(client, skus, [1])
        s = await ready_session(client, cart_id)
        result = await confirm(client, s["session_id"], s["preview"]["grandTotal"])
    finally:
        await client.close()
    order_id = result["orderId"]
    await checkout_trace(
        mesh,
        order_id,
        lambda t: (
            {"gateway", "checkout", "notification"} <= set(t.services) and not any(x.missing_parent for x in t.spans())
        ),
    )

    env = {**os.environ, "KASSA_TRACE_DIR": str(trace_dir(mesh))}
    done = await asyncio.to_thread(kassa_trace, order_id, env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("trace ") and "spans" in lines[0] and "services: " in lines[0], lines[0]
    assert all(svc in lines[0] for svc in ("checkout", "gateway", "order", "payment")), lines[0]
    body = "\n".join(lines[2:])
    # The gateway's request first, at offset 0, then its children indented below it, each with timings.
    assert lines[2].split()[0] == "0.0" and "gateway: POST /v1/checkout/confirm" in lines[2], lines[2]
    assert f"order_id={order_id}" in lines[2]
    assert "  checkout: kassa.checkout.v1.CheckoutService/ConfirmCheckout" in body
    assert "ms  ok" in body
    assert "[parent not found]" not in body

    missing = await asyncio.to_thread(kassa_trace, "no-such-order", env)
    assert missing.returncode == 1 and "no trace names 'no-such-order'" in missing.stdout
