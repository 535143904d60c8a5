"""Whatever the provider answers, the adapter raises one of the ProviderError kinds, never anything else: an
answer it cannot read is an unknown outcome (ProviderUnavailable), which payment maps to UNAVAILABLE."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from payment.adapter.sandbox_provider import SandboxProvider
from payment.model.provider import IntentRequest, ProviderRejected, ProviderUnavailable

_REQUEST = IntentRequest(amount_minor=100, currency_code="USD", payment_method="tok_visa", return_url="")


def _provider(answer: Callable[[httpx.Request], httpx.Response]) -> SandboxProvider:
    client = httpx.AsyncClient(base_url="http://sandbox.test", transport=httpx.MockTransport(answer))
    return SandboxProvider(client, "secret", attempts=1)


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, content=b"<html>maintenance</html>"),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"object": "payment_intent"}),  # no id
        httpx.Response(200, json={"id": "pi_1", "amount": "lots"}),
        httpx.Response(503, json={"error": {"code": "service_unavailable", "message": "down"}}),
        httpx.Response(502, content=b"Bad Gateway"),
    ],
)
async def test_an_unreadable_or_failed_answer_is_an_unknown_outcome(response: httpx.Response) -> None:
    provider = _provider(lambda _request: response)
    with pytest.raises(ProviderUnavailable):
        await provider.create_intent(_REQUEST, "key-1")
    with pytest.raises(ProviderUnavailable):
        await provider.capture("pi_1", 100, "key-2")


async def test_an_unreadable_refund_answer_is_an_unknown_outcome() -> None:
    provider = _provider(lambda _request: httpx.Response(200, json={"object": "refund"}))
    with pytest.raises(ProviderUnavailable):
        await provider.refund("pi_1", 100, "key-3")


async def test_a_broken_transfer_is_an_unknown_outcome() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed the connection mid-answer", request=request)

    with pytest.raises(ProviderUnavailable):
        await _provider(broken).cancel("pi_1", "key-4")


async def test_a_refusal_is_a_rejection() -> None:
    refusal = httpx.Response(404, json={"error": {"code": "resource_missing", "message": "No such payment_intent"}})
    with pytest.raises(ProviderRejected) as raised:
        await _provider(lambda _request: refusal).get_intent("pi_missing")
    assert raised.value.code == "resource_missing"
