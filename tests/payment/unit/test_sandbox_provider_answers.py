"""Whatever the provider answers, the adapter raises one of the ProviderError kinds, never anything else: an
answer it cannot read is an unknown outcome (ProviderUnavailable), which payment maps to UNAVAILABLE.

The answers come from a real HTTP server on 127.0.0.1 (aiohttp's ``RawTestServer``, a free port), reached over the
network by the adapter's own session: a refused connection, a connection broken mid-answer and an answer too late
are the real thing, not a transport's exceptions raised by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import RawTestServer

from devstack.localstack import free_port
from payment.adapter.sandbox_provider import SandboxProvider, provider_session
from payment.model.provider import IntentRequest, ProviderDeclined, ProviderRejected, ProviderUnavailable

_REQUEST = IntentRequest(amount_minor=100, currency_code="USD", payment_method="tok_visa", return_url="")
_INTENT = {"id": "pi_1", "object": "payment_intent", "status": "requires_capture", "amount": 100}
_DOWN = {"error": {"code": "service_unavailable", "message": "down"}}

# Each call's timeout: ample for a loopback answer on a loaded machine, short enough for the late answer's test.
_TIMEOUT = 1.5

Answer = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def _json(status: int, body: Any) -> Answer:
    async def answer(_request: web.BaseRequest) -> web.StreamResponse:
        return web.json_response(body, status=status)

    return answer


def _raw(status: int, body: bytes) -> Answer:
    async def answer(_request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(status=status, body=body, content_type="text/html")

    return answer


async def _broken(request: web.BaseRequest) -> web.StreamResponse:
    """Promises 100 bytes, sends 7, and hangs up."""
    response = web.StreamResponse(headers={"Content-Length": "100", "Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(b'{"id": ')
    assert request.transport is not None
    request.transport.close()
    return response


async def _late(_request: web.BaseRequest) -> web.StreamResponse:
    await asyncio.sleep(4 * _TIMEOUT)
    return web.json_response(_INTENT)


class Provider:
    """A provider on 127.0.0.1 answering each post with the next answer (the last one again once they run out).

    It can be down: its port is then free and a post to it is refused. ``seen`` holds each request it received.
    """

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.seen: list[web.BaseRequest] = []
        self.client_ports: list[int] = []  # the client's end of the connection each request came on
        self.port = free_port()
        self._server: RawTestServer | None = None

    async def up(self) -> None:
        self._server = RawTestServer(self._answer, host="127.0.0.1", port=self.port)
        await self._server.start_server()

    async def down(self) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _answer(self, request: web.BaseRequest) -> web.StreamResponse:
        answer = self.answers[min(len(self.seen), len(self.answers) - 1)]
        await request.read()
        self.seen.append(request)
        assert request.transport is not None
        self.client_ports.append(int(request.transport.get_extra_info("peername")[1]))
        return await answer(request)


class Adapters:
    """Opens SandboxProviders over ``provider_session`` (``_TIMEOUT``) and closes their sessions at the end."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self._sessions: list[aiohttp.ClientSession] = []

    def over(
        self,
        provider: Provider,
        *,
        attempts: int = 3,
        path: str = "",
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> SandboxProvider:
        session = provider_session(provider.url + path, _TIMEOUT)
        self._sessions.append(session)

        async def record(seconds: float) -> None:
            self.waits.append(seconds)
            if sleep is not None:
                await sleep(seconds)

        return SandboxProvider(session, "secret", attempts=attempts, sleep=record)

    async def close(self) -> None:
        for session in self._sessions:
            await session.close()


@pytest_asyncio.fixture
async def adapters() -> AsyncIterator[Adapters]:
    opened = Adapters()
    yield opened
    await opened.close()


@pytest_asyncio.fixture
async def started() -> AsyncIterator[list[Provider]]:
    """Providers a test starts; each is stopped at the end."""
    providers: list[Provider] = []
    yield providers
    for provider in providers:
        await provider.down()


async def _up(started: list[Provider], *answers: Answer) -> Provider:
    provider = Provider(*answers)
    await provider.up()
    started.append(provider)
    return provider


@pytest.mark.parametrize(
    "answer",
    [
        _raw(200, b"<html>maintenance</html>"),
        _json(200, ["not", "an", "object"]),
        _json(200, {"object": "payment_intent"}),  # no id
        _json(200, {"id": "pi_1", "amount": "lots"}),
        _json(503, _DOWN),
        _raw(502, b"Bad Gateway"),
    ],
    ids=["html", "json-list", "no-id", "bad-amount", "503", "502"],
)
async def test_an_unreadable_or_failed_answer_is_an_unknown_outcome(
    answer: Answer, adapters: Adapters, started: list[Provider]
) -> None:
    adapter = adapters.over(await _up(started, answer), attempts=1)
    with pytest.raises(ProviderUnavailable):
        await adapter.create_intent(_REQUEST, "key-1")
    with pytest.raises(ProviderUnavailable):
        await adapter.capture("pi_1", 100, "key-2")


async def test_an_unreadable_refund_answer_is_an_unknown_outcome(adapters: Adapters, started: list[Provider]) -> None:
    adapter = adapters.over(await _up(started, _json(200, {"object": "refund"})), attempts=1)
    with pytest.raises(ProviderUnavailable):
        await adapter.refund("pi_1", 100, "key-3")


async def test_a_connection_broken_mid_answer_is_an_unknown_outcome_posted_once(
    adapters: Adapters, started: list[Provider]
) -> None:
    provider = await _up(started, _broken)
    with pytest.raises(ProviderUnavailable) as broken:
        await adapters.over(provider).cancel("pi_1", "key-4")
    assert broken.value.code == "network_error" and len(provider.seen) == 1 and adapters.waits == []


async def test_a_refusal_is_a_rejection_and_a_decline_a_decline(adapters: Adapters, started: list[Provider]) -> None:
    refusal = _json(404, {"error": {"code": "resource_missing", "message": "No such payment_intent"}})
    with pytest.raises(ProviderRejected) as rejected:
        await adapters.over(await _up(started, refusal)).get_intent("pi_missing")
    assert rejected.value.code == "resource_missing"
    decline = {"error": {"code": "card_declined", "decline_code": "insufficient_funds", "message": "no",
                         "payment_intent": {**_INTENT, "id": "pi_9", "status": "requires_payment_method"}}}  # fmt: skip
    with pytest.raises(ProviderDeclined) as declined:
        await adapters.over(await _up(started, _json(402, decline))).create_intent(_REQUEST, "key-5")
    assert declined.value.code == "insufficient_funds" and declined.value.intent_id == "pi_9"


@pytest.mark.parametrize(
    ("answer", "kind", "code"),
    [
        (_raw(409, b"Conflict"), ProviderRejected, "http_409"),
        (_json(400, ["not", "an", "object"]), ProviderRejected, "http_400"),
        (_json(400, {"error": "a string"}), ProviderRejected, "http_400"),
        (
            _json(402, {"error": {"code": "card_declined", "payment_intent": {"amount": 1}}}),
            ProviderDeclined,
            "card_declined",
        ),
    ],
    ids=["not-json", "json-list", "error-not-object", "unreadable-intent"],
)
async def test_an_unreadable_refusal_is_still_a_refusal(
    answer: Answer, kind: type[Exception], code: str, adapters: Adapters, started: list[Provider]
) -> None:
    """What the refusal says may be unreadable; that it is a refusal (4xx) is not."""
    with pytest.raises(kind) as refused:
        await adapters.over(await _up(started, answer)).create_intent(_REQUEST, "key-6")
    assert getattr(refused.value, "code", None) == code


async def test_calls_go_under_the_base_urls_path_with_the_key_and_no_redirect_followed(
    adapters: Adapters, started: list[Provider]
) -> None:
    provider = await _up(started, _json(200, _INTENT))
    adapter = adapters.over(provider, path="/processor/")
    await adapter.capture("pi_1", 100, "key-7")
    await adapter.find_intent("key-8")
    assert [str(r.rel_url) for r in provider.seen] == [
        "/processor/v1/payment_intents/pi_1/capture",
        "/processor/v1/payment_intents?idempotency_key=key-8",
    ]
    assert provider.seen[0].headers["Idempotency-Key"] == "key-7" and "Idempotency-Key" not in provider.seen[1].headers

    async def moved(_request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(status=307, headers={"Location": "/elsewhere"})

    elsewhere = await _up(started, moved, _json(200, _INTENT))
    with pytest.raises(ProviderUnavailable):  # a 3xx is not a JSON object: unknown, and not followed
        await adapters.over(elsewhere).create_intent(_REQUEST, "key-9")
    assert len(elsewhere.seen) == 1


async def test_an_answer_at_once_is_one_post(adapters: Adapters, started: list[Provider]) -> None:
    provider = await _up(started, _json(200, _INTENT))
    assert (await adapters.over(provider).create_intent(_REQUEST, "key-1")).intent_id == "pi_1"
    assert len(provider.seen) == 1 and adapters.waits == []


async def test_no_connection_or_a_5xx_is_posted_again_with_growing_waits(adapters: Adapters) -> None:
    """The provider is down at the first post (refused), up and failing at the second (503), well at the third."""
    provider = Provider(_json(503, _DOWN), _json(200, _INTENT))

    async def come_up_after_the_first_post(_seconds: float) -> None:
        if len(adapters.waits) == 1:
            await provider.up()

    adapter = adapters.over(provider, sleep=come_up_after_the_first_post)
    try:
        assert (await adapter.create_intent(_REQUEST, "key-1")).intent_id == "pi_1"
    finally:
        await provider.down()
    assert len(provider.seen) == 2 and all(r.headers["Idempotency-Key"] == "key-1" for r in provider.seen)
    # Before the second post 0.05 s plus up to 0.1 s of jitter, before the third 0.1 s plus jitter.
    waits = adapters.waits
    assert len(waits) == 2 and 0.05 <= waits[0] <= 0.15 and 0.1 <= waits[1] <= 0.2


async def test_every_post_failing_is_an_unknown_outcome_after_the_attempts(
    adapters: Adapters, started: list[Provider]
) -> None:
    provider = await _up(started, _json(503, _DOWN))
    with pytest.raises(ProviderUnavailable) as unavailable:
        await adapters.over(provider).create_intent(_REQUEST, "key-1")
    assert unavailable.value.code == "service_unavailable" and len(provider.seen) == 3 and len(adapters.waits) == 2
    never_up = Provider(_json(200, _INTENT))
    with pytest.raises(ProviderUnavailable) as no_connection:
        await adapters.over(never_up).capture("pi_1", 100, "key-2")
    assert no_connection.value.code == "network_error" and len(adapters.waits) == 4


async def test_a_4xx_or_a_timeout_is_never_posted_again(adapters: Adapters, started: list[Provider]) -> None:
    rejected = await _up(started, _json(400, {"error": {"code": "parameter_invalid", "message": "no"}}))
    with pytest.raises(ProviderRejected):
        await adapters.over(rejected).create_intent(_REQUEST, "key-1")
    late = await _up(started, _late)
    with pytest.raises(ProviderUnavailable) as timed_out:
        await adapters.over(late).create_intent(_REQUEST, "key-1")
    assert timed_out.value.code == "timeout"
    assert len(rejected.seen) == 1 and len(late.seen) == 1 and adapters.waits == []


async def test_a_connection_idle_for_4_s_is_not_used_again(adapters: Adapters, started: list[Provider]) -> None:
    """Under the 5 s a server such as uvicorn keeps an idle connection: one the server may be closing is not used."""
    provider = await _up(started, _json(200, _INTENT))
    adapter = adapters.over(provider)
    for pause in (0.0, 0.1, 4.2):
        await asyncio.sleep(pause)
        await adapter.get_intent("pi_1")
    ports = provider.client_ports
    assert len(ports) == 3 and ports[0] == ports[1] != ports[2]
