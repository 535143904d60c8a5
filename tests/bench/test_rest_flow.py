"""bench.flow.RestCheckout against a stand-in gateway on loopback (a real HTTP server): what it sends, what it
reports to ``on_exchange`` (the admission bench's refusals), and how a refusal ends the flow."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import RawTestServer

from bench.admission import Recorder
from bench.flow import FlowError, FlowOutcome, HttpExchange, RestCheckout

pytestmark = pytest.mark.unit

_TOTAL = {"currencyCode": "USD", "amountMinor": "7"}
_OUT_OF_STOCK = {
    "code": 9,
    "message": "out of stock",
    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "OUT_OF_STOCK"}],
}


class Gateway:
    """Answers the REST flow as the gateway would; ``refuse`` maps a path to (status, body, headers)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str], Any]] = []
        self.refuse: dict[str, tuple[int, bytes, dict[str, str]]] = {}

    async def answer(self, request: web.BaseRequest) -> web.StreamResponse:
        raw = await request.read()
        self.seen.append((request.method, request.path, dict(request.headers), json.loads(raw) if raw else None))
        if request.path in self.refuse:
            status, body, headers = self.refuse[request.path]
            return web.Response(status=status, body=body, headers=headers, content_type="application/json")
        answers: dict[str, Any] = {
            "/v1/auth/guest": {"token": "guest-token"},
            "/v1/carts": {"cart": {"cartId": "c1"}},
            "/v1/carts/c1/items": {"cart": {"cartId": "c1"}},
            "/v1/checkout/start": {"session": {"sessionId": "s1"}},
            "/v1/checkout/state": {"session": {"sessionId": "s1"}},
            "/v1/checkout/sessions/s1/preview": {"preview": {"grandTotal": _TOTAL}},
            "/v1/checkout/confirm": {"orderStatus": "ORDER_STATUS_CONFIRMED", "orderId": "o1"},
        }
        return web.json_response(answers[request.path])


@pytest_asyncio.fixture
async def gateway() -> AsyncIterator[tuple[Gateway, aiohttp.ClientSession]]:
    stand_in = Gateway()
    server = RawTestServer(stand_in.answer, host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession(base_url=str(server.make_url("/"))) as session:
        yield stand_in, session
    await server.close()


async def test_a_checkout_sends_the_flow_and_reports_each_exchange(
    gateway: tuple[Gateway, aiohttp.ClientSession],
) -> None:
    stand_in, session = gateway
    exchanges: list[HttpExchange] = []
    outcome = await RestCheckout(session, timeout=5, on_exchange=exchanges.append).run(["A", "B"], FlowOutcome())
    assert (outcome.session_id, outcome.order_id) == ("s1", "o1")
    assert [(method, path) for method, path, _, _ in stand_in.seen] == [
        ("POST", "/v1/auth/guest"),
        ("POST", "/v1/carts"),
        ("POST", "/v1/carts/c1/items"),
        ("POST", "/v1/carts/c1/items"),
        ("POST", "/v1/checkout/start"),
        ("PUT", "/v1/checkout/state"),
        ("GET", "/v1/checkout/sessions/s1/preview"),
        ("POST", "/v1/checkout/confirm"),
    ]
    assert [body["sku"] for _, path, _, body in stand_in.seen if path.endswith("/items")] == ["A", "B"]
    assert all(headers["Authorization"] == "Bearer guest-token" for _, _, headers, _ in stand_in.seen[1:])
    _, _, confirm_headers, confirm_body = stand_in.seen[-1]
    assert confirm_headers["Idempotency-Key"] and confirm_body["expectedGrandTotal"]["amountMinor"] == "7"
    assert [e.status for e in exchanges] == [200] * 8 and all(e.seconds > 0 for e in exchanges)
    assert sorted(outcome.steps) == ["add_item", "confirm", "create_cart", "guest", "preview", "start", "update"]


async def test_a_refusal_ends_the_flow_with_its_reason_and_the_recorder_keeps_it(
    gateway: tuple[Gateway, aiohttp.ClientSession],
) -> None:
    stand_in, session = gateway
    stand_in.refuse["/v1/checkout/start"] = (409, json.dumps(_OUT_OF_STOCK).encode(), {})
    busy = {"code": 14, "message": "the gateway is at capacity", "details": [{"metadata": {"why": "queue_delay"}}]}
    stand_in.refuse["/v1/carts"] = (503, json.dumps(busy).encode(), {"Retry-After": "2"})
    recorder = Recorder()
    with pytest.raises(FlowError) as refused:
        await RestCheckout(session, timeout=5, on_exchange=recorder.record).run(["A"], FlowOutcome())
    assert refused.value.key == "create_cart: HTTP 503"
    del stand_in.refuse["/v1/carts"]
    with pytest.raises(FlowError) as sold_out:
        await RestCheckout(session, timeout=5, on_exchange=recorder.record).run(["A"], FlowOutcome())
    assert sold_out.value.key == "start: HTTP 409 OUT_OF_STOCK"
    assert recorder.count == 6  # guest, cart (refused); guest, cart, item, start (refused)
    assert [(e.path, e.status, e.retry_after, e.who) for e in recorder.refused] == [
        ("/v1/carts", 503, "2", "gateway: queue_delay"),
        ("/v1/checkout/start", 409, None, ""),
    ]
