"""The guard that keeps a test from patching asyncio's own functions under every task of the session loop."""

from __future__ import annotations

import asyncio

import pytest
from helpers import patched_asyncio

pytestmark = pytest.mark.unit


def test_a_replaced_asyncio_function_is_named_and_an_untouched_module_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert patched_asyncio() == []

    async def sleep(_seconds: float) -> None:
        return None

    with monkeypatch.context() as patch:
        patch.setattr(asyncio, "sleep", sleep)
        assert patched_asyncio() == ["sleep"]
    assert patched_asyncio() == []
