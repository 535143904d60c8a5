"""The operator console (/console) end to end in a real headless browser: Debian's chromium driven by Playwright.

The browser is the system's (``make browser`` installs it with apt); Playwright never downloads one. A machine
without it fails here, loudly: the console is only tested when a browser renders it.

``KASSA_CONSOLE_SCREENSHOTS=docs/console`` (``make console-screenshots``) writes a PNG of each screen there;
otherwise they go to the test's temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from e2e.conftest import MeshHandle
from e2e.support import US_ADDRESS, Rest, confirm, fill_cart, make_catalog
from playwright.async_api import Browser, Page, async_playwright, expect

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
        return {
            "order_id": confirmed["orderId"],
            "session_id": session_id,
            "customer_id": customer_id,
            "sku": skus[0],
        }
    finally:
        await admin.close()
        await customer.close()


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

    # Searching by the order id goes straight to the same page; signing out forgets the token.
    await page.get_by_role("link", name="Orders").click()
    await expect(page.locator("#screen")).to_contain_text("Opened in this tab")
    await page.screenshot(path=shots / "order-search.png", full_page=True)
    await page.get_by_label("Order, session or customer id").fill(order["order_id"])
    await page.get_by_role("button", name="Find").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(order["order_id"])
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('kassa.console.token')") is None
