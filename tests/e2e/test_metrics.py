"""Prometheus metrics of the real mesh (issue 13, item 2): every gRPC service answers on its metrics port, the
gateway's /metrics wants an admin token, and each metric family moves when its event happens — scraped before
and after a cart, a checkout, a declined card, 3-D Secure, an expired reservation, a DLQ entry, outbox publishing.

The mesh is shared with the other e2e tests, which run one after another on one worker: counters that only the
calls made here move are compared exactly; those a background worker could also move (payments settling,
reservations expiring) by at least what was done here.
"""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa
from e2e.support import Rest, RestError, Sandbox, confirm, eventually, fill_cart, intent_id_of, make_catalog
from e2e.support import ready_session as ready
from google.protobuf.duration_pb2 import Duration
from metrics_support import SYNTHETIC, Scrape, observability_queries, promql_names, scrape

from devstack.mesh import REPLICATED
from infra.auth import mint_service_token, mint_token
from infra.db import create_engine
from kassa.warehouse.v1 import inventory_service_pb2 as inv_pb
from kassa.warehouse.v1 import inventory_service_pb2_grpc as inv_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

SERVICES = tuple(name for name in REPLICATED if name != "gateway")
# The gauges that need a query are refreshed every 15 s (infra.metrics.REFRESH_SECONDS).
REFRESHED_WITHIN = 40.0


def metrics_urls(mesh: Any, service: str) -> list[str]:
    return [f"http://{addr}/metrics" for addr in mesh.env[f"KASSA_{service.upper()}_METRICS_ADDR"].split(",")]


def gateway_urls(mesh: Any) -> list[str]:
    """Each gateway replica's own address (the shared one would reach any one of them)."""
    own = mesh.env.get("KASSA_GATEWAY_REPLICA_ADDRS") or mesh.env["KASSA_GATEWAY_ADDR"]
    return [f"http://{addr}/metrics" for addr in own.split(",")]


async def of(mesh: Any, service: str) -> Scrape:
    if service == "gateway":
        return await scrape(gateway_urls(mesh), mesh.admin_token)
    return await scrape(metrics_urls(mesh, service))


async def test_every_grpc_service_serves_its_metrics_on_a_port_of_its_own(mesh: Any) -> None:
    ports = set()
    for service in SERVICES:
        urls = metrics_urls(mesh, service)
        ports.update(urls)
        got = await scrape(urls)
        # Process metrics from prometheus_client, and the RPC families every service has.
        assert got.value("process_cpu_seconds_total") > 0, service
        assert {"grpc_server_handled_total", "grpc_server_handling_seconds_bucket"} <= got.names, service
    assert len(ports) == sum(len(metrics_urls(mesh, s)) for s in SERVICES)  # none shared


async def test_the_gateways_metrics_refuse_a_caller_without_an_admin_token(mesh: Any) -> None:
    customer = mint_token(mesh.env["KASSA_JWT_SECRET"], f"cust-{uuid.uuid4().hex[:8]}")
    service = mint_service_token(mesh.env["KASSA_SERVICE_SECRET"], "prometheus")
    async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=10, trust_env=False) as http:
        anonymous = await http.get("/metrics")
        forged = await http.get("/metrics", headers={"Authorization": "Bearer not-a-token"})
        as_customer = await http.get("/metrics", headers={"Authorization": f"Bearer {customer}"})
        as_service = await http.get("/metrics", headers={"Authorization": f"Bearer {service}"})
        as_admin = await http.get("/metrics", headers={"Authorization": f"Bearer {mesh.admin_token}"})
    assert (anonymous.status_code, forged.status_code) == (401, 401)
    assert anonymous.json()["details"][0]["reason"] == "UNAUTHENTICATED"
    assert (as_customer.status_code, as_service.status_code) == (403, 403)
    assert "kassa_http_requests" not in as_customer.text + anonymous.text
    assert as_admin.status_code == 200 and "# TYPE kassa_http_requests_total counter" in as_admin.text


