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

Connections are reused: a message goes out on a connection a previous one left open (MAIL, RCPT, DATA; no
connect, EHLO, STARTTLS or login, no QUIT), which is closed with a QUIT once it has been idle for
``idle_seconds`` (30 s by default, well under the 5 minutes RFC 5321 §4.5.3.2.7 asks a server to wait for a
command; a server that closes it sooner is noticed and the connection dropped) and at shutdown
(:meth:`SmtpEmailSender.aclose`). The senders sharing one instance (the order and payment event consumers, each
one message at a time, and the replay RPC) are not serialised behind one connection, which would let one slow
send hold up the others within their handler timeouts: each send takes an idle connection or opens one, and
gives it back when its transaction succeeded; up to ``max_idle`` (2, one per consumer) are kept. A connection
whose send failed is not reused (QUIT, or dropped on a connection error, a timeout or a cancellation, as
before). Reuse keeps the failure semantics above: a connection the server dropped while it was idle (a
disconnect, or a 421 "closing channel" answer, before DATA) cannot have taken the message, so it is sent again
at once on a new connection, without counting as a failed attempt; a failure during or after DATA on a reused
connection is "maybe delivered", as on a new one, and is not sent again at once.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass, field
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import formataddr, formatdate, parseaddr
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_random_exponential

from notification.biz.ports import DeliveryFailed
from notification.model.message import Channel, OutgoingMessage

__all__ = ["SmtpEmailSender", "SmtpSettings", "build_email"]

# The longest a QUIT is waited for (or the send timeout, if shorter).
_QUIT_TIMEOUT_SECONDS = 2.0

# Bodies in UTF-8, quoted-printable: 7-bit safe, and readable in the raw.
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP


def build_email(sender: str, message: OutgoingMessage) -> Message:
    """The message as a multipart/alternative: plain text, then HTML, both UTF-8.

    Built with the standard library's ``email.mime`` classes (the compat32 policy): a third of the CPU of
    ``EmailMessage``, whose header registry parses every header it is given (a quarter of the notification
    service's CPU under the bench). Headers in anything but ASCII are therefore encoded here (RFC 2047: a
    display name alone, never the address); a line break in any of them is refused, as EmailMessage refused it.
    """
    headers = {"From": sender, "To": message.recipient, "Subject": message.subject, "Message-ID": message.message_id}
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            raise ValueError(f"the {name} header may not contain a line break")
    email = MIMEMultipart("alternative")
    email["From"] = _address(sender)
    email["To"] = _address(message.recipient)
    email["Subject"] = (
        message.subject
        if message.subject.isascii()
        else Header(message.subject, "utf-8", header_name="Subject").encode()
    )
    email["Message-ID"] = message.message_id
    email["Date"] = formatdate(localtime=False, usegmt=True)
    email.attach(_text_part("plain", message.text))
    email.attach(_text_part("html", message.html))
    return email


def _text_part(subtype: str, text: str) -> MIMENonMultipart:
    """What ``MIMEText`` makes, in quoted-printable rather than its base64 for UTF-8."""
    part = MIMENonMultipart("text", subtype, charset="utf-8")
    part.set_payload(text, _UTF8)
    return part


def _address(value: str) -> str:
    """``Name <addr>`` or ``addr``, a display name outside ASCII encoded (the address itself is left as it is)."""
    if value.isascii():
        return value
    name, address = parseaddr(value)
    return formataddr((name, address), charset="utf-8") if address else value


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
    A TimeoutError, so the connection is closed without a QUIT."""


class _Stale(Exception):
    """A reused connection the server had dropped while it was idle, found out before DATA."""


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client, telling a failure during DATA from one before it."""

    data_started = False

    async def data(self, *args: Any, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        self.data_started = True
        try:
            return await super().data(*args, **kwargs)
        except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected, OSError, TimeoutError) as exc:
            raise _MaybeDelivered(type(exc).__name__) from None


@dataclass(slots=True)
class _Idle:
    client: _Client
    until: float
    timer: asyncio.TimerHandle


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, _Transient)


