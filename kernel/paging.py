"""Keyset page tokens: an opaque cursor (a time and an id) that continues a listing after its last entry.

Pure (json, base64): shared by the listings that page by (created time, id), the audit trail's and checkout's
DLQ. A token that is not one this listing made is InvalidArgument naming ``page_token``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from kernel.errors import InvalidArgument

__all__ = ["decode_keyset_token", "keyset_token"]

K = TypeVar("K", int, str)

_MAX_TOKEN = 200


def keyset_token(at: datetime, entry_id: int | str) -> str:
    """The page token that continues a listing after the entry (``at``, ``entry_id``)."""
    raw = json.dumps({"at": at.astimezone(UTC).isoformat(), "id": entry_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_keyset_token(token: str, read_id: Callable[[object], K]) -> tuple[datetime, K]:
    """(at, id) of a :func:`keyset_token`; ``read_id`` checks the id's type and form (raising ValueError)."""
    try:
        if len(token) > _MAX_TOKEN:
            raise ValueError("too long")
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        at = datetime.fromisoformat(data["at"])
        if at.tzinfo is None:
            raise ValueError("not a cursor")
        entry_id = read_id(data["id"])
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidArgument("page_token", "is not a page token of this listing") from exc
    return at, entry_id