async def test_a_card_checkout_moves_the_funnel_rpcs_payments_outbox_and_gateway_metrics(mesh: Any) -> None:
    (product,) = await make_catalog(mesh, n=1)
    before = {s: await of(mesh, s) for s in ("checkout", "payment", "order", "gateway")}

    client = Rest(mesh.gateway_url)
    try:
        await client.guest()
        cart_id = await fill_cart(client, [product], [2])
        session = await ready(client, cart_id)
        result = await confirm(client, session["session_id"], session["preview"]["grandTotal"])
    finally:
        await client.close()
    assert result["orderStatus"] == "ORDER_STATUS_CONFIRMED"

    checkout = await of(mesh, "checkout")
    delta = _delta(before["checkout"], checkout)
    assert delta("kassa_checkout_carts_created_total") == 1
    assert delta("kassa_checkout_started_total") == 1
    assert delta("kassa_checkout_confirmed_total", order_status="CONFIRMED") >= 1
    # The RPCs the gateway made, by method and code, and ConfirmCheckout's latency.
    assert delta("grpc_server_handled_total", grpc_method="CreateCart", grpc_code="OK") == 1
    assert delta("grpc_server_handled_total", grpc_method="AddCartItem", grpc_code="OK") == 1
    assert delta("grpc_server_handling_seconds_count", grpc_method="ConfirmCheckout") == 1
    assert delta("grpc_server_handling_seconds_bucket", grpc_method="ConfirmCheckout", le="+Inf") == 1

    payment = _delta(before["payment"], await of(mesh, "payment"))
    assert payment("kassa_payment_outcomes_total", provider="sandbox", outcome="authorized") >= 1
    assert payment("kassa_payment_outcomes_total", provider="sandbox", outcome="captured") >= 1

    # The order's and checkout's events reach JetStream through their outboxes (published after the answer).
    async def published() -> bool:
        order_now = _delta(before["order"], await of(mesh, "order"))
        checkout_now = _delta(before["checkout"], await of(mesh, "checkout"))
        return (
            order_now("kassa_outbox_published_total", service="order") >= 1
            and order_now("kassa_outbox_publish_lag_seconds_count", service="order") >= 1
            and checkout_now("kassa_outbox_published_total", service="checkout") >= 1
        )

    await eventually(published, what="outbox events published")
    assert "kassa_outbox_backlog" in checkout.names and "kassa_outbox_oldest_unsent_age_seconds" in checkout.names

    gateway = await of(mesh, "gateway")
    http = _delta(before["gateway"], gateway)
    assert http("kassa_http_requests_total", method="POST", route="/v1/carts", status="200") == 1
    assert http("kassa_http_requests_total", method="POST", route="/v1/carts/{cart_id}/items", status="200") == 1
    assert http("kassa_http_requests_total", method="POST", route="/v1/checkout/confirm", status="200") == 1
    assert http("kassa_http_request_duration_seconds_count", method="POST", route="/v1/checkout/confirm") == 1
    # Route templates, never raw paths: no label holds the cart's or the session's id.
    labels = {v for _, ls, _ in gateway.samples for v in ls.values()}
    assert not {v for v in labels if cart_id in v or session["session_id"] in v}


