"""infra.logs: JSON lines, and no line per outgoing HTTP request on the hot path."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from infra.logs import setup_logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    httpx_level = logging.getLogger("httpx").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(httpx_level)


def test_a_request_line_from_httpx_is_not_logged_but_its_warnings_are(restored_logging, capsys) -> None:
    setup_logging("payment")
    logging.getLogger("httpx").info('HTTP Request: POST http://127.0.0.1:8090/v1/payment_intents "HTTP/1.1 200 OK"')
    logging.getLogger("httpx").warning("the provider answered slowly")
    logging.getLogger("kassa.payment").info("payment %s captured", "p-1")

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(e["logger"], e["level"], e["msg"]) for e in lines] == [
        ("httpx", "warning", "the provider answered slowly"),
        ("kassa.payment", "info", "payment p-1 captured"),
    ]
    assert {e["service"] for e in lines} == {"payment"}
