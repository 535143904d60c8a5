"""SyncProducts' tokens on the wire: opaque to callers, checked here before any of it reaches the database.

A sync token is a database snapshot (``pg_snapshot`` text, "xmin:xmax:xip,..."); a page token is the sync's
cursor (:class:`~pricing.model.catalog.SyncCursor`). Both are base64url of a short text. A caller can forge
neither into more than a sync of the catalog it could ask for whole; a malformed one is refused as
INVALID_ARGUMENT naming its field.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re

from kernel.errors import InvalidArgument
from kernel.validation import SKU_PATTERN
from pricing.model.catalog import SyncCursor

__all__ = ["MAX_TOKEN_LENGTH", "decode_page", "decode_sync", "encode_page", "encode_sync"]

# A snapshot lists the transactions running when it was taken: a few hundred at most on a busy database.
MAX_TOKEN_LENGTH = 8192
_SNAPSHOT = re.compile(r"([0-9]{1,19}):([0-9]{1,19}):((?:[0-9]{1,19})(?:,[0-9]{1,19})*)?")
_MAX_XID = 2**63 - 1


def encode_sync(snapshot: str) -> str:
    return _b64(snapshot)


def encode_page(cursor: SyncCursor) -> str:
    return _b64(json.dumps([cursor.since, cursor.until, cursor.after], separators=(",", ":")))


def decode_sync(field: str, token: str) -> str | None:
    """The snapshot a sync token carries; None for an empty token (the whole catalog)."""
    if not token:
        return None
    return _snapshot(field, _text(field, token))


def decode_page(field: str, token: str, since: str | None) -> SyncCursor:
    """The cursor of a page token, which must belong to the sync of ``since`` (the request's sync token)."""
    try:
        loaded = json.loads(_text(field, token))
    except json.JSONDecodeError:
        raise InvalidArgument(field, "not a page token of SyncProducts") from None
    if not (
        isinstance(loaded, list)
        and len(loaded) == 3
        and (loaded[0] is None or isinstance(loaded[0], str))
        and all(isinstance(part, str) for part in loaded[1:])
    ):
        raise InvalidArgument(field, "not a page token of SyncProducts")
    page_since, until, after = loaded
    if after and not SKU_PATTERN.fullmatch(after):
        raise InvalidArgument(field, "not a page token of SyncProducts")
    if page_since is not None:
        page_since = _snapshot(field, page_since)
    if page_since != since:
        raise InvalidArgument(field, "belongs to another sync: ask with the sync_token its sync began with")
    return SyncCursor(since, _snapshot(field, until), after)


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _text(field: str, token: str) -> str:
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidArgument(field, f"longer than any token SyncProducts gives ({MAX_TOKEN_LENGTH} characters)")
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument(field, "not a token of SyncProducts") from None


def _snapshot(field: str, text: str) -> str:
    """``text`` if it is a snapshot Postgres accepts: xmin <= xmax, the running ids ascending within them."""
    match = _SNAPSHOT.fullmatch(text)
    if match is None:
        raise InvalidArgument(field, "not a token of SyncProducts")
    xmin, xmax = int(match[1]), int(match[2])
    running = [int(x) for x in match[3].split(",")] if match[3] else []
    ordered = all(a < b for a, b in itertools.pairwise(running))
    if not (1 <= xmin <= xmax <= _MAX_XID and ordered and all(xmin <= x < xmax for x in running)):
        raise InvalidArgument(field, "not a token of SyncProducts")
    return text
