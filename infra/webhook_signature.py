"""Signed webhooks: ``<header>: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``.

The sandbox provider signs with it; the gateway checks it before forwarding and
the payment service checks it again (defence in depth). A timestamp tolerance
stops replays of old captured requests.

The header comes from whoever can reach the endpoint, so ``verify`` raises
SignatureError and nothing else for any header at all: it is bounded in size, only
ASCII decimal timestamps and lowercase hex MACs are read, and MACs are compared as
bytes (``hmac.compare_digest`` raises TypeError on non-ASCII text, which would be a 500).

Rotation: ``verify`` takes several secrets (the current one first, then the previous one)
and accepts a header that any of them signed; a provider rotating on its side may send one
``v1`` per secret, and any of them may match.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

__all__ = ["MAX_HEADER_CHARS", "SIGNATURE_HEADER", "SignatureError", "sign", "verify"]

SIGNATURE_HEADER = "Kassa-Signature"
# A timestamp and a handful of 64-hex-digit MACs fit many times over.
MAX_HEADER_CHARS = 2048
_MAX_TIMESTAMP_DIGITS = 12
_MAC_HEX_DIGITS = 64
_HEX = frozenset("0123456789abcdef")


class SignatureError(ValueError):
    pass


def _mac(secret: str, timestamp: int, payload: bytes) -> bytes:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest().encode()


def sign(secret: str, payload: bytes, timestamp: int | None = None) -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    return f"t={ts},v1={_mac(secret, ts, payload).decode()}"


def _parse(header: str) -> tuple[int, list[bytes]]:
    """The timestamp and the well-formed v1 MACs (as ASCII bytes); SignatureError if either is missing."""
    if not header or len(header) > MAX_HEADER_CHARS or not header.isascii():
        raise SignatureError("malformed signature header")
    ts_raw: str | None = None
    macs: list[bytes] = []
    for part in header.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            continue
        if key == "t":
            if ts_raw is not None:
                raise SignatureError("malformed signature header")
            ts_raw = value
        elif key == "v1" and len(value) == _MAC_HEX_DIGITS and set(value) <= _HEX:
            macs.append(value.encode("ascii"))
    # isascii() first: str.isdigit() is true for '²' and Arabic-Indic digits too.
    if not ts_raw or not ts_raw.isdigit() or len(ts_raw) > _MAX_TIMESTAMP_DIGITS or not macs:
        raise SignatureError("malformed signature header")
    return int(ts_raw), macs


def verify(
    secret: str | Sequence[str],
    payload: bytes,
    header: str,
    *,
    tolerance_seconds: int = 300,
    now: int | None = None,
) -> None:
    """Raise SignatureError unless ``header`` is a valid, fresh signature of ``payload`` by any of the secrets.

    ``secret`` is one secret or several (current first, then previous, while a rotation is under way);
    empty secrets are ignored, so a deployment with none configured verifies nothing.
    """
    secrets = [secret] if isinstance(secret, str) else list(secret)
    secrets = [s for s in secrets if s]
    ts, given = _parse(header)
    current = int(time.time()) if now is None else now
    if abs(current - ts) > tolerance_seconds:
        raise SignatureError("signature timestamp outside tolerance")
    expected = [_mac(s, ts, payload) for s in secrets]
    # Every pair is compared, so the time taken doesn't say which secret or which v1 matched.
    matched = False
    for mac in expected:
        for candidate in given:
            matched |= hmac.compare_digest(mac, candidate)
    if not matched:
        raise SignatureError("signature mismatch")
