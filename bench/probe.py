"""``python -m bench.probe URL``: new checkouts as a client with an idle event loop sees them answered.

``bench.admission`` runs hundreds of buyers on one event loop. At 10x overload that loop lags (its ``LoopLag``
reaches hundreds of milliseconds) and every latency it measures includes the lag, its own, not the gateway's. The
probe is a client apart: a process of its own that asks for a guest token (``POST /v1/auth/guest``, what starts a
checkout) ``--rate`` times a second, each on a fresh connection as a new buyer's is, and times each from before it
connects to the response's status line. It does nothing else, so its loop is idle between requests and what it
measures is the gateway and the machine.

Its requests go through the same admission as the buyers': most are refused in an overload, and one let in waits in
the queue like any new checkout. A token it gets is then given back at once, as a buyer who leaves does: a read of a
cart that does not exist, whose error ends the checkout at the gateway, so the probe holds no slot the buyers could
have had (otherwise each would hold one for the gateway's idle time).

Bounded: ``--rate`` x ``--duration`` requests, each cut off at ``--timeout``; plain HTTP to a loopback gateway only.
Prints one JSON object: ``{"answers": [[status, ms], ...], "errors": {kind: count}}`` (status 0: no answer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections import Counter
from urllib.parse import urlsplit

import uvloop

from bench.args import is_loopback_host, positive
from bench.schedule import arrival_times

__all__ = ["Answer", "guest_request", "leave_request", "main", "probe"]

Answer = tuple[int, float]  # (HTTP status, milliseconds to the status line)

_GUEST = (
    "POST /v1/auth/guest HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    "Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
)
_LEAVE = "GET /v1/carts/{cart} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"


def guest_request(host: str) -> bytes:
    """The bytes of one guest-token request (HTTP/1.1, closed after the answer)."""
    return _GUEST.format(host=host).encode()


def leave_request(host: str, token: str) -> bytes:
    """A read of a cart nobody has, as ``token``'s holder: its error ends that checkout at the gateway."""
    return _LEAVE.format(host=host, token=token, cart=uuid.uuid4()).encode()


async def _exchange(host: str, port: int, request: bytes) -> tuple[int, float, bytes]:
    """Send ``request`` on a new connection: the status, ms to the status line, and the body."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        status_line = await reader.readline()
        ms = (time.perf_counter() - started) * 1000
        rest = await reader.read()  # headers and body, up to the gateway's close
    finally:
        writer.close()
    parts = status_line.split()
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return status, round(ms, 2), rest.partition(b"\r\n\r\n")[2]


async def _one(host: str, port: int, netloc: str) -> Answer:
    status, ms, body = await _exchange(host, port, guest_request(netloc))
    if status == 200:
        await _exchange(host, port, leave_request(netloc, json.loads(body)["token"]))
    return status, ms


async def probe(url: str, *, rate: float, duration: float, each_s: float) -> tuple[list[Answer], Counter[str]]:
    """Send ``rate x duration`` guest-token requests on the bench's open-loop schedule
    (:func:`bench.schedule.arrival_times`), each on its own connection; their answers."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    answers: list[Answer] = []
    errors: Counter[str] = Counter()

    async def one() -> None:
        try:
            answers.append(await asyncio.wait_for(_one(host, port, parts.netloc), each_s))
        except (OSError, TimeoutError, ValueError, KeyError) as exc:
            errors[type(exc).__name__] += 1

    tasks: list[asyncio.Task[None]] = []
    t0 = time.monotonic()
    for at in arrival_times(rate, duration, procs=1, index=0):
        delay = t0 + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return answers, errors


def _loopback_http(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None or not is_loopback_host(parts.hostname):
        raise argparse.ArgumentTypeError(f"must be a plain http:// URL on loopback, got {url!r}")
    return url


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.probe", description="Guest tokens asked for on schedule, each timed, from a client apart."
    )
    p.add_argument("url", type=_loopback_http, help="the gateway, e.g. http://127.0.0.1:8080")
    p.add_argument("--rate", type=positive(float, 100), default=4.0, help="requests per second")
    p.add_argument("--duration", type=positive(float, 600), default=20.0, help="seconds")
    p.add_argument("--timeout", type=positive(float, 120), default=30.0, help="bound of each request (s)")
    args = p.parse_args(argv)
    answers, errors = uvloop.run(probe(args.url, rate=args.rate, duration=args.duration, each_s=args.timeout))
    json.dump({"answers": answers, "errors": dict(errors)}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
