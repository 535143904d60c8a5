"""Personal data at rest: envelope encryption under keys from configuration, and masks for logs and errors.

Emails, phone numbers, addresses and order notes are stored as tokens, never as plain text (issue 10 §5).

Keys: ``KASSA_PII_KEYS`` is ``kid:base64key[,kid:base64key…]``, each key 32 random bytes (AES-256). The
first is the current key: every new value is written under it. All of them decrypt, so a rotation is:
put a new key first and keep the old ones after it, restart, re-encrypt what the old keys hold
(``kassa pii rotate``), then drop the old keys. Development mode falls back to a committed key
(:data:`infra.config.DEV_PII_KEYS`) that production refuses.

Envelope: each value gets a fresh 256-bit data key; the value is sealed with AES-256-GCM under that data
key (random 96-bit nonce, the token's header as associated data), and the data key is wrapped with the
configured key-encryption key (AES key wrap, RFC 3394). Why a data key per value rather than AES-GCM
under the configured key directly: random GCM nonces bound how many values one key may seal (about 2**32
before a nonce collision is a real risk), and a key-encryption key that only ever wraps random keys has
no such bound, so a key can live as long as the operators want; the wrapping step is also the seam where
a KMS or HSM would take over (the key never leaving it) without changing the token format. The cost is
a few microseconds per value (measured: ~8 µs to seal, ~6 µs to open).

A token is ``pii1:<kid>:<base64url(wrapped data key ‖ nonce ‖ ciphertext ‖ tag)>`` — self-describing,
so a reader finds the key by its id, and text (so it fits the text and jsonb columns it replaces). The
empty string stands for itself: "no email" is not personal data, and it keeps the columns' defaults.

Lookups: nothing in Kassa queries by email, phone or address (orders are found by id or by customer id),
so no keyed hash (blind index) is stored beside the tokens. If one is ever needed, store an HMAC under a
key of its own, not a plain hash: the space of email addresses is small enough to guess.

Pure apart from the random bytes; no I/O. The masks (:func:`mask_email`, :func:`mask_phone`,
:func:`redact`) are what logs and error messages show instead of the values.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

__all__ = [
    "KEY_BYTES",
    "TOKEN_PATTERN",
    "TOKEN_VERSION",
    "PiiCipher",
    "PiiError",
    "PiiKey",
    "is_token",
    "key_problem",
    "mask_email",
    "mask_phone",
    "new_key_spec",
    "parse_keys",
    "redact",
]

TOKEN_VERSION = "pii1"
KEY_BYTES = 32
_KID = r"[A-Za-z0-9_-]{1,32}"
_KID_PATTERN = re.compile(_KID)
# The body is base64url without padding: at least a wrapped key, a nonce and a tag.
TOKEN_PATTERN = re.compile(rf"\b{TOKEN_VERSION}:({_KID}):([A-Za-z0-9_-]{{60,}})")
_WRAPPED = KEY_BYTES + 8  # RFC 3394 adds one 64-bit block
_NONCE = 12
# A random 32-byte key is printable ASCII with probability (95/256)**32 ~ 1e-14, and has fewer than 16
# different bytes with probability far below that: either means a person made it up.
_MIN_DISTINCT_BYTES = 16


class PiiError(ValueError):
    """A stored value that can't be read: not a token, a key id no configured key has, or tampered with."""


@dataclass(frozen=True, slots=True)
class PiiKey:
    key_id: str
    key: bytes = field(repr=False)


