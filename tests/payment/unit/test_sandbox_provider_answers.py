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


_INTENT = {"id": "pi_1", "object": "payment_intent", "status": "requires_capture", "amount": 100}


class _Answers:
    """Answers each post in turn (a response, or an exception raised as the transport's), and counts them."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.posts = 0

    def __call__(self, _request: httpx.Request) -> httpx.Response:
        answer = self.answers[min(self.posts, len(self.answers) - 1)]
        self.posts += 1
        if isinstance(answer, Exception):
            raise answer
        return answer


def _retrying(answers: _Answers, waits: list[float], attempts: int = 3) -> SandboxProvider:
    """A provider over ``answers`` that records its waits between posts in ``waits`` instead of sleeping them."""

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    client = httpx.AsyncClient(base_url="http://sandbox.test", transport=httpx.MockTransport(answers))
    return SandboxProvider(client, "secret", attempts=attempts, sleep=sleep)


@pytest.fixture
def waits() -> list[float]:
    """The waits between posts (see ``_retrying``)."""
    return []


async def test_an_answer_at_once_is_one_post(waits: list[float]) -> None:
    answers = _Answers(httpx.Response(200, json=_INTENT))
    assert (await _retrying(answers, waits).create_intent(_REQUEST, "key-1")).intent_id == "pi_1"
    assert answers.posts == 1 and waits == []


async def test_a_5xx_or_no_connection_is_posted_again_with_growing_waits(waits: list[float]) -> None:
    down = httpx.Response(503, json={"error": {"code": "service_unavailable", "message": "down"}})
    answers = _Answers(down, httpx.ConnectError("refused"), httpx.Response(200, json=_INTENT))
    assert (await _retrying(answers, waits).create_intent(_REQUEST, "key-1")).intent_id == "pi_1"
    assert answers.posts == 3
    # Before the second post 0.05 s plus up to 0.1 s of jitter, before the third 0.1 s plus jitter.
    assert len(waits) == 2 and 0.05 <= waits[0] <= 0.15 and 0.1 <= waits[1] <= 0.2


async def test_every_post_failing_is_an_unknown_outcome_after_the_attempts(waits: list[float]) -> None:
    down = httpx.Response(503, json={"error": {"code": "service_unavailable", "message": "down"}})
    answers = _Answers(down)
    with pytest.raises(ProviderUnavailable) as unavailable:
        await _retrying(answers, waits).create_intent(_REQUEST, "key-1")
    assert unavailable.value.code == "service_unavailable" and answers.posts == 3 and len(waits) == 2
    refused = _Answers(httpx.ConnectError("refused"))
    with pytest.raises(ProviderUnavailable) as no_connection:
        await _retrying(refused, waits, attempts=1).capture("pi_1", 100, "key-2")
    assert no_connection.value.code == "network_error" and refused.posts == 1


async def test_a_4xx_or_a_timeout_is_never_posted_again(waits: list[float]) -> None:
    rejected = _Answers(httpx.Response(400, json={"error": {"code": "parameter_invalid", "message": "no"}}))
    with pytest.raises(ProviderRejected):
        await _retrying(rejected, waits).create_intent(_REQUEST, "key-1")
    late = _Answers(httpx.ReadTimeout("late"))
    with pytest.raises(ProviderUnavailable) as timed_out:
        await _retrying(late, waits).create_intent(_REQUEST, "key-1")
    assert timed_out.value.code == "timeout"
    assert rejected.posts == 1 and late.posts == 1 and waits == []
