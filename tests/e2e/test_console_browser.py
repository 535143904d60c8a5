"""The operator console (/console) end to end in a real headless browser: Debian's chromium driven by Playwright.

The browser is the system's (``make browser`` installs it with apt); Playwright never downloads one. A machine
without it fails here, loudly: the console is only tested when a browser renders it.

``KASSA_CONSOLE_SCREENSHOTS=docs/console`` (``make console-screenshots``) writes a PNG of each screen there;
otherwise they go to the test's temporary folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from e2e.conftest import MeshHandle, StartMesh
from e2e.support import US_ADDRESS, Rest, RestError, confirm, eventually, fill_cart, make_catalog, ready_session
from playwright.async_api import Browser, Page, async_playwright, expect

from infra.trace_view import TraceTree, find_traces

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

CHROMIUM = os.environ.get("KASSA_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS_ENV = "KASSA_CONSOLE_SCREENSHOTS"
# Text a customer typed, which the console must show as text and never run.
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium) before the console test")
    return CHROMIUM


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=chromium, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get(SCREENSHOTS_ENV)
    folder = Path(target) if target else tmp_path_factory.mktemp("console-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.asynccontextmanager
async def watched_page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh page (its own sessionStorage) that fails the test on a script error or a CSP violation."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    opened = await context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    # Refused calls (401, 403, 404) are logged by the browser as resource errors; they are what some steps expect.
    opened.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" and "Failed to load resource" not in msg.text
            else None
        ),
    )
    try:
        yield opened
        assert problems == []
        assert await opened.evaluate("window.__pwned") is None
    finally:
        await context.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser) -> AsyncIterator[Page]:
    async with watched_page(browser) as opened:
        yield opened


async def sign_in(page: Page, mesh: MeshHandle, token: str | None = None) -> None:
    await page.goto(f"{mesh.gateway_url}/console")
    await page.get_by_label("Admin token").fill(token or mesh.admin_token)
    await page.get_by_role("button", name="Sign in").click()


async def place_order(mesh: MeshHandle) -> dict[str, Any]:
    """A paid order whose product name, address and notes hold markup, as an attacker would type them."""
    skus = await make_catalog(mesh, n=1)
    admin = Rest(mesh.gateway_url, mesh.admin_token)
    customer = Rest(mesh.gateway_url)
    try:
        product = {
            "sku": skus[0],
            "name": f"Lamp {HOSTILE}",
            "category": "test",
            "brand": "Kassa",
            "weightGrams": "400",
            "taxClass": "standard",
            "prices": [{"currencyCode": "USD", "amountMinor": "2599"}],
        }
        await admin.call("POST", "/v1/admin/products", {"products": [product]})
        customer_id = await customer.guest()
        cart_id = await fill_cart(customer, skus, [2])
        started = await customer.call("POST", "/v1/checkout/start", {"cartId": cart_id, "shipToCountryCode": "US"})
        session_id = started["session"]["sessionId"]
        await customer.call(
            "PUT",
            "/v1/checkout/state",
            {
                "sessionId": session_id,
                "email": f"console-{uuid.uuid4().hex[:8]}@example.com",
                "shippingAddress": {**US_ADDRESS, "name": f"Eve {HOSTILE}"},
                "shippingMethod": "standard",
                "paymentMethod": "tok_visa",
                "notes": f"leave at door {HOSTILE}",
            },
        )
        preview = (await customer.call("GET", f"/v1/checkout/sessions/{session_id}/preview"))["preview"]
        confirmed = await confirm(customer, session_id, preview["grandTotal"])

        # The order learns its payment's status from payment's events, a moment after the answer.
        async def captured() -> bool:
            placed = (await customer.call("GET", f"/v1/orders/{confirmed['orderId']}"))["order"]
            return placed["paymentStatus"] == "PAYMENT_STATUS_CAPTURED"

        await eventually(captured, within=30.0, what="the order's payment status CAPTURED")
        return {
            "order_id": confirmed["orderId"],
            "session_id": session_id,
            "customer_id": customer_id,
            "sku": skus[0],
        }
    finally:
        await admin.close()
        await customer.close()


# Longer than a process's batch span exporter waits between writes (OTEL_BSP_SCHEDULE_DELAY's default, 5 s).
SETTLED_S = 6.0


async def checkout_trace(mesh: MeshHandle, order_id: str) -> TraceTree:
    """The trace naming ``order_id`` once it holds the checkout's spans in checkout, payment and order, and has
    settled: the same number of spans twice, ``SETTLED_S`` apart. The checkout's events are consumed after it
    answers (notification, order's payment events), so a trace read as soon as those four services show can be
    short of spans the console, read later, shows."""
    seen: list[int] = []

    async def probe() -> TraceTree | None:
        trees = await asyncio.to_thread(find_traces, order_id, mesh.env["KASSA_TRACE_DIR"])
        wanted = {"gateway", "checkout", "payment", "order"}
        tree = next((t for t in trees if wanted <= set(t.services)), None)
        if tree is None:
            return None
        settled = seen[-1:] == [tree.span_count]
        seen.append(tree.span_count)
        return tree if settled else None

    found: TraceTree = await eventually(probe, within=90.0, interval=SETTLED_S, what="the checkout's trace, settled")
    return found


async def test_a_wrong_or_customer_token_is_refused_and_nothing_is_stored(
    mesh: MeshHandle, page: Page, shots: Path
) -> None:
    await page.goto(f"{mesh.gateway_url}/console")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.screenshot(path=shots / "login.png")

    await sign_in(page, mesh, "not-a-token")
    await expect(page.locator("#login-error")).to_contain_text("This token was refused")
    await expect(page.locator("#nav")).to_be_hidden()
    assert await page.evaluate("sessionStorage.length") == 0

    customer = Rest(mesh.gateway_url)
    try:
        await customer.guest()
        await sign_in(page, mesh, customer.token)
    finally:
        await customer.close()
    await expect(page.locator("#login-error")).to_contain_text("no admin role")
    assert await page.evaluate("sessionStorage.length") == 0
    assert "token" not in page.url.lower()


async def test_an_admin_finds_an_order_by_its_session_and_reads_its_page(
    mesh: MeshHandle, page: Page, shots: Path
) -> None:
    order = await place_order(mesh)
    # The page renders a configured trace link with the order's id (the setting itself: tests/gateway/unit).
    template = "http://traces.example/search?order={order_id}"
    await page.route("**/console/config.json", lambda route: route.fulfill(json={"traceUrlTemplate": template}))

    await sign_in(page, mesh)
    await expect(page.get_by_role("heading", name="Orders")).to_be_visible()
    stored = await page.evaluate("sessionStorage.getItem('kassa.console.token')")
    assert stored == mesh.admin_token
    assert mesh.admin_token not in page.url

    search = page.get_by_label("Order, session or customer id")
    await search.fill("   ")
    await page.get_by_role("button", name="Find").click()
    await expect(page.locator("#order-result")).to_contain_text("Enter an order id, a checkout session id or a")
    for missing in (str(uuid.uuid4()), f"nobody-{uuid.uuid4().hex}"):
        await search.fill(missing)
        await page.get_by_role("button", name="Find").click()
        await expect(page.locator("#order-result")).to_contain_text(f"customer's order has the id {missing}")

    # A customer id lists that customer's orders; each opens its page.
    await search.fill(order["customer_id"])
    await page.get_by_role("button", name="Find").click()
    listed = page.get_by_test_id("customer-orders")
    await expect(listed).to_contain_text(order["order_id"])
    await expect(listed.locator("tbody tr")).to_have_count(1)
    await page.screenshot(path=shots / "order-search.png", full_page=True)
    await listed.get_by_role("link", name=order["order_id"]).click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(order["order_id"])
    await page.get_by_role("link", name="Orders").click()
    search = page.get_by_label("Order, session or customer id")

    await search.fill(order["session_id"])
    await page.get_by_role("button", name="Find").click()
    await expect(page).to_have_url(f"{mesh.gateway_url}/console#/orders/{order['order_id']}")
    heading = page.get_by_role("heading", level=1)
    await expect(heading).to_contain_text(order["order_id"])
    await expect(heading).to_contain_text("CONFIRMED")
    timeline = page.get_by_test_id("timeline")
    await expect(timeline).to_be_visible()
    await expect(timeline.locator("tbody tr").first).to_contain_text("PENDING_PAYMENT")
    await expect(timeline.locator("tbody tr").last).to_contain_text("CONFIRMED")
    await expect(page.locator("#payments")).to_contain_text("CAPTURED")
    await expect(page.locator("#payments")).to_contain_text("51.98 USD")
    await expect(page.get_by_test_id("lines")).to_contain_text(order["sku"])
    # The markup the customer typed is shown as text: no element was made from it, nothing ran.
    await expect(page.get_by_test_id("lines")).to_contain_text(HOSTILE)
    await expect(page.locator("#screen")).to_contain_text(f"leave at door {HOSTILE}")
    assert await page.locator("#screen img, #screen script").count() == 0
    trace = page.locator("#trace-link")
    assert await trace.get_attribute("href") == f"http://traces.example/search?order={order['order_id']}"
    await page.screenshot(path=shots / "order.png", full_page=True)

    # Its trace, from the mesh's trace files once the processes' batch exporters wrote the checkout's spans.
    tree = await checkout_trace(mesh, order["order_id"])
    await page.get_by_role("link", name="Trace", exact=True).click()
    await expect(page).to_have_url(f"{mesh.gateway_url}/console#/trace/{order['order_id']}")
    card = page.get_by_test_id("trace").filter(has_text=tree.trace_id)
    await expect(card).to_contain_text(f"{tree.span_count} spans")
    assert await card.get_by_test_id("span").count() == tree.span_count
    await expect(card.get_by_test_id("span").first).to_contain_text("gateway")
    await page.screenshot(path=shots / "trace.png", full_page=True)
    await page.go_back()

    # Searching by the order id goes straight to the same page; signing out forgets the token.
    await page.get_by_role("link", name="Orders").click()
    await expect(page.locator("#screen")).to_contain_text("Opened in this tab")
    await page.get_by_label("Order, session or customer id").fill(order["order_id"])
    await page.get_by_role("button", name="Find").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(order["order_id"])
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('kassa.console.token')") is None


async def failed_void(mesh: MeshHandle) -> str:
    """A checkout undone after its authorization whose void then fails: a void_authorization entry in the DLQ.

    The mesh runs with ``checkout.confirm.after_authorize=error#1`` (the saga undoes the checkout) and
    ``payment.void.before_provider=error#3`` (its void fails as often as the saga tries it inline), so the entry
    waits for the DLQ worker's first retry, a minute later, and the next void succeeds.
    """
    skus = await make_catalog(mesh, n=1)
    customer = Rest(mesh.gateway_url)
    try:
        await customer.guest()
        ready = await ready_session(customer, await fill_cart(customer, skus, [1]))
        with pytest.raises(RestError) as undone:
            await confirm(customer, ready["session_id"], ready["preview"]["grandTotal"])
        assert undone.value.reason == "UNAVAILABLE"
        return str(ready["session_id"])
    finally:
        await customer.close()


async def checkout_with(mesh: MeshHandle, token: str) -> None:
    """One checkout paid with the sandbox ``token``: confirmed, or refused as the token says."""
    skus = await make_catalog(mesh, n=1)
    customer = Rest(mesh.gateway_url)
    try:
        await customer.guest()
        ready = await ready_session(customer, await fill_cart(customer, skus, [1]), token=token)
        try:
            await confirm(customer, ready["session_id"], ready["preview"]["grandTotal"])
        except RestError as refused:
            assert refused.reason == "PAYMENT_DECLINED"
    finally:
        await customer.close()


async def ready_to_confirm(mesh: MeshHandle) -> str:
    """A session ready to confirm, holding its stock."""
    skus = await make_catalog(mesh, n=1)
    customer = Rest(mesh.gateway_url)
    try:
        await customer.guest()
        ready = await ready_session(customer, await fill_cart(customer, skus, [1]))
    finally:
        await customer.close()
    return str(ready["session_id"])


@contextlib.asynccontextmanager
async def stuck_session(mesh: MeshHandle, session_id: str) -> AsyncIterator[None]:
    """Make the session look stuck (its ConfirmCheckout stopped right after its durable guard an hour ago), and keep
    the mesh's recovery worker off it while the block runs: the row stays locked, which the worker's claim (FOR
    UPDATE SKIP LOCKED) skips and a plain read doesn't. Resolving it is for after the block."""
    url = mesh.env["KASSA_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://", 1)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE checkout.checkout_sessions SET status = 'CONFIRMING', saga_step = 'validated', "
            "saga_attempt = saga_attempt + 1, confirm_started_at = now() - interval '1 hour' WHERE session_id = %s",
            (session_id,),
        )
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM checkout.checkout_sessions WHERE session_id = %s FOR UPDATE", (session_id,))
        yield