def _b64decode(text: str) -> bytes:
    standard = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def parse_keys(spec: str) -> tuple[PiiKey, ...]:
    """``kid:base64key[,kid:base64key…]`` (standard or URL-safe base64, padding optional), the current key first.

    Raises ValueError naming the entry at fault (never echoing a key).
    """
    keys: list[PiiKey] = []
    for position, entry in enumerate(part.strip() for part in spec.split(",")):
        kid, colon, encoded = entry.partition(":")
        kid = kid.strip()
        if not colon or not _KID_PATTERN.fullmatch(kid):
            raise ValueError(f"entry {position + 1} must be kid:base64key, the kid 1-32 of A-Z a-z 0-9 _ -")
        try:
            key = _b64decode(encoded.strip())
        except (binascii.Error, ValueError):
            raise ValueError(f"key {kid!r} is not base64") from None
        if len(key) != KEY_BYTES:
            raise ValueError(f"key {kid!r} must be {KEY_BYTES} bytes (AES-256), got {len(key)}")
        if any(k.key_id == kid for k in keys):
            raise ValueError(f"key id {kid!r} appears twice")
        keys.append(PiiKey(kid, key))
    return tuple(keys)


def key_problem(key: bytes) -> str | None:
    """Why ``key`` can't be a production key (it was not drawn at random), or None."""
    if all(0x20 <= b < 0x7F for b in key):
        return "is printable text, not random bytes"
    if len(set(key)) < _MIN_DISTINCT_BYTES:
        return f"has fewer than {_MIN_DISTINCT_BYTES} different bytes"
    return None


def new_key_spec(key_id: str) -> str:
    """A fresh ``kid:base64key`` entry for KASSA_PII_KEYS."""
    if not _KID_PATTERN.fullmatch(key_id):
        raise ValueError("a key id is 1-32 of A-Z a-z 0-9 _ -")
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode('ascii')}"


def is_token(value: str) -> bool:
    match = TOKEN_PATTERN.fullmatch(value)
    return match is not None


class PiiCipher:
    """Seals text under the current key and opens it under any configured key (see the module docstring)."""

    def __init__(self, keys: Sequence[PiiKey]) -> None:
        if not keys:
            raise ValueError("at least one PII key is needed")
        self._current = keys[0]
        self._keys = {k.key_id: k.key for k in keys}

    def __repr__(self) -> str:
        return f"PiiCipher(current={self._current.key_id!r}, keys={list(self._keys)!r})"

    @property
    def current_key_id(self) -> str:
        return self._current.key_id

    def encrypt(self, plaintext: str) -> str:
        """The token of ``plaintext`` under the current key; "" stays "" (nothing to hide)."""
        if plaintext == "":
            return ""
        header = f"{TOKEN_VERSION}:{self._current.key_id}"
        data_key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        nonce = os.urandom(_NONCE)
        sealed = AESGCM(data_key).encrypt(nonce, plaintext.encode("utf-8"), header.encode("ascii"))
        wrapped = aes_key_wrap(self._current.key, data_key)
        return f"{header}:{_b64encode(wrapped + nonce + sealed)}"

    def decrypt(self, token: str) -> str:
        """The text sealed in ``token``; "" is "". Raises PiiError for anything else that is no readable token."""
        if token == "":
            return ""
        match = TOKEN_PATTERN.fullmatch(token)
        if match is None:
            raise PiiError("not an encrypted value (expected pii1:<kid>:<data>)")
        kid, body = match.groups()
        key = self._keys.get(kid)
        if key is None:
            raise PiiError(f"encrypted under key {kid!r}, which KASSA_PII_KEYS does not hold")
        try:
            raw = _b64decode(body)
            data_key = aes_key_unwrap(key, raw[:_WRAPPED])
            nonce, sealed = raw[_WRAPPED : _WRAPPED + _NONCE], raw[_WRAPPED + _NONCE :]
            plain = AESGCM(data_key).decrypt(nonce, sealed, f"{TOKEN_VERSION}:{kid}".encode("ascii"))
        except (binascii.Error, ValueError, InvalidUnwrap, InvalidTag):
            raise PiiError(f"an encrypted value under key {kid!r} does not open: tampered with or truncated") from None
        return plain.decode("utf-8")

    def encrypt_json(self, value: dict[str, Any] | None) -> str | None:
        """A mapping (an address) as the token of its JSON; None stays None."""
        return None if value is None else self.encrypt(json.dumps(value, separators=(",", ":"), sort_keys=True))

    def decrypt_json(self, token: str | None) -> dict[str, Any] | None:
        if token is None or token == "":
            return None
        value = json.loads(self.decrypt(token))
        if not isinstance(value, dict):
            raise PiiError("an encrypted mapping holds something else")
        return value

    def key_id_of(self, token: str) -> str:
        match = TOKEN_PATTERN.fullmatch(token)
        if match is None:
            raise PiiError("not an encrypted value")
        return match.group(1)

    def reencrypt_text(self, text: str) -> tuple[str, int]:
        """``text`` with every token in it not under the current key sealed again under it, and how many were.

        Works on any text holding tokens (a column, or a JSON document with tokens among its values): the
        tokens' alphabet needs no escaping in JSON.
        """
        count = 0

        def again(match: re.Match[str]) -> str:
            nonlocal count
            if match.group(1) == self._current.key_id:
                return match.group(0)
            count += 1
            return self.encrypt(self.decrypt(match.group(0)))

        return TOKEN_PATTERN.sub(again, text), count


