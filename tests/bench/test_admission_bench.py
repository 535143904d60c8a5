"""bench.admission's arithmetic (pure): refusals counted by route and refuser, and the overload verdict."""

from __future__ import annotations

import json

import pytest

from bench.admission import Exchange, _extra_env, _route, _who, build_parser, overload_verdict, refusals

pytestmark = pytest.mark.unit


def test_refusals_count_503s_only_with_their_latency_and_missing_retry_after() -> None:
    exchanges = [
        Exchange("/v1/auth/guest", 503, 0.010, "1", "gateway: queue_delay"),
        Exchange("/v1/carts", 503, 0.030, "2", "gateway: queue_delay"),
        Exchange("/v1/carts/abc/items", 503, 0.020, None, ""),
        Exchange("/v1/checkout/start", 400, 0.500, None, ""),  # sold out: not a refusal for load
    ]
    r = refusals(exchanges)
    assert r["count"] == 3
    assert r["without_retry_after"] == 1
    assert r["latency_ms"]["p50"] == pytest.approx(20.0)
    assert r["latency_ms"]["p99"] == pytest.approx(30.0)
    assert dict(r["by_route"]) == {"/v1/auth/guest": 1, "/v1/carts": 1, "/v1/carts/{id}/items": 1}
    assert dict(r["by_refuser"]) == {"gateway: queue_delay": 2, "other": 1}


def test_routes_hide_ids() -> None:
    assert _route("/v1/checkout/sessions/s-1/preview") == "/v1/checkout/sessions/{id}/preview"
    assert _route("/v1/carts") == "/v1/carts"


def test_who_refused_is_read_from_the_status_json() -> None:
    body = {"message": "the gateway is at capacity", "details": [{"metadata": {"why": "max_wait"}}]}
    assert _who(json.dumps(body).encode()) == "gateway: max_wait"
    assert _who(b"not json") == ""
    assert _who(json.dumps({"message": "dependency unavailable"}).encode()) == ""


def test_the_overload_verdict_needs_every_goal() -> None:
    fast = {"latency_ms": {"p99": 12.0}, "without_retry_after": 0}
    assert overload_verdict(max_rate=10.0, completed_rate=9.5, refused=fast)["met"]
    low = overload_verdict(max_rate=10.0, completed_rate=8.0, refused=fast)
    assert (low["met"], low["share_of_max"], low["goals"]["share_of_max"]) == (False, 0.8, False)
    slow = {"latency_ms": {"p99": 80.0}, "without_retry_after": 0}
    assert not overload_verdict(max_rate=10.0, completed_rate=9.5, refused=slow)["goals"]["refusal_p99"]
    bare = {"latency_ms": {"p99": 5.0}, "without_retry_after": 3}
    assert not overload_verdict(max_rate=10.0, completed_rate=9.5, refused=bare)["met"]


def test_options_are_bounded_and_extra_env_must_be_kassa_settings() -> None:
    args = build_parser().parse_args([])
    assert (args.buyers, args.in_flight, args.factor, args.closed_concurrency) == (120, 40, 10.0, 16)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--overload-duration", "0"])
    assert _extra_env(["KASSA_MAX_IN_FLIGHT=24"])["KASSA_MAX_IN_FLIGHT"] == "24"
    with pytest.raises(ValueError, match="KASSA_NAME=VALUE"):
        _extra_env(["PATH=/tmp"])