async def test_carts_are_priced_from_checkouts_copy_of_the_catalog_which_a_price_change_reaches(mesh: Any) -> None:
    """AddCartItem asks pricing nothing once checkout's copy of the catalog holds the product (CatalogMirror,
    synced by SyncProducts); a price changed in pricing reaches the copy; StartCheckout still prices afresh."""
    (product,) = await make_catalog(mesh, n=1, price=1999)
    client = Rest(mesh.gateway_url)
    admin = Rest(mesh.gateway_url, mesh.admin_token)

    async def add() -> tuple[str, int, bool]:
        """A new cart with the product: its id, the line's unit price, and whether checkout's copy answered for it
        with nothing asked of pricing."""
        before = {s: await of(mesh, s) for s in ("pricing", "checkout")}
        cart = (await client.call("POST", "/v1/carts", {"currencyCode": "USD"}))["cart"]
        cart = (await client.call("POST", f"/v1/carts/{cart['cartId']}/items", {"sku": product, "quantity": 1}))["cart"]
        pricing = _delta(before["pricing"], await of(mesh, "pricing"))
        checkout = _delta(before["checkout"], await of(mesh, "checkout"))
        copied = (
            pricing("grpc_server_handled_total", grpc_method="GetProducts") == 0
            and checkout("kassa_checkout_catalog_lookups_total", answered_by="copy") == 1
            and checkout("kassa_checkout_catalog_lookups_total", answered_by="fallback") == 0
        )
        return cart["cartId"], int(cart["items"][0]["unitPrice"]["amountMinor"]), copied

    try:
        await client.guest()
        # Each replica of checkout syncs every second; a cart may reach one whose copy is not there yet.
        _, price, _ = await eventually(lambda: _copied(add, 1999), what="a cart line priced from checkout's copy")
        assert price == 1999
        changed = {"sku": product, "name": "Repriced", "weightGrams": "400", "taxClass": "standard"}
        changed["prices"] = [{"currencyCode": "USD", "amountMinor": "2499"}]
        await admin.call("POST", "/v1/admin/products", {"products": [changed]})
        cart_id, price, _ = await eventually(lambda: _copied(add, 2499), what="the new price in checkout's copy")
        assert price == 2499

        before = await of(mesh, "pricing")
        await client.call("POST", "/v1/checkout/start", {"cartId": cart_id, "shipToCountryCode": "US"})
        started = _delta(before, await of(mesh, "pricing"))
        assert started("grpc_server_handled_total", grpc_method="GetProducts", grpc_code="OK") == 1
    finally:
        await client.close()
        await admin.close()


async def _copied(add: Any, price: int) -> tuple[str, int, bool] | None:
    """What ``add`` made, when the line has ``price`` and checkout's copy of the catalog answered for it."""
    made = await add()
    return made if made[1] == price and made[2] else None


async def test_a_declined_card_counts_a_failed_checkout_by_reason_and_the_decline_by_code(mesh: Any) -> None:
    (product,) = await make_catalog(mesh, n=1)
    before_checkout, before_payment = await of(mesh, "checkout"), await of(mesh, "payment")
    client = Rest(mesh.gateway_url)
    try:
        await client.guest()
        session = await ready(client, await fill_cart(client, [product], [1]), token="tok_chargeDeclined")
        with pytest.raises(RestError) as refused:
            await confirm(client, session["session_id"], session["preview"]["grandTotal"])
    finally:
        await client.close()
    assert refused.value.reason == "PAYMENT_DECLINED"

    checkout = _delta(before_checkout, await of(mesh, "checkout"))
    assert checkout("kassa_checkout_failed_total", reason="PAYMENT_DECLINED") == 1
    assert checkout("grpc_server_handled_total", grpc_method="ConfirmCheckout", grpc_code="FAILED_PRECONDITION") == 1
    payment_now = await of(mesh, "payment")
    payment = _delta(before_payment, payment_now)
    # DECLINED from the authorize call, or FAILED when the provider's webhook of the same decline got there first.
    refused_outcomes = ("declined", "failed")
    assert sum(payment("kassa_payment_outcomes_total", provider="sandbox", outcome=o) for o in refused_outcomes) >= 1
    codes = {
        ls["code"]
        for n, ls, v in payment_now.samples
        if n == "kassa_payment_outcomes_total" and ls.get("outcome") in refused_outcomes and v > 0
    }
    assert codes and "" not in codes  # the provider's decline code is the label


async def test_three_d_secure_counts_required_then_passed_and_the_checkout_confirmed(mesh: Any) -> None:
    (product,) = await make_catalog(mesh, n=1)
    before_checkout, before_payment = await of(mesh, "checkout"), await of(mesh, "payment")
    client = Rest(mesh.gateway_url)
    sandbox = Sandbox(mesh.env["KASSA_SANDBOX_URL"])
    try:
        await client.guest()
        session = await ready(client, await fill_cart(client, [product], [1]), token="tok_threeDSecure")
        result = await confirm(client, session["session_id"], session["preview"]["grandTotal"])
        assert result["orderStatus"] == "ORDER_STATUS_PENDING_PAYMENT"
        mid = _delta(before_checkout, await of(mesh, "checkout"))
        assert mid("kassa_checkout_awaiting_payment_total") == 1
        payment = _delta(before_payment, await of(mesh, "payment"))
        assert payment("kassa_payment_three_ds_total", provider="sandbox", result="required") >= 1

        await sandbox.complete_3ds(intent_id_of(result["nextActionUrl"]))

        async def passed_and_confirmed() -> bool:
            pay = _delta(before_payment, await of(mesh, "payment"))
            chk = _delta(before_checkout, await of(mesh, "checkout"))
            return (
                pay("kassa_payment_three_ds_total", provider="sandbox", result="passed") >= 1
                and chk("kassa_checkout_confirmed_total", order_status="CONFIRMED") >= 1
            )

        await eventually(passed_and_confirmed, what="3-D Secure passed and the checkout confirmed")
    finally:
        await client.close()
        await sandbox.close()


