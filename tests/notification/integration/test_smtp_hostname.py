"""The name the sender gives in EHLO: the host's FQDN (aiosmtplib's own default), looked up once per process, not
in a worker thread on every connection. A real aiosmtpd server records what each connection said."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from aiosmtpd.smtp import SMTP

from devstack.localstack import free_port
from notification.adapter.smtp_sender import SmtpEmailSender, SmtpSettings
from notification.model.message import OutgoingMessage

pytestmark = pytest.mark.integration


@dataclass
class Greetings:
    """The EHLO name of the connection each message came over."""

    names: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.names.append(session.host_name)
        return "250 OK"


@pytest_asyncio.fixture(loop_scope="session")
async def smtp_url() -> AsyncIterator[tuple[str, Greetings]]:
    handler = Greetings()
    port = free_port()
    # A hostname of its own: aiosmtpd would otherwise look up the FQDN for every connection too.
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler, hostname="smtp.kassa.test"), "127.0.0.1", port
    )
    try:
        yield f"smtp://127.0.0.1:{port}", handler
    finally:
        server.close()


async def test_each_message_says_the_fqdn_looked_up_once(
    smtp_url: tuple[str, Greetings], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, greetings = smtp_url
    lookups: list[str] = []

    def getfqdn(name: str = "") -> str:
        lookups.append(name)
        return "mail-client.kassa.test"

    monkeypatch.setattr(socket, "getfqdn", getfqdn)
    # A connection per message (no reuse), so each of the three would say EHLO with a name of its own lookup.
    sender = SmtpEmailSender(SmtpSettings.from_url(url), "Kassa <orders@kassa.localhost>", idle_seconds=0)
    try:
        for _ in range(3):
            await sender.send(
                OutgoingMessage(f"<{uuid.uuid4()}@notification.kassa>", "ada@example.com", "s", "t", "<p/>")
            )
    finally:
        await sender.aclose()
    assert greetings.names == ["mail-client.kassa.test"] * 3
    assert lookups == [""]