# -- masks -------------------------------------------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.+-])([\w.+-]+)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
# A phone number: an optional +, 7-15 digits with spaces, dashes or parentheses between them, not part of a
# longer word, number, path, address or time. Dots are not separators (so "10.0.0.12" and amounts stay).
_PHONE = re.compile(r"(?<![\w+/:.\-])\+?\(?\d[\d ()\-]{5,22}\d(?![\w/:.\-])")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DIGIT_GROUP = re.compile(r"\d+")
_JWT = re.compile(r"\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[^\s\"',;]+")
# Provider payment tokens and webhook secrets (tok_…, pm_…, whsec_…): credentials, never worth a log line.
_PROVIDER_TOKEN = re.compile(r"\b(tok|pm|whsec)_[A-Za-z0-9_]+")


def mask_email(email: str) -> str:
    """``ada@example.com`` → ``a***@example.com``: enough to tell two customers apart in a log, not to write."""
    local, at, domain = email.rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_phone(phone: str) -> str:
    """All but the last two digits hidden: ``+1 555 0100`` → ``***00``."""
    digits = [c for c in phone if c.isdigit()]
    return "***" + "".join(digits[-2:]) if len(digits) > 2 else "***"


def _phone(match: re.Match[str]) -> str:
    """Masked when it reads as a phone number: 7-15 digits written with a leading + or grouped by at least two
    separators. A bare run of digits is left alone: in a log or an error it is far more often a count, a limit
    or a timestamp than a phone number."""
    text = match.group(0)
    digits = sum(c.isdigit() for c in text)
    groups = len(_DIGIT_GROUP.findall(text))
    grouped = text.startswith("+") or groups >= 3
    if not 7 <= digits <= 15 or not grouped or _DATE.match(text.lstrip("+(")):
        return text
    return mask_phone(text)


_RULES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (TOKEN_PATTERN, lambda m: f"{TOKEN_VERSION}:{m.group(1)}:…"),
    (_JWT, lambda m: "[jwt]"),
    (_BEARER, lambda m: f"{m.group(1)} [redacted]"),
    (_PROVIDER_TOKEN, lambda m: f"{m.group(1)}_***"),
    (_EMAIL, lambda m: mask_email(m.group(0))),
    (_PHONE, _phone),
)


def redact(text: str) -> str:
    """``text`` with emails and phone numbers masked and credentials (JWTs, bearer and payment tokens) removed.

    A safety net for text that may carry what a caller sent (exception messages, tracebacks, an upstream's
    error): the code itself never logs an address, a phone number or an email, since no pattern recognizes
    every address.
    """
    if not text:
        return text
    for pattern, replace in _RULES:
        text = pattern.sub(replace, text)
    return text
