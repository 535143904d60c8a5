"""SmtpEmailSender: the email channel of the Sender port, over SMTP with aiosmtplib.

Each message goes out as a multipart/alternative (plain text, then HTML) with the Message-ID the use case
chose, so every attempt at one notice carries the same id. Transient failures (no connection, a timeout, a
4xx answer) are retried here with exponential backoff and jitter (tenacity) within ``retry_seconds``; what is
still failing then, and any 5xx answer, is reported as :class:`DeliveryFailed` (permanent for 5xx), and the
use case decides between a later redelivery and the dead-letter table. The one exception is a connection that
times out or drops once the message has been handed over (DATA): the server may have accepted it, so it is
not sent again at once but reported as a temporary failure at once, and comes back with the use case's
backoff (with the same Message-ID). Error texts carry the SMTP code and
never the server's own words, which quote the recipient's address.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_random_exponential

from notification.biz.ports import DeliveryFailed
from notification.model.message import Channel, OutgoingMessage

__all__ = ["SmtpEmailSender", "SmtpSettings"]


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """``smtp://[user:pass@]host:port`` (plain, STARTTLS if the server offers it), ``smtp+starttls://`` (STARTTLS
    required) or ``smtps://`` (TLS from the first byte)."""

    hostname: str
    port: int
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False
    start_tls: bool | None = None

    @staticmethod
    def from_url(url: str) -> SmtpSettings:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps", "smtp+starttls") or not parts.hostname:
            raise ValueError("KASSA_SMTP_URL must be smtp://host:port, smtp+starttls://host:port or smtps://host:port")
        default_port = 465 if parts.scheme == "smtps" else 587 if parts.scheme == "smtp+starttls" else 25
        return SmtpSettings(
            hostname=parts.hostname,
            port=parts.port or default_port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=parts.scheme == "smtps",
            start_tls=True if parts.scheme == "smtp+starttls" else None,
        )


class _Transient(Exception):
    pass


class _MaybeDelivered(TimeoutError):
    """The connection timed out or dropped during DATA: the server may have taken the message.
    A TimeoutError, so the client's ``async with`` closes the connection without a QUIT."""


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client, telling a failure during DATA from one before it."""

    async def data(self, *args: Any, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        try:
            return await super().data(*args, **kwargs)
        except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected, OSError, TimeoutError) as exc:
            raise _MaybeDelivered(type(exc).__name__) from None

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, traceback: Any) -> None:
        if isinstance(exc, asyncio.CancelledError):
            # Cut off (the consumer's handler timeout): drop the connection, no QUIT that could wait a full timeout.
            self.close()
            return
        await super().__aexit__(exc_type, exc, traceback)


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, _Transient)


class SmtpEmailSender:
    channel = Channel.EMAIL.value

    def __init__(
        self,
        smtp: SmtpSettings,
        sender: str,
        *,
        timeout_seconds: float = 10.0,
        attempts: int = 3,
        retry_seconds: float = 20.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._smtp = smtp
        self._from = sender
        self._timeout = timeout_seconds
        self._attempts = attempts
        self._retry_seconds = retry_seconds
        self._tls = tls_context
        self._local_hostname: str | None = None

    def _email(self, message: OutgoingMessage) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self._from
        email["To"] = message.recipient
        email["Subject"] = message.subject
        email["Message-ID"] = message.message_id
        email["Date"] = formatdate(localtime=False, usegmt=True)
        email.set_content(message.text)
        email.add_alternative(message.html, subtype="html")
        return email

    async def send(self, message: OutgoingMessage) -> None:
        email = self._email(message)
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(_transient),
                stop=stop_after_attempt(self._attempts) | stop_after_delay(self._retry_seconds),
                wait=wait_random_exponential(multiplier=0.5, max=5),
                reraise=True,
            ):
                with attempt:
                    await self._once(email)
        except _Transient as exc:
            raise DeliveryFailed(str(exc), permanent=False) from None
        except _MaybeDelivered as exc:
            raise DeliveryFailed(
                f"SMTP {exc} after DATA: the server may have accepted the message", permanent=False
            ) from None

    async def _hostname(self) -> str:
        """The name this client gives in EHLO: aiosmtplib's default (the host's FQDN), looked up once per process
        instead of in a worker thread on every connection."""
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        return self._local_hostname

    async def _once(self, email: EmailMessage) -> None:
        s = self._smtp
        client = _Client(
            local_hostname=await self._hostname(),
            hostname=s.hostname,
            port=s.port,
            username=s.username,
            password=s.password,
            use_tls=s.use_tls,
            start_tls=s.start_tls,
            timeout=self._timeout,
            tls_context=self._tls,
        )
        try:
            async with client:
                await client.send_message(email)
        except _MaybeDelivered:
            raise
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = sorted({r.code for r in exc.recipients})
            if all(400 <= c < 500 for c in codes):
                raise _Transient(f"SMTP {codes}: recipient deferred") from None
            raise DeliveryFailed(f"SMTP {codes}: recipient refused", permanent=True) from None
        except aiosmtplib.SMTPResponseException as exc:
            # A refused login or sender is this service's configuration, not the message: worth retrying.
            configuration = isinstance(exc, aiosmtplib.SMTPAuthenticationError | aiosmtplib.SMTPSenderRefused)
            if 400 <= exc.code < 500 or configuration:
                raise _Transient(f"SMTP {exc.code}: {type(exc).__name__}") from None
            raise DeliveryFailed(f"SMTP {exc.code}: {type(exc).__name__}", permanent=True) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise _Transient(f"SMTP server unreachable: {type(exc).__name__}") from None