DLQ_FAULTS = {"KASSA_FAULTS": "checkout.confirm.after_authorize=error#1,payment.void.before_provider=error#3"}


async def test_an_admin_parks_and_replays_a_dead_letter_resolves_a_stuck_session_and_reads_the_funnel(
    start_mesh: StartMesh, browser: Browser, shots: Path
) -> None:
    async with start_mesh(DLQ_FAULTS) as mesh:
        session_id = await failed_void(mesh)
        admin = Rest(mesh.gateway_url, mesh.admin_token)
        try:
            [entry] = (await admin.call("GET", f"/v1/admin/dlq?sessionId={session_id}"))["entries"]
        finally:
            await admin.close()
        assert (entry["operation"], entry["status"]) == ("void_authorization", "COMPENSATION_STATUS_PENDING")

        async with watched_page(browser) as page:
            await sign_in(page, mesh)
            await expect(page.get_by_role("heading", name="Orders")).to_be_visible()
            await page.get_by_role("link", name="Dead letters").click()
            await page.get_by_test_id("dlq-tab-pending").click()
            row = page.locator(f'tr[data-id="{entry["id"]}"]')
            await expect(row).to_contain_text("void_authorization")
            await expect(row).to_contain_text(session_id)
            await expect(row).to_contain_text("fault injected at payment.void.before_provider")
            await row.get_by_role("button", name="payload").click()
            await expect(row.locator("pre")).to_contain_text("payment_id")
            await page.screenshot(path=shots / "dlq.png", full_page=True)

            # Parked: it leaves the retry list for the parked one, where a replay runs it once more.
            await row.get_by_role("button", name="Park").click()
            await expect(page.locator("#dlq-result")).to_contain_text(f"Parked void_authorization {entry['id']}")
            await expect(row).to_have_count(0)
            await page.get_by_test_id("dlq-tab-parked").click()
            await expect(page.get_by_test_id("dlq-tab-parked")).to_have_attribute("aria-selected", "true")
            await expect(row).to_contain_text("PARKED")
            await row.get_by_role("button", name="Replay").click()
            await expect(page.locator("#dlq-result")).to_contain_text(
                f"Replay: void_authorization {entry['id']} succeeded"
            )
            await expect(row).to_have_count(0)
            await page.get_by_test_id("dlq-tab-done").click()
            await expect(row).to_contain_text("DONE")

            # A stuck session, driven (here: compensated) from the console. Once the row lock is gone the mesh's
            # recovery worker (every 15 s) may get to it first: then the console says it is no longer stuck.
            stuck = await ready_to_confirm(mesh)
            listed = page.locator("tr", has_text=stuck)
            async with stuck_session(mesh, stuck):
                await page.get_by_role("link", name="Stuck sessions").click()
                await expect(listed).to_contain_text("validated")
                await page.screenshot(path=shots / "stuck-sessions.png", full_page=True)
            await listed.get_by_role("button", name="Drive forward or compensate now").click()
            await expect(page.locator("#stuck-result")).to_contain_text(
                re.compile(f"Session {stuck}: cancelled, now CANCELLED|SESSION_NOT_STUCK")
            )
            await expect(listed).to_have_count(0)
            admin = Rest(mesh.gateway_url, mesh.admin_token)
            try:
                session = (await admin.call("GET", f"/v1/checkout/sessions/{stuck}"))["session"]
            finally:
                await admin.close()
            assert session["status"] == "SESSION_STATUS_CANCELLED"

            # The hour's funnel: beside the undone and the stuck checkout, two paid and one declined.
            for token in ("tok_visa", "tok_visa", "tok_chargeDeclined"):
                await checkout_with(mesh, token)
            await page.get_by_role("link", name="Funnel").click()
            funnel = page.get_by_test_id("funnel-table")
            await expect(funnel).to_contain_text("Checkouts started")
            started = funnel.locator("tr", has_text="Checkouts started")
            await expect(started.locator("td").nth(1)).not_to_have_text("0")
            await expect(page.get_by_test_id("failures-table")).to_contain_text("UNAVAILABLE")
            await expect(page.get_by_test_id("outbox-table")).to_contain_text("checkout")
            await expect(funnel.locator("tr", has_text="Checkouts confirmed").locator("td").nth(1)).to_have_text("2")
            await expect(page.get_by_test_id("failures-table")).to_contain_text("PAYMENT_DECLINED")
            await expect(page.get_by_test_id("payment-failure-rate")).not_to_have_text("0.0 %")
            await expect(page.get_by_test_id("payment-failures-table").locator("tbody tr")).not_to_have_count(0)
            await page.screenshot(path=shots / "funnel.png", full_page=True)
