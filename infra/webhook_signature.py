"""Signed webhooks: ``<header>: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``.

The sandbox provider signs with it; the gateway checks it before forwarding and
the payment service checks it again (defence in depth). A timestamp tolerance
stops replays of old captured requests.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["SIGNATURE_HEADER", "SignatureError", "sign", "verify"]

SIGNATURE_HEADER = "Kassa-Signature"


class SignatureError(ValueError):
    pass


def sign(secret: str, payload: bytes, timestamp: int | None = None) -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def verify(secret: str, payload: bytes, header: str, *, tolerance_seconds: int = 300, now: int | None = None) -> None:
    """Raise SignatureError unless ``header`` is a valid, fresh signature of ``payload``."""
    parts = dict(p.split("=", 1) for p in (header or "").split(",") if "=" in p)
    ts_raw, given = parts.get("t"), parts.get("v1")
    if not ts_raw or not given or not ts_raw.isdigit():
        raise SignatureError("malformed signature header")
    ts = int(ts_raw)
    current = int(time.time()) if now is None else now
    if abs(current - ts) > tolerance_seconds:
        raise SignatureError("signature timestamp outside tolerance")
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        raise SignatureError("signature mismatch")
