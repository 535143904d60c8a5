"""The local stack's SMTP sink: a real SMTP server (aiosmtpd) on loopback that keeps every message it gets.

Why: the notification service sends real email over SMTP, and locally (``kassa up``, the tests) there must be
a server that takes it and lets a person or a test read what was sent, without any mail leaving the machine.
Each accepted message is written to ``<mail_dir>/<time>-<id>.eml`` (written to a temporary name first and
renamed, so a reader never sees half a message); ``kassa mail`` lists and shows them, and :func:`read_mailbox`
parses them.

Like the sandbox payment provider's test tokens, some recipients behave like a real mail system's bad days:
a local part starting with ``bounce`` is refused for good (550) and one starting with ``defer`` is deferred
(451), so the service's retries and dead letters can be seen. Its log names no recipient.

Run as ``python -m devstack.smtp_sink --port N --dir DIR`` (the local stack does).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import logging
import os
import signal
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

__all__ = ["MailboxMessage", "main", "read_mailbox", "serve"]

log = logging.getLogger("kassa.smtp_sink")

HOST = "127.0.0.1"


class _Keeper:
    def __init__(self, mail_dir: Path) -> None:
        self._dir = mail_dir

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        local = address.rpartition("@")[0].lower()
        if local.startswith("bounce"):
            return "550 5.1.1 mailbox unavailable (sink: bounce*)"
        if local.startswith("defer"):
            return "451 4.3.0 try again later (sink: defer*)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
        tmp = self._dir / f".{name}.tmp"
        tmp.write_bytes(envelope.original_content or envelope.content)
        os.replace(tmp, self._dir / f"{name}.eml")
        log.info("stored message %s (%d recipients)", name, len(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


async def serve(mail_dir: Path, port: int, host: str = HOST) -> None:
    from aiosmtpd.smtp import SMTP

    keeper = _Keeper(mail_dir)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(keeper, hostname="kassa-sink", ident="Kassa SMTP sink"), host, port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("SMTP sink listening on %s:%d, keeping mail in %s", host, port, mail_dir)
    async with server:
        await stop.wait()


@dataclass(frozen=True)
class MailboxMessage:
    """One message the sink kept: ``key`` is its file name without ``.eml``."""

    key: str
    path: Path
    message: EmailMessage

    @property
    def to(self) -> str:
        return str(self.message.get("To", ""))

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    @property
    def message_id(self) -> str:
        return str(self.message.get("Message-ID", ""))

    @property
    def date(self) -> datetime | None:
        raw = self.message.get("Date")
        with contextlib.suppress(TypeError, ValueError):
            return parsedate_to_datetime(str(raw)) if raw else None
        return None

    def body(self, subtype: str = "plain") -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        return "" if part is None else str(part.get_content())


def read_mailbox(mail_dir: Path) -> list[MailboxMessage]:
    """Every message the sink kept in ``mail_dir``, oldest first (empty when there is none)."""
    if not mail_dir.is_dir():
        return []
    found = []
    for path in sorted(mail_dir.glob("*.eml")):
        with path.open("rb") as f:
            parsed = email.message_from_binary_file(f, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        found.append(MailboxMessage(path.stem, path, parsed))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.smtp_sink", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True, help="where messages are kept")
    parser.add_argument("--host", default=HOST)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # aiosmtpd logs every SMTP command at INFO, recipients included: personal data stays out of the logs.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    mail_dir = Path(args.dir)
    mail_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(mail_dir, args.port, args.host))


if __name__ == "__main__":
    main()