async def test_an_expired_reservation_is_counted_by_the_warehouse(mesh: Any) -> None:
    (product,) = await make_catalog(mesh, n=1)
    before = await of(mesh, "warehouse")
    token = mint_service_token(mesh.env["KASSA_SERVICE_SECRET"], "metrics-test")
    request = inv_pb.ReserveStockRequest(
        reservation_ref=f"metrics-{uuid.uuid4().hex}",
        lines=[inv_pb.ReserveLine(sku=product, quantity=1)],
        ttl=Duration(seconds=1),
    )
    async with grpc.aio.insecure_channel(mesh.addr("warehouse")) as channel:
        await inv_grpc.InventoryServiceStub(channel).ReserveStock(
            request, metadata=(("authorization", f"Bearer {token}"),), timeout=10
        )

    async def expired() -> bool:
        return _delta(before, await of(mesh, "warehouse"))("kassa_warehouse_reservations_expired_total") >= 1

    await eventually(expired, what="the reservation expired by the sweeper")


@pytest.mark.parametrize("status", ["dead", "parked"])
async def test_a_dead_or_parked_compensation_shows_in_the_dlq_depth_and_age(mesh: Any, status: str) -> None:
    engine = create_engine(mesh.env["KASSA_DATABASE_URL"], pool_size=1)
    dlq = {"queue": "checkout_failed_compensations", "status": status}
    entry = str(uuid.uuid4())
    try:
        before = (await of(mesh, "checkout")).value("kassa_dlq_depth", **dlq)
        async with engine.begin() as conn:
            # What the drain leaves after the last retry (dead), or an operator's park (parked).
            await conn.execute(
                sa.text(
                    "INSERT INTO checkout.failed_compensations (id, session_id, operation, payload, attempts, status,"
                    " last_error, created_at) VALUES (:id, :sid, 'release_reservations', CAST(:payload AS jsonb), 5,"
                    " :status, 'metrics test', now() - interval '1 hour')"
                ),
                {
                    "id": entry,
                    "sid": str(uuid.uuid4()),
                    "payload": '{"reservation_ref": "metrics-test"}',
                    "status": status,
                },
            )

        async def parked() -> Scrape | None:
            now = await of(mesh, "checkout")
            return now if now.value("kassa_dlq_depth", **dlq) == before + 1 else None

        seen = await eventually(parked, within=REFRESHED_WITHIN, interval=1.0, what="the DLQ gauge refreshed")
        assert seen.value("kassa_dlq_oldest_age_seconds", **dlq) >= 3600
        # Notification's dead letters are the same family, under their own queue name.
        notification = await of(mesh, "notification")
        assert {"checkout_failed_compensations"} <= seen.label_values("kassa_dlq_depth", "queue")
        assert "notification_dead_letters" in notification.label_values("kassa_dlq_depth", "queue")
    finally:
        async with engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM checkout.failed_compensations WHERE id = :id"), {"id": entry})
        await engine.dispose()


def _delta(before: Scrape, after: Scrape) -> Any:
    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    return delta


async def test_every_metric_the_dashboard_and_alerts_use_is_in_the_meshs_exposition(mesh: Any) -> None:
    exposed = set(SYNTHETIC)
    for service in (*SERVICES, "gateway"):
        exposed |= (await of(mesh, service)).names
    for where, expr in observability_queries():
        missing = promql_names(expr) - exposed
        assert not missing, f"{where} uses metrics no process of the mesh exposes: {sorted(missing)}"
