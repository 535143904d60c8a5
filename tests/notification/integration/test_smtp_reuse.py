"""The SMTP sender reuses its connection: the next message goes out on the connection the last one left open,
which is closed with a QUIT after an idle time and at shutdown. Reuse keeps the failure semantics: a connection
the server dropped while idle is replaced at once and the message sent once; a failure during DATA on a reused
connection is "maybe delivered" and not sent again at once; a cancelled send drops its connection without QUIT.
A real aiosmtpd server counts connections, QUITs and what it was handed."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from aiosmtpd.smtp import SMTP

import notification.bootstrap
from devstack.localstack import free_port
from infra.config import Settings
from notification.adapter.smtp_sender import SmtpEmailSender, SmtpSettings
from notification.biz.ports import DeliveryFailed
from notification.model.message import OutgoingMessage

pytestmark = pytest.mark.integration

BOUND = 10.0  # how long a test waits for the server to see something before it fails; never a measurement


@dataclass
class Recorder:
    """What the server saw, and the fault it plays on a connection's second (or later) message: ``mail:
    disconnect``, ``mail: 421`` or ``rcpt: 421`` (the connection is gone when the next MAIL or RCPT comes),
    ``data: disconnect`` or
    ``data: silence`` (the message is handed over, the answer never comes), ``data: 421`` (refused, and the
    connection closed)."""

    connections: int = 0
    lost: int = 0
    quits: int = 0
    message_ids: list[str] = field(default_factory=list)
    open: list[Any] = field(default_factory=list)
    fault: str | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # a QUIT or a connection's end

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if server.carried and self.fault == "mail: disconnect":
            server.transport.close()
            return "250 OK"  # never arrives
        if server.carried and self.fault == "mail: 421":
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.4.2 smtp.kassa.test closing connection"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if server.carried and self.fault == "rcpt: 421":
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.4.2 smtp.kassa.test closing connection"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.message_ids.append(str(email.message_from_bytes(envelope.original_content)["Message-ID"]).strip())
        if server.carried and self.fault == "data: disconnect":
            server.transport.close()
            return "250 OK"  # never arrives
        if server.carried and self.fault == "data: silence":
            await self.release.wait()
        if server.carried and self.fault == "data: 421":
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.3.2 smtp.kassa.test closing connection"
        server.carried += 1
        return "250 OK"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.quits += 1
        self.changed.set()
        return "221 Bye"


class _Counting(SMTP):
    def __init__(self, recorder: Recorder) -> None:
        super().__init__(recorder, hostname="smtp.kassa.test")
        self.recorder = recorder
        self.carried = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.recorder.connections += 1
        self.recorder.open.append(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        self.recorder.open.remove(self)
        self.recorder.lost += 1
        self.recorder.changed.set()


@pytest_asyncio.fixture(loop_scope="session")
async def smtp() -> AsyncIterator[tuple[str, Recorder]]:
    recorder = Recorder()
    port = free_port()
    server = await asyncio.get_running_loop().create_server(lambda: _Counting(recorder), "127.0.0.1", port)
    try:
        yield f"smtp://127.0.0.1:{port}", recorder
    finally:
        recorder.release.set()
        server.close()


def message() -> OutgoingMessage:
    return OutgoingMessage(f"<{uuid.uuid4()}.confirmation@notification.kassa>", "ada@example.com", "s", "t", "<p/>")


def sender(url: str, **options: Any) -> SmtpEmailSender:
    return SmtpEmailSender(SmtpSettings.from_url(url), "Kassa <orders@kassa.localhost>", **options)


async def eventually(server: Recorder, condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(BOUND):
        while not condition():
            server.changed.clear()
            await server.changed.wait()


async def test_messages_go_out_over_one_connection_closed_with_quit_at_shutdown(smtp: tuple[str, Recorder]) -> None:
    url, server = smtp
    s = sender(url)
    sent = [message() for _ in range(5)]
    for m in sent:
        await s.send(m)
    assert server.message_ids == [m.message_id for m in sent]
    assert (server.connections, server.quits, server.lost) == (1, 0, 0)
    await s.aclose()
    assert (server.connections, server.quits) == (1, 1)
    await eventually(server, lambda: server.lost == 1)


async def test_concurrent_sends_use_a_connection_each_and_keep_them(smtp: tuple[str, Recorder]) -> None:
    url, server = smtp
    s = sender(url)
    try:
        for _ in range(3):
            await asyncio.gather(s.send(message()), s.send(message()))
        assert len(server.message_ids) == 6 and len(set(server.message_ids)) == 6
        assert server.connections == 2 and server.quits == 0
    finally:
        await s.aclose()
    assert server.quits == 2


async def test_a_connection_idle_for_idle_seconds_is_closed_with_quit(smtp: tuple[str, Recorder]) -> None:
    url, server = smtp
    s = sender(url, idle_seconds=0.05)
    try:
        await s.send(message())
        await eventually(server, lambda: server.quits == 1 and server.lost == 1)
        await s.send(message())  # on a new connection
        assert (server.connections, len(server.message_ids)) == (2, 2)
    finally:
        await s.aclose()


async def test_without_idle_seconds_each_message_has_its_own_connection(smtp: tuple[str, Recorder]) -> None:
    url, server = smtp
    s = sender(url, idle_seconds=0)
    for _ in range(3):
        await s.send(message())
    assert (server.connections, server.quits, len(server.message_ids)) == (3, 3, 3)
    await s.aclose()
    assert server.quits == 3


async def test_a_connection_the_server_closed_while_idle_is_replaced(smtp: tuple[str, Recorder]) -> None:
    url, server = smtp
    s = sender(url, attempts=1)  # the replacement is no failed attempt: there is no second one
    try:
        await s.send(message())
        for connection in list(server.open):  # the server's own idle timeout
            connection.transport.close()
        await eventually(server, lambda: server.lost == 1)
        second = message()
        await s.send(second)
        assert server.message_ids[-1] == second.message_id and server.message_ids.count(second.message_id) == 1
        assert server.connections == 2
    finally:
        await s.aclose()


@pytest.mark.parametrize("fault", ["mail: disconnect", "mail: 421", "rcpt: 421"])
async def test_a_connection_found_dropped_at_mail_is_replaced_and_the_message_sent_once(
    smtp: tuple[str, Recorder], fault: str
) -> None:
    url, server = smtp
    s = sender(url, attempts=1)  # the replacement is no failed attempt: there is no second one
    try:
        await s.send(message())
        server.fault = fault
        second = message()
        await s.send(second)
        assert server.message_ids.count(second.message_id) == 1
        assert server.connections == 2
        third = message()
        await s.send(third)  # the replacement is kept and reused in turn
        assert server.message_ids.count(third.message_id) == 1
    finally:
        await s.aclose()


@pytest.mark.parametrize("fault", ["data: disconnect", "data: silence"])
async def test_a_failure_during_data_on_a_reused_connection_is_not_resent_at_once(
    smtp: tuple[str, Recorder], fault: str
) -> None:
    url, server = smtp
    s = sender(url, timeout_seconds=0.5)
    try:
        await s.send(message())
        server.fault = fault
        second = message()
        with pytest.raises(DeliveryFailed) as failed:
            await s.send(second)
        assert not failed.value.permanent and "after DATA" in str(failed.value)
        # Handed over once, on the reused connection: not sent again on a new one.
        assert server.message_ids.count(second.message_id) == 1
        assert server.connections == 1
        server.fault = None
        server.release.set()
        await s.send(message())  # the connection that failed is not reused
        assert server.connections == 2
    finally:
        await s.aclose()


async def test_a_refusal_of_data_on_a_reused_connection_is_retried_with_backoff_not_at_once(
    smtp: tuple[str, Recorder],
) -> None:
    url, server = smtp
    s = sender(url, attempts=1)  # one attempt: a send again at once would show as a second copy or connection
    try:
        await s.send(message())
        server.fault = "data: 421"
        second = message()
        with pytest.raises(DeliveryFailed) as failed:
            await s.send(second)
        assert not failed.value.permanent and "421" in str(failed.value)
        assert server.message_ids.count(second.message_id) == 1
        assert server.connections == 1
    finally:
        await s.aclose()


async def test_a_send_cut_off_on_a_reused_connection_drops_it_without_quit(smtp: tuple[str, Recorder]) -> None:
    url, server = smtp
    s = sender(url, timeout_seconds=30.0)
    try:
        await s.send(message())
        server.fault = "data: silence"
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):  # what infra.consumer does to a handler that runs too long
                await s.send(message())
        await eventually(server, lambda: server.lost == 1)
        assert server.quits == 0
        server.fault = None
        server.release.set()
        await s.send(message())
        assert server.connections == 2
    finally:
        await s.aclose()


async def test_the_service_closes_its_connection_at_shutdown(
    smtp: tuple[str, Recorder], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, server = smtp
    made: list[SmtpEmailSender] = []

    class Recording(SmtpEmailSender):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(notification.bootstrap, "SmtpEmailSender", Recording)
    async with AsyncExitStack() as stack:
        await notification.bootstrap.bootstrap(dataclasses.replace(settings, smtp_url=url), stack)
        [s] = made
        await s.send(message())
        await s.send(message())
        assert (server.connections, server.quits) == (1, 0)
    assert server.quits == 1
    await eventually(server, lambda: server.lost == 1)
