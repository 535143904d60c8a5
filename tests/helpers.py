"""Small helpers for tests (import as `from helpers import ...`)."""

from __future__ import annotations

import uuid


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def unique(prefix: str) -> str:
    """Ids unique per test, so tests sharing a database never see each other's rows."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
