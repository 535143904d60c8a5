"""Payment paths that need a mesh with other settings than the shared one (issue #8): a 3-D Secure payment
abandoned until its (short) payment window ends, and a dead primary provider with a backup sandbox.

Each test starts its own mesh on a private stack (``start_mesh``, seconds): a payment window of minutes or a
dead provider would slow down or break every other e2e test if the shared mesh had it.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from e2e.support import (
    BACKUP_SANDBOX_URL,
    Rest,
    RestError,
    Sandbox,
    cart_reaches,
    confirm,
    eventually,
    fill_cart,
    intent_id_of,
    make_catalog,
    make_coupon,
    payment_of,
    ready_session,
    stock_of,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

# Checkout's poll worker runs every 10 s: a window of 3 s ends the payment within about 15 s of confirm.
WINDOW_SECONDS = 3
SETTLE_SECONDS = 45.0


async def test_three_d_secure_abandoned_until_the_window_ends_fails_and_releases(start_mesh: Any) -> None:
    env = {"KASSA_PAYMENT_WINDOW_SECONDS": str(WINDOW_SECONDS), "KASSA_PAYMENT_POLL_AFTER_SECONDS": "1"}
    async with start_mesh(env) as mesh:
        skus = await make_catalog(mesh, n=2, on_hand=2)
        coupon = await make_coupon(mesh, usage_limit=1)
        before = await stock_of(mesh, skus)
        client = Rest(mesh.gateway_url)
        sandbox = Sandbox(mesh.env["KASSA_SANDBOX_URL"])
        try:
            await client.guest()
            cart_id = await fill_cart(client, skus, [2, 1])
            s = await ready_session(client, cart_id, token="tok_threeDSecure", codes=[coupon])
            result = await confirm(client, s["session_id"], s["preview"]["grandTotal"])
            assert result["orderStatus"] == "ORDER_STATUS_PENDING_PAYMENT", result
            order_id, intent_id = result["orderId"], intent_id_of(result["nextActionUrl"])

            # Nobody authenticates. The window passes: the order fails, the intent is cancelled, all is released.
            # The order fails when checkout gives up on the window; the payment's void (or failure) reaches the
            # order as an event after that, so both are waited for.
            ended = ("PAYMENT_STATUS_VOIDED", "PAYMENT_STATUS_FAILED")

            async def failed() -> dict | None:
                order = (await client.call("GET", f"/v1/orders/{order_id}"))["order"]
                done = order["status"] == "ORDER_STATUS_PAYMENT_FAILED" and order.get("paymentStatus") in ended
                return order if done else None

            order = await eventually(failed, within=SETTLE_SECONDS, what="the order failing after its window")
            assert order["status"] == "ORDER_STATUS_PAYMENT_FAILED" and order.get("paymentStatus") in ended, order

            async def cancelled() -> dict | None:
                intent = await sandbox.intent(intent_id)
                return intent if intent["status"] == "canceled" else None

            await eventually(cancelled, within=SETTLE_SECONDS, what="the intent cancelled at the sandbox")

            async def released() -> bool:
                return await stock_of(mesh, skus) == before

            await eventually(released, within=SETTLE_SECONDS, what="the stock back on sale")
            await cart_reaches(client, cart_id, "CART_STATUS_ACTIVE")

            # Authenticating afterwards authorizes and captures nothing.
            late = await sandbox.complete_3ds(intent_id)
            assert (late["status"], late["amount_capturable"], late["amount_received"]) == ("canceled", 0, 0)

            # The coupon's one use and every unit can be had again: the same cart pays with a card.
            s2 = await ready_session(client, cart_id, codes=[coupon])
            assert [d["code"] for d in s2["preview"].get("discounts", [])] == [coupon], s2["preview"]
            again = await confirm(client, s2["session_id"], s2["preview"]["grandTotal"])
            assert again["orderStatus"] == "ORDER_STATUS_CONFIRMED", again
            after = await stock_of(mesh, skus)
            assert [before[x][0] - after[x][0] for x in skus] == [2, 1]
            assert [after[x][1] for x in skus] == [0, 0]
            assert (await payment_of(mesh, order["paymentId"])).captured_amount.amount_minor == 0
        finally:
            await client.close()
            await sandbox.close()


async def test_a_dead_primary_provider_falls_back_to_the_backup(start_mesh: Any) -> None:
    env = {
        "KASSA_PAYMENT_PROVIDERS": "sandbox={dead_url},backup={backup_url}",
        "KASSA_PAYMENT_BREAKER_THRESHOLD": "2",
        "KASSA_PAYMENT_BREAKER_RESET_SECONDS": "120",
    }
    async with start_mesh(env, backup="backup") as mesh:
        skus = await make_catalog(mesh, n=1, on_hand=10)
        before = await stock_of(mesh, skus)
        client = Rest(mesh.gateway_url)
        backup = Sandbox(mesh.env[BACKUP_SANDBOX_URL])
        try:
            await client.guest()
            refusals: list[RestError] = []
            confirmed: list[dict] = []
            cart_id = await fill_cart(client, skus, [1])
            # Each payment replica keeps a breaker of its own (each learns that the primary is dead on its own),
            # and checkout spreads its calls over them: with n replicas, up to n times the refusals.
            replicas = len(mesh.env["KASSA_PAYMENT_ADDR"].split(","))
            for _ in range(6 * replicas):
                s = await ready_session(client, cart_id)
                try:
                    confirmed.append(await confirm(client, s["session_id"], s["preview"]["grandTotal"]))
                    break
                except RestError as exc:
                    refusals.append(exc)
            assert confirmed, [(e.status, e.body) for e in refusals]
            # Until the breaker opens, confirm fails fast: the provider is unavailable, the checkout undone (409,
            # start again); nothing is left held for those.
            assert all(e.reason == "PAYMENT_PROVIDER_UNAVAILABLE" for e in refusals), [e.body for e in refusals]
            assert all(e.status == 409 for e in refusals), [(e.status, e.body) for e in refusals]
            assert len(refusals) <= 2 * replicas
            result = confirmed[0]
            assert result["orderStatus"] == "ORDER_STATUS_CONFIRMED", result
            order = (await client.call("GET", f"/v1/orders/{result['orderId']}"))["order"]
            payment = await payment_of(mesh, order["paymentId"])
            assert payment.provider == "backup"
            intent = await backup.intent(payment.provider_payment_id)
            assert (intent["status"], intent["amount_received"]) == (
                "succeeded",
                int(order["totals"]["grandTotal"]["amountMinor"]),
            )
            # While the breaker stays open, the next checkouts go straight to the backup.
            # (With replicas, a checkout may still meet a replica whose breaker has not opened yet.)
            second_cart = await fill_cart(client, skus, [2])
            late: list[RestError] = []
            for _ in range(1 + 2 * (replicas - 1)):
                s = await ready_session(client, second_cart)
                try:
                    second = await confirm(client, s["session_id"], s["preview"]["grandTotal"], uuid.uuid4().hex)
                    break
                except RestError as exc:
                    assert exc.reason == "PAYMENT_PROVIDER_UNAVAILABLE", exc.body
                    late.append(exc)
            else:
                raise AssertionError(f"no checkout reached the backup: {[e.body for e in late]}")
            assert second["orderStatus"] == "ORDER_STATUS_CONFIRMED", second
            after = await stock_of(mesh, skus)
            assert before[skus[0]][0] - after[skus[0]][0] == 3
            assert after[skus[0]][1] == 0
        finally:
            await client.close()
            await backup.close()
