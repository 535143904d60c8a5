"""The operators' admin routes over the real mesh (gateway → services → Postgres/NATS): the DLQ, stuck
sessions, outbox status, stock drift and the funnel.

Faults are injected with SQL where the mesh offers no way to make them on demand (a DLQ entry, a saga that
stopped, an outbox row nobody publishes, drifted stock); everything afterwards goes through the routes, and the
real services do the work: a void retried twice voids once at the provider, a release retried twice releases
once, a stuck session is compensated as the recovery worker would, and DESIGN.md §4 holds afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import psycopg
import pytest
from e2e.support import Rest, RestError, confirm, eventually, fill_cart, make_catalog, ready_session, stock_of

from devstack import check as invariant_check
from kassa.common.v1 import money_pb2
from kassa.payment.v1 import payment_service_pb2 as pay_pb
from kassa.payment.v1 import payment_service_pb2_grpc as pay_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

SETTLE_SECONDS = 45.0
# Every admin route of this work, with a request that is valid in shape (ids that exist nowhere).
NOWHERE = "00000000-0000-4000-8000-000000000000"
ROUTES = [
    ("GET", "/v1/admin/dlq", None),
    ("GET", f"/v1/admin/dlq/{NOWHERE}", None),
    ("POST", f"/v1/admin/dlq/{NOWHERE}:retry", {}),
    ("POST", f"/v1/admin/dlq/{NOWHERE}:park", {}),
    ("POST", f"/v1/admin/dlq/{NOWHERE}:replay", {}),
    ("GET", "/v1/admin/sessions/stuck", None),
    ("POST", f"/v1/admin/sessions/stuck/{NOWHERE}:resolve", {}),
    ("GET", "/v1/admin/funnel", None),
    ("GET", "/v1/admin/payments/failure-rates", None),
    ("GET", "/v1/admin/stock/drift", None),
    ("POST", "/v1/admin/stock/drift:repair", {"skus": ["NO-SUCH-SKU"]}),
    ("GET", "/v1/admin/outbox", None),
]


def _url(mesh: Any) -> str:
    return mesh.env["KASSA_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://", 1)


async def _sql(mesh: Any, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(_url(mesh), autocommit=True) as conn:
        cur = await conn.execute(statement, params)
        return list(await cur.fetchall()) if cur.description else []


@contextlib.asynccontextmanager
async def stuck_session(mesh: Any, session_id: str) -> AsyncIterator[None]:
    """Make the session look stuck (its replica died right after the durable guard, hours ago), and keep the mesh's
    own recovery worker off it while the block runs: the row stays locked, and the worker's claim skips locked rows
    (FOR UPDATE SKIP LOCKED) while a plain read still sees it. Resolving it is for after the block."""
    await _sql(
        mesh,
        "UPDATE checkout.checkout_sessions SET status = 'CONFIRMING', saga_step = 'validated', "
        "saga_attempt = saga_attempt + 1, confirm_started_at = now() - interval '2 hours' WHERE session_id = %s",
        session_id,
    )
    async with await psycopg.AsyncConnection.connect(_url(mesh)) as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM checkout.checkout_sessions WHERE session_id = %s FOR UPDATE", (session_id,))
        yield


async def _dlq_entry(mesh: Any, session_id: str, operation: str, payload: dict[str, Any]) -> str:
    """A compensation that failed during a checkout, as the saga records it (due in a minute)."""
    entry_id = str(uuid.uuid4())
    await _sql(
        mesh,
        "INSERT INTO checkout.failed_compensations (id, session_id, operation, payload, last_error, next_attempt_at) "
        "VALUES (%s, %s, %s, %s::jsonb, 'Unavailable: injected', now() + interval '10 minutes')",
        entry_id,
        session_id,
        operation,
        json.dumps(payload),
    )
    return entry_id


async def _customer_session(mesh: Any, skus: list[str], quantities: list[int]) -> tuple[Rest, dict[str, Any]]:
    customer = Rest(mesh.gateway_url)
    await customer.guest()
    return customer, await ready_session(customer, await fill_cart(customer, skus, quantities))


async def test_every_admin_route_refuses_no_token_401_and_a_customer_403(mesh: Any) -> None:
    anonymous = Rest(mesh.gateway_url)
    customer = Rest(mesh.gateway_url)
    admin = Rest(mesh.gateway_url, mesh.admin_token)
    try:
        await customer.guest()
        for method, path, body in ROUTES:
            for client, status in ((anonymous, 401), (customer, 403)):
                with pytest.raises(RestError) as refused:
                    await client.call(method, path, body)
                assert refused.value.status == status, (method, path, refused.value.body)
        # Bad input is INVALID_ARGUMENT naming the field, before anything is written.
        for method, path, body, field in (
            ("GET", "/v1/admin/dlq?pageSize=-1", None, "page_size"),
            ("GET", "/v1/admin/dlq?operation=shred", None, "operation"),
            ("GET", "/v1/admin/dlq?sessionId=abc", None, "session_id"),
            ("GET", "/v1/admin/dlq/not-a-uuid", None, "id"),
            ("POST", "/v1/admin/dlq/not-a-uuid:park", {}, "id"),
            ("POST", "/v1/admin/sessions/stuck/x:resolve", {}, "session_id"),
            ("GET", "/v1/admin/stock/drift?skus=bad%20sku", None, "skus[0]"),
            ("POST", "/v1/admin/stock/drift:repair", {"skus": ["ok", "bad sku"]}, "skus[1]"),
            ("GET", "/v1/admin/outbox?service=pricing", None, "service"),
            ("GET", "/v1/admin/funnel?startTime=2030-01-01T00:00:00Z", None, "start_time"),
        ):
            with pytest.raises(RestError) as bad:
                await admin.call(method, path, body)
            assert (bad.value.status, bad.value.reason, bad.value.metadata.get("field")) == (
                400,
                "INVALID_ARGUMENT",
                field,
            ), path
        for method, path, body in ROUTES[1:5] + ROUTES[6:7]:
            with pytest.raises(RestError) as missing:
                await admin.call(method, path, body)
            assert (missing.value.status, missing.value.reason) == (404, "NOT_FOUND"), path
    finally:
        for client in (anonymous, customer, admin):
            await client.close()


async def test_dlq_over_rest_a_void_and_a_release_retried_twice_happen_once_and_replay_runs_a_parked_entry(
    mesh: Any,
) -> None:
    skus = await make_catalog(mesh, n=1, on_hand=10)
    admin = Rest(mesh.gateway_url, mesh.admin_token)
    customer, session = await _customer_session(mesh, skus, [3])
    sid = session["session_id"]
    try:
        before = await stock_of(mesh, skus)
        assert before[skus[0]][1] == 3  # held by the session
        # An authorization whose void failed during a checkout (the payment service's own AuthorizePayment).
        async with grpc.aio.insecure_channel(mesh.addr("payment")) as ch:
            payment = (
                await pay_grpc.PaymentServiceStub(ch).AuthorizePayment(
                    pay_pb.AuthorizePaymentRequest(
                        idempotency_key=f"ops-{sid}",
                        order_ref=sid,
                        amount=money_pb2.Money(currency_code="USD", amount_minor=1999),
                        payment_method="tok_visa",
                        customer_id="ops-test",
                    ),
                    metadata=(("authorization", f"Bearer {mesh.admin_token}"),),
                    timeout=10,
                )
            ).payment
        void = {"payment_id": payment.payment_id, "reason": "checkout failed"}
        release = {"reservation_ref": sid, "reason": "checkout failed"}
        voids = [await _dlq_entry(mesh, sid, "void_authorization", void) for _ in range(2)]
        releases = [await _dlq_entry(mesh, sid, "release_reservations", release) for _ in range(2)]

        listed = await admin.call("GET", f"/v1/admin/dlq?sessionId={sid}")
        assert sorted(e["id"] for e in listed["entries"]) == sorted(voids + releases)
        assert {e["status"] for e in listed["entries"]} == {"COMPENSATION_STATUS_PENDING"}
        shown = (await admin.call("GET", f"/v1/admin/dlq/{voids[0]}"))["entry"]
        assert shown["payload"] == void and shown["operation"] == "void_authorization"
        assert shown["lastError"] == "Unavailable: injected" and "nextAttemptTime" in shown

        for entry_id in voids:
            ran = await admin.call("POST", f"/v1/admin/dlq/{entry_id}:retry", {})
            assert ran["succeeded"] is True and ran["entry"]["status"] == "COMPENSATION_STATUS_DONE"
        voided = await _sql(
            mesh,
            "SELECT p.status, (SELECT count(*) FROM payment.payment_attempts a WHERE a.payment_id = p.payment_id "
            "AND a.operation = 'void') FROM payment.payments p WHERE p.payment_id = %s",
            uuid.UUID(payment.payment_id),
        )
        assert voided == [("VOIDED", 1)]  # voided at the provider once, however often it was retried

        await admin.call("POST", f"/v1/admin/dlq/{releases[0]}:retry", {})
        after_one = await stock_of(mesh, skus)
        assert after_one[skus[0]] == (before[skus[0]][0], 0)
        # The second release is parked, then replayed: it runs once, and changes nothing more.
        parked = await admin.call("POST", f"/v1/admin/dlq/{releases[1]}:park", {})
        assert parked["entry"]["status"] == "COMPENSATION_STATUS_PARKED" and "nextAttemptTime" not in parked["entry"]
        with pytest.raises(RestError) as conflict:
            await admin.call("POST", f"/v1/admin/dlq/{releases[1]}:retry", {})
        assert (conflict.value.status, conflict.value.reason) == (400, "COMPENSATION_STATE_CONFLICT")
        assert conflict.value.metadata["status"] == "parked"
        replayed = await admin.call("POST", f"/v1/admin/dlq/{releases[1]}:replay", {})
        assert replayed["succeeded"] is True and replayed["entry"]["status"] == "COMPENSATION_STATUS_DONE"
        assert await stock_of(mesh, skus) == after_one
        done = await admin.call("GET", f"/v1/admin/dlq?sessionId={sid}&status=COMPENSATION_STATUS_DONE&pageSize=3")
        assert len(done["entries"]) == 3 and done["nextPageToken"]
        rest = await admin.call(
            "GET", f"/v1/admin/dlq?sessionId={sid}&status=COMPENSATION_STATUS_DONE&pageToken={done['nextPageToken']}"
        )
        assert len(rest["entries"]) == 1 and not rest.get("nextPageToken")

        audit = await admin.call("GET", f"/v1/admin/audit?service=checkout&target=sessions/{sid}")
        actions = [e["action"].rsplit(".", 1)[-1] for e in audit["entries"]]
        assert actions.count("RetryFailedCompensation") == 3
        assert "ParkFailedCompensation" in actions and "ReplayFailedCompensation" in actions
    finally:
        await customer.close()
        await admin.close()


async def test_a_stuck_session_is_compensated_now_and_the_invariants_hold(mesh: Any) -> None:
    skus = await make_catalog(mesh, n=2, on_hand=10)
    admin = Rest(mesh.gateway_url, mesh.admin_token)
    customer, session = await _customer_session(mesh, skus, [2, 1])
    sid = session["session_id"]
    try:
        assert {s: r for s, (_, r) in (await stock_of(mesh, skus)).items()} == {skus[0]: 2, skus[1]: 1}
        async with stuck_session(mesh, sid):
            stuck = await admin.call("GET", "/v1/admin/sessions/stuck?pageSize=500")
        found = {s["sessionId"]: s for s in stuck["sessions"]}
        assert sid in found and found[sid]["sagaStep"] == "validated"
        assert int(found[sid]["ageSeconds"]) >= 7199 and int(stuck["leaseSeconds"]) > 0

        try:
            resolved = await admin.call("POST", f"/v1/admin/sessions/stuck/{sid}:resolve", {})
            assert resolved["outcome"] == "cancelled" and resolved["sessionStatus"] == "CANCELLED"
        except RestError as raced:
            # The mesh's recovery worker (every 15 s) finished it between the listing and this call.
            assert raced.reason == "SESSION_NOT_STUCK"
            assert raced.metadata["status"] == "CANCELLED"
        assert {s: r for s, (_, r) in (await stock_of(mesh, skus)).items()} == {skus[0]: 0, skus[1]: 0}
        with pytest.raises(RestError) as again:
            await admin.call("POST", f"/v1/admin/sessions/stuck/{sid}:resolve", {})
        assert (again.value.status, again.value.reason) == (400, "SESSION_NOT_STUCK")
        # The cart is the customer's again, and the session is no longer listed.
        assert sid not in {s["sessionId"] for s in (await admin.call("GET", "/v1/admin/sessions/stuck"))["sessions"]}
        drift = await admin.call("GET", f"/v1/admin/stock/drift?skus={skus[0]}&skus={skus[1]}")
        assert drift["status"] == "DRIFT_STATUS_CLEAN" and not drift.get("findings")

        argv = ["--database-url", mesh.env["KASSA_DATABASE_URL"], "--sandbox-url", mesh.env["KASSA_SANDBOX_URL"]]

        async def holds() -> bool:
            return await asyncio.to_thread(invariant_check.main, argv) == 0

        await eventually(holds, within=SETTLE_SECONDS, interval=1.0, what="kassa check passing")
    finally:
        await customer.close()
        await admin.close()


async def test_outbox_status_shows_every_service_and_a_backlog(mesh: Any) -> None:
    skus = await make_catalog(mesh, n=1, on_hand=5)
    admin = Rest(mesh.gateway_url, mesh.admin_token)
    customer, session = await _customer_session(mesh, skus, [1])
    event_id = uuid.uuid4()
    try:
        await confirm(customer, session["session_id"], session["preview"]["grandTotal"])

        async def published() -> dict[str, Any] | None:
            services = {s["service"]: s for s in (await admin.call("GET", "/v1/admin/outbox"))["services"]}
            return services if "lastPublishedTime" in services["order"] else None

        await eventually(published, within=SETTLE_SECONDS, what="an order event published")
        status = await admin.call("GET", "/v1/admin/outbox")
        assert [s["service"] for s in status["services"]] == ["checkout", "order", "payment", "warehouse", "promotion"]
        # A row claimed by a publisher that stalled: unpublished, processing, 10 minutes old.
        await _sql(
            mesh,
            "INSERT INTO orders.outbox (event_id, subject, event_type, aggregate_id, payload, status, lease_until, "
            "created_at, last_error) VALUES (%s, 'kassa.order.OpsProbe', 'OpsProbe', 'ops', '{}'::jsonb, "
            "'processing', now() + interval '1 hour', now() - interval '10 minutes', 'timeout')",
            event_id,
        )
        backlog = {s["service"]: s for s in (await admin.call("GET", "/v1/admin/outbox"))["services"]}
        order = backlog["order"]
        assert int(order["unpublished"]) >= 1 and int(order["processing"]) >= 1 and int(order["failing"]) >= 1
        assert order["oldestUnpublishedAgeSeconds"] >= 599
        one = await admin.call("GET", "/v1/admin/outbox?service=order")
        assert [s["service"] for s in one["services"]] == ["order"]
    finally:
        await _sql(mesh, "DELETE FROM orders.outbox WHERE event_id = %s", event_id)
        await customer.close()
        await admin.close()


async def test_stock_drift_injected_by_sql_is_reported_and_repaired(mesh: Any) -> None:
    skus = await make_catalog(mesh, n=2, on_hand=10)
    admin = Rest(mesh.gateway_url, mesh.admin_token)
    try:
        query = f"skus={skus[0]}&skus={skus[1]}"
        clean = await admin.call("GET", f"/v1/admin/stock/drift?{query}")
        assert clean["status"] == "DRIFT_STATUS_CLEAN" and int(clean["checked"]) >= 2
        await _sql(mesh, "UPDATE warehouse.stock SET reserved = reserved + 3 WHERE sku = %s", skus[0])
        report = await admin.call("GET", f"/v1/admin/stock/drift?{query}")
        assert report["status"] == "DRIFT_STATUS_DRIFT"
        drifted = report["findings"]
        assert {f["sku"] for f in drifted} == {skus[0]}
        assert all(int(f["drift"]) == 3 and f["problems"] == ["reserved_drift"] and f["repairable"] for f in drifted)
        assert (await admin.call("GET", f"/v1/admin/stock/drift?{query}"))["status"] == "DRIFT_STATUS_DRIFT"  # dry

        repaired = await admin.call("POST", "/v1/admin/stock/drift:repair", {"skus": skus})
        assert repaired["status"] == "DRIFT_STATUS_REPAIRED" and len(repaired["repaired"]) == len(drifted)
        assert (await admin.call("GET", f"/v1/admin/stock/drift?{query}"))["status"] == "DRIFT_STATUS_CLEAN"
        assert {s: r for s, (_, r) in (await stock_of(mesh, skus)).items()} == {skus[0]: 0, skus[1]: 0}
        audit = await admin.call("GET", "/v1/admin/audit?service=warehouse&action=RepairStockDrift&pageSize=5")
        assert any(any(skus[0] in t for t in e.get("targets", [])) for e in audit["entries"])
    finally:
        await admin.close()


async def test_the_funnel_and_payment_failure_rates_of_the_last_hour(mesh: Any) -> None:
    skus = await make_catalog(mesh, n=1, on_hand=10)
    admin = Rest(mesh.gateway_url, mesh.admin_token)
    customer, session = await _customer_session(mesh, skus, [1])
    try:
        declined_session = await ready_session(
            customer, await fill_cart(customer, skus, [1]), token="tok_chargeDeclined"
        )
        before = await admin.call("GET", "/v1/admin/funnel")
        rates_before = await admin.call("GET", "/v1/admin/payments/failure-rates")
        with pytest.raises(RestError) as declined:
            await customer.call(
                "POST",
                "/v1/checkout/confirm",
                {
                    "sessionId": declined_session["session_id"],
                    "expectedGrandTotal": declined_session["preview"]["grandTotal"],
                },
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
        assert declined.value.reason == "PAYMENT_DECLINED"
        placed = await confirm(customer, session["session_id"], session["preview"]["grandTotal"])
        assert placed["orderStatus"] == "ORDER_STATUS_CONFIRMED"

        async def counted() -> dict[str, Any] | None:
            now = await admin.call("GET", "/v1/admin/funnel")
            failed = int(now.get("checkoutsFailed", 0)) > int(before.get("checkoutsFailed", 0))
            confirmed = int(now.get("checkoutsConfirmed", 0)) > int(before.get("checkoutsConfirmed", 0))
            return now if failed and confirmed else None

        after = await eventually(counted, within=SETTLE_SECONDS, what="the declined checkout in the funnel")
        assert int(after["cartsCreated"]) >= 2 and int(after["checkoutsStarted"]) >= 2
        reasons = {f["reason"]: int(f["count"]) for f in after["failuresByReason"]}
        assert reasons.get("PAYMENT_DECLINED", 0) >= 1 and sum(reasons.values()) == int(after["checkoutsFailed"])
        assert 0 < after["failureRate"] <= 1
        rates = await admin.call("GET", "/v1/admin/payments/failure-rates")
        assert int(rates["failed"]) >= int(rates_before.get("failed", 0)) + 1
        codes = {c["code"]: c for c in rates["byCode"]}
        assert codes and sum(int(c["count"]) for c in codes.values()) == int(rates["failed"])
        assert 0 < rates["failureRate"] <= 1
    finally:
        await customer.close()
        await admin.close()