def _dropped(exc: BaseException) -> bool:
    """The server is gone or going: a disconnect, or 421 (closing the transmission channel, RFC 5321 §3.8), also as
    the answer to RCPT (which aiosmtplib reports as every recipient refused)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return bool(exc.recipients) and all(r.code == 421 for r in exc.recipients)
    return isinstance(exc, ConnectionError) or (isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == 421)


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
        idle_seconds: float = 30.0,
        max_idle: int = 2,
    ) -> None:
        """``idle_seconds``: how long a connection is kept open for the next message (0: a connection per
        message, closed with a QUIT after it); ``max_idle``: how many are kept open at most."""
        self._smtp = smtp
        self._from = sender
        self._timeout = timeout_seconds
        self._attempts = attempts
        self._retry_seconds = retry_seconds
        self._tls = tls_context
        self._local_hostname: str | None = None
        self._idle_seconds = idle_seconds
        self._max_idle = max_idle
        self._idle: list[_Idle] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    async def send(self, message: OutgoingMessage) -> None:
        email = build_email(self._from, message)
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

    async def aclose(self) -> None:
        """Close the idle connections (QUIT) and wait for those already closing; at shutdown. A send still under
        way after this closes its connection when it is done."""
        self._closed = True
        idle, self._idle = self._idle, []
        for kept in idle:
            kept.timer.cancel()
        await asyncio.gather(*(self._quit(kept.client) for kept in idle), *self._closing, return_exceptions=True)

    async def _hostname(self) -> str:
        """The name this client gives in EHLO: aiosmtplib's default (the host's FQDN), looked up once per process
        instead of in a worker thread on every connection."""
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        return self._local_hostname

    async def _client(self) -> _Client:
        s = self._smtp
        return _Client(
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

    async def _once(self, email: Message) -> None:
        try:
            kept = self._take()
            if kept is not None:
                try:
                    await self._transaction(kept, email, reused=True)
                    return
                except _Stale:
                    pass  # it cannot have taken the message: a new connection, in this same attempt
            await self._transaction(await self._client(), email, reused=False)
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

    async def _transaction(self, client: _Client, email: Message, *, reused: bool) -> None:
        """One message on ``client`` (connected first unless ``reused``), which is kept for the next one if
        the server took it and is closed otherwise."""
        client.data_started = False
        try:
            if not reused:
                await client.connect()
            await client.send_message(email)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError | ConnectionError | TimeoutError) or not client.is_connected:
                # Cut off (the consumer's handler timeout), gone or stuck: no QUIT that could wait a full timeout.
                client.close()
            else:
                await self._quit(client)
            if reused and not client.data_started and _dropped(exc):
                raise _Stale from None
            raise
        await self._keep(client)

    def _take(self) -> _Client | None:
        """The connection given back last that is still open and within its idle time, if any."""
        now = asyncio.get_running_loop().time()
        while self._idle:
            kept = self._idle.pop()
            kept.timer.cancel()
            if kept.client.is_connected and now < kept.until:
                return kept.client
            self._close_later(kept.client)
        return None

    async def _keep(self, client: _Client) -> None:
        if self._closed or self._idle_seconds <= 0 or len(self._idle) >= self._max_idle or not client.is_connected:
            await self._quit(client)
            return
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self._idle_seconds, self._expire, client)
        self._idle.append(_Idle(client, loop.time() + self._idle_seconds, timer))

    def _expire(self, client: _Client) -> None:
        for i, kept in enumerate(self._idle):
            if kept.client is client:
                del self._idle[i]
                self._close_later(client)
                return

    def _close_later(self, client: _Client) -> None:
        if not client.is_connected:
            client.close()
            return
        task = asyncio.get_running_loop().create_task(self._quit(client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _quit(self, client: _Client) -> None:
        try:
            # A goodbye, not a delivery: a server that does not answer it holds neither an idle close nor shutdown.
            await client.quit(timeout=min(self._timeout, _QUIT_TIMEOUT_SECONDS))
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass  # it is being closed either way
        finally:
            client.close()
