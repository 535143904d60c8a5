"""Replaying a dead letter (NotificationService/ReplayDeadLetter, admin): sent once with its own Message-ID, out
of the dead letters, audited; a repeat or a concurrent replay sends nothing more. Through the running
notification service, the real order service, Postgres and the SMTP sink; the dead letter is made by a replica
whose SMTP server is down."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from audit_support import SUCCEEDED, entries_of, new_admin
from helpers import bearer
from notification_support import confirmation, placed_order, replica

from devstack.cli import main
from devstack.localstack import free_port
from devstack.smtp_sink import read_mailbox
from infra.config import Settings
from infra.server import Server
from kassa.notification.v1 import notification_service_pb2 as npb
from kassa.notification.v1.notification_service_pb2_grpc import NotificationServiceStub
from kassa.order.v1.order_service_pb2_grpc import OrderServiceStub
from notification.biz.notify import NotifyPolicy
from notification.model.message import message_id_for

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(loop_scope="session")
async def notification_channel(notification_server: Server) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{notification_server.port}") as channel:
        yield channel


def mails_with(mail_dir: Any, message_id: str) -> int:
    return sum(1 for m in read_mailbox(mail_dir) if m.message_id.strip() == message_id)


async def dead_letter(orders: OrderServiceStub, order_server: Server, token: str, settings: Settings) -> str:
    """A confirmation that could not be sent (its SMTP server down, one attempt allowed): its message id."""
    order = await placed_order(orders, token, f"ada-{uuid.uuid4().hex[:8]}@example.com")
    notice = confirmation(order.order_id)
    down = f"smtp://127.0.0.1:{free_port()}"
    async with replica(settings, order_server.port, down, NotifyPolicy(max_attempts=1)) as r:
        assert await r.notify(notice) == "dead letter"
    return message_id_for(notice, "notification.kassa")


async def replay(channel: grpc.aio.Channel, token: str, message_id: str) -> npb.Message:
    stub = NotificationServiceStub(channel)
    req = npb.ReplayDeadLetterRequest(message_id=message_id)
    return (await stub.ReplayDeadLetter(req, metadata=bearer(token))).message


async def dead_ids(channel: grpc.aio.Channel, token: str) -> set[str]:
    reply = await NotificationServiceStub(channel).ListDeadLetters(
        npb.ListDeadLettersRequest(page_size=500), metadata=bearer(token)
    )
    return {m.message_id for m in reply.messages}


async def test_a_replayed_dead_letter_is_sent_once_and_audited(
    orders: OrderServiceStub,
    order_server: Server,
    *,
    notification_channel: grpc.aio.Channel,
    service_token: str,
    sink: Any,
    settings: Settings,
) -> None:
    message_id = await dead_letter(orders, order_server, service_token, settings)
    actor, admin = new_admin(settings)
    assert message_id in await dead_ids(notification_channel, admin)

    sent = await replay(notification_channel, admin, message_id)
    assert sent.status == npb.MESSAGE_STATUS_SENT and sent.message_id == message_id
    assert mails_with(sink.mail_dir, message_id) == 1
    assert message_id not in await dead_ids(notification_channel, admin)

    # Again: answered as it stands, nothing sent.
    again = await replay(notification_channel, admin, message_id)
    assert again.status == npb.MESSAGE_STATUS_SENT
    assert mails_with(sink.mail_dir, message_id) == 1

    entries = await entries_of(notification_channel, admin, actor)
    replays = [e for e in entries if e.action.endswith("ReplayDeadLetter")]
    assert len(replays) == 2 and all(e.outcome == SUCCEEDED for e in replays)
    assert any(f"messages/{message_id}" in e.targets for e in replays)


async def test_concurrent_replays_send_once(
    orders: OrderServiceStub,
    order_server: Server,
    *,
    notification_channel: grpc.aio.Channel,
    service_token: str,
    sink: Any,
    settings: Settings,
) -> None:
    message_id = await dead_letter(orders, order_server, service_token, settings)
    _, admin = new_admin(settings)
    answers = await asyncio.gather(*(replay(notification_channel, admin, message_id) for _ in range(3)))
    assert {a.message_id for a in answers} == {message_id}
    assert mails_with(sink.mail_dir, message_id) == 1


async def test_replay_checks_its_input_and_its_caller(
    notification_channel: grpc.aio.Channel, customer_token: str, settings: Settings
) -> None:
    _, admin = new_admin(settings)
    for token, message_id, code in (
        (admin, "", grpc.StatusCode.INVALID_ARGUMENT),
        (admin, "<a\x00b@notification.kassa>", grpc.StatusCode.INVALID_ARGUMENT),  # Postgres can't hold a NUL
        (admin, "<" + "x" * 400 + ">", grpc.StatusCode.INVALID_ARGUMENT),
        (admin, "<no-such-message@notification.kassa>", grpc.StatusCode.NOT_FOUND),
        (customer_token, "<no-such-message@notification.kassa>", grpc.StatusCode.PERMISSION_DENIED),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await replay(notification_channel, token, message_id)
        assert refused.value.code() == code


async def test_kassa_mail_replay_sends_a_dead_letter_again(
    orders: OrderServiceStub,
    order_server: Server,
    notification_server: Server,
    *,
    service_token: str,
    sink: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    message_id = await dead_letter(orders, order_server, service_token, settings)
    monkeypatch.setenv("KASSA_NOTIFICATION_ADDR", f"127.0.0.1:{notification_server.port}")
    monkeypatch.setenv("KASSA_JWT_SECRET", settings.jwt_secret)
    assert await asyncio.to_thread(main, ["mail", "--dead", "--limit", "500"]) == 0
    assert message_id in capsys.readouterr().out  # listed among the dead letters before its replay
    assert await asyncio.to_thread(main, ["mail", "--replay", message_id]) == 0
    assert f"{message_id}" in capsys.readouterr().out
    assert mails_with(sink.mail_dir, message_id) == 1
    assert await asyncio.to_thread(main, ["mail", "--replay", "<no-such@notification.kassa>"]) != 0
