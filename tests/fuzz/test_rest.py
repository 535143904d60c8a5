"""Every REST route of the gateway (read from the ``google.api.http`` annotations) with generated requests.

A request message is generated as for gRPC, then turned into HTTP the way a client would send it: path
variables percent-encoded into the URL, the rest as the JSON body (proto or lowerCamelCase names) or as
query parameters. Then, often, the HTTP itself is broken: a field given a JSON value of another type, an
unknown key, numbers past int64, a body that is not JSON, not an object, nested thousands deep or larger
than the gateway's limit, an odd Idempotency-Key. No answer may be a 5xx; a 400 INVALID_ARGUMENT names the
field; a refusal writes nothing. The payment webhook endpoint (not an annotated route) is fuzzed here too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fuzz.contract import Fingerprint, rest_outcome
from fuzz.profile import FUZZ_SETTINGS
from fuzz.report import record
from fuzz.strategies import HOSTILE_CHARS, assign, hostile_text, request_strategy
from fuzz.world import Anchors, FuzzWorld, prepare_webhook, webhook_inputs
from google.protobuf import json_format, message
from hypothesis import given
from hypothesis import strategies as st

from gateway.routing import Route, build_route_table

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("fuzz")]

ROUTES: list[Route] = list(build_route_table().routes)
_MAX_BODY = 1024 * 1024  # the gateway's default max_body_bytes
_MAX_URL_PART = 2000

_json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2**100), 2**100), st.floats(), hostile_text(),
    st.sampled_from(["", "0", "-1", "1.5", "1e400", "9223372036854775808", "true", "NaN"]),
)  # fmt: skip


def _nested(depth: int, as_object: bool) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value} if as_object else [value]
    return value


def _json(depth: int) -> st.SearchStrategy[Any]:
    if depth == 0:
        return _json_leaf
    inner = _json(depth - 1)
    return st.one_of(_json_leaf, st.lists(inner, max_size=3), st.dictionaries(hostile_text(), inner, max_size=3))


json_values = st.one_of(
    _json(3),
    # A field's value nested hundreds deep (the body as a whole is nested deeper in _BROKEN_BODIES).
    st.builds(_nested, st.sampled_from((50, 400)), st.booleans()),
)


def route_id(route: Route) -> str:
    return f"{route.http_method} {route.template.template}"


@pytest.fixture(scope="module")
def http(anchors: Anchors) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=anchors.gateway_url, timeout=30, trust_env=False) as client:
        yield client


def _to_json(msg: message.Message, proto_names: bool) -> dict[str, Any]:
    """The message as proto3 JSON; a field json_format can't write (a Timestamp out of range) as a hostile string."""
    try:
        return json_format.MessageToDict(msg, preserving_proto_field_name=proto_names)
    except (ValueError, TypeError, json_format.Error):
        pass
    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        single = type(msg)()
        assign(single, fd, value)
        try:
            out.update(json_format.MessageToDict(single, preserving_proto_field_name=proto_names))
        except (ValueError, TypeError, json_format.Error):
            out[fd.name if proto_names else fd.json_name] = "9999-99-99T99:99:99Z"
    return out


def _path(route: Route, values: dict[str, str]) -> str:
    path = route.template.template
    for var in route.template.variables:
        start = path.index("{" + var)
        end = path.index("}", start)
        # Clipped: a URL past 64 KiB is refused by the client before it is sent.
        path = path[:start] + quote(values.get(var, "")[:_MAX_URL_PART], safe="") + path[end + 1 :]
    return path


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(data, dict):
        return [pair for k, v in data.items() for pair in _flatten(v, f"{prefix}.{k}" if prefix else k)]
    if isinstance(data, list):
        return [pair for v in data for pair in _flatten(v, prefix)]
    return [(prefix, (json.dumps(data) if not isinstance(data, str) else data)[:_MAX_URL_PART])]


def _deep(depth: int, opener: str) -> bytes:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return (opener * depth + "1" + closer * depth).encode()


_BROKEN_BODIES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"", b"null", b"[]", b"42", b'"x"', b"{", b'{"a":1,}', b"\xff\xfe\x00", b"{}" * 3, b'{"\x00":1}',
                     b"NaN", b'{"a": Infinity}']),
    st.sampled_from([10, 900, 5_000, 100_000]).flatmap(lambda d: st.sampled_from([_deep(d, "["), _deep(d, '{"a":')])),
    st.sampled_from([_MAX_BODY - 100, _MAX_BODY + 1, 3 * _MAX_BODY]).map(lambda n: b'{"x": "' + b"a" * n + b'"}'),
)  # fmt: skip


@dataclass(frozen=True)
class HttpInput:
    method: str
    path: str
    query: list[tuple[str, str]]
    body: bytes | None
    headers: dict[str, str]

    def __str__(self) -> str:
        shown = f"query={self.query!r:.500} body={self.body!r:.1500} headers={self.headers!r:.300}"
        return f"{self.method} {self.path} {shown}"


@st.composite
def http_request(
    draw: st.DrawFn, route: Route, msg: message.Message
) -> tuple[str, list[tuple[str, str]], bytes | None, dict[str, str]]:
    """(path, query, body, headers) for ``msg`` on ``route``, then broken at the HTTP/JSON level now and then."""
    proto_names = draw(st.booleans())
    data = _to_json(msg, proto_names)
    path_values: dict[str, str] = {}
    for var in route.template.variables:
        fd = msg.DESCRIPTOR.fields_by_name.get(var)
        if fd is not None:
            path_values[var] = str(getattr(msg, var))
            data.pop(fd.name, None)
            data.pop(fd.json_name, None)
    if draw(st.integers(0, 5)) == 0:
        path_values = {var: draw(hostile_text()) for var in route.template.variables}
    query: list[tuple[str, str]] = []
    body: bytes | None = None
    breakage = draw(st.sampled_from(("none", "none", "field type", "unknown key", "body", "query")))
    if breakage == "field type" and data:
        data[draw(st.sampled_from(sorted(data)))] = draw(json_values)
    elif breakage == "unknown key":
        data[draw(hostile_text())] = draw(json_values)
    if route.body:
        body = json.dumps(data, ensure_ascii=draw(st.booleans())).encode()
        if breakage == "body":
            body = draw(st.one_of(_BROKEN_BODIES, json_values.map(lambda v: json.dumps(v).encode())))
    else:
        query = _flatten(data)
    if breakage == "query":
        names = sorted(f.name for f in msg.DESCRIPTOR.fields) or ["x"]
        name, value = draw(st.one_of(hostile_text(), st.sampled_from(names))), draw(hostile_text())
        query.append((name[:_MAX_URL_PART], value[:_MAX_URL_PART]))
    headers: dict[str, str] = {}
    # Mostly no key or a good one; now and then one past the gateway's limit or with a control character
    # (which the HTTP server itself may refuse before the gateway sees it).
    key = draw(
        st.one_of(
            st.none(), st.none(), st.none(), st.uuids().map(str), st.uuids().map(str),
            st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=300),
            st.sampled_from([c for c in HOSTILE_CHARS if ord(c) <= 0xFF]).map(lambda c: f"key{c}"),
            st.just("k" * 5000),
        )
    )  # fmt: skip
    if key is not None:
        headers["Idempotency-Key"] = key
    if body is not None and draw(st.integers(0, 5)) == 0:
        headers["Content-Type"] = draw(
            st.sampled_from(["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"])
        )
    return HttpInput(route.http_method, _path(route, path_values), query, body, headers)


def send_and_check(
    http: httpx.Client, rid: str, sent: HttpInput, *, token: str | None, fingerprint: Fingerprint
) -> None:
    # Header values as latin-1 bytes: httpx would refuse anything outside ASCII in a str.
    headers = {k: v.encode("latin-1") for k, v in sent.headers.items()}
    if token:
        headers["Authorization"] = f"Bearer {token}".encode()
    try:
        request = http.build_request(sent.method, sent.path, params=sent.query, content=sent.body, headers=headers)
    except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeEncodeError, ValueError) as exc:
        record("rest", rid, f"unsendable ({type(exc).__name__})")
        return
    before = fingerprint.take()
    try:
        resp = http.send(request)
    except httpx.LocalProtocolError as exc:
        record("rest", rid, f"unsendable ({type(exc).__name__})")
        return
    if sent.method == "HEAD":  # no body to hold to the contract
        outcome = rest_outcome(resp.status_code, None) if resp.status_code >= 500 else None
        record("rest", rid, f"HTTP {resp.status_code} (HEAD)")
        assert outcome is None, f"{rid}: {outcome.problem}\n{sent}"
        return
    try:
        answer: Any = resp.json()
    except ValueError:
        answer = resp.text
    outcome = rest_outcome(resp.status_code, answer)
    record("rest", rid, outcome.label)
    assert outcome.problem is None, f"{rid}: {outcome.problem}\n{sent}"
    if outcome.invalid_argument:
        changed = fingerprint.diff(before, fingerprint.take())
        if changed:
            time.sleep(2)  # see test_grpc.call_and_check: re-send to tell a background write from this request's
            before = fingerprint.take()
            http.send(http.build_request(sent.method, sent.path, params=sent.query, content=sent.body, headers=headers))
            changed = fingerprint.diff(before, fingerprint.take())
        assert not changed, f"{rid} refused a request (INVALID_ARGUMENT) but wrote: {changed}\n{sent}"


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
@FUZZ_SETTINGS
@given(data=st.data())
def test_route_over_rest(route: Route, world: FuzzWorld, http: httpx.Client, data: st.DataObject) -> None:
    strategy = request_strategy(route.rpc.descriptor.input_type, world.hints(), world.seed(route.rpc.path))
    msg = data.draw(strategy, label="message")
    sent = data.draw(http_request(route, msg), label="http")
    admin = route.template.template.startswith("/v1/admin/")
    token = world.anchors.admin_token if admin else world.anchors.customer_token
    send_and_check(http, route_id(route), sent, token=token, fingerprint=world.fingerprint)


@FUZZ_SETTINGS
@given(data=st.data())
def test_payment_webhook_over_rest(world: FuzzWorld, http: httpx.Client, data: st.DataObject) -> None:
    payload, how, token = data.draw(webhook_inputs(world.anchors), label="webhook")
    payload, signature = prepare_webhook(world.anchors, payload, how, token)
    provider = data.draw(
        st.one_of(st.just("sandbox"), hostile_text().map(lambda t: quote(t[:_MAX_URL_PART], safe="")).filter(bool)),
        label="provider",
    )
    sent = HttpInput("POST", f"/v1/payments/webhooks/{provider}", [], payload, {"Kassa-Signature": signature})
    send_and_check(http, "POST /v1/payments/webhooks/{provider}", sent, token=None, fingerprint=world.fingerprint)


# Not /readyz: under the fuzzer's load a backend may miss its 1 s health deadline, and 503 is then its answer.
_KNOWN_PREFIXES = ("/", "/v1/", "/v1/carts/", "/v1/checkout/", "/v1/orders/", "/v1/admin/", "/v1/payments/webhooks/",
                   "/v1/auth/guest", "/healthz")  # fmt: skip


@FUZZ_SETTINGS
@given(data=st.data())
def test_any_method_and_path(world: FuzzWorld, http: httpx.Client, data: st.DataObject) -> None:
    """Whatever the method and path (no route, a route's prefix with garbage after it), the gateway answers
    with a status below 500 and its Status JSON."""
    method = data.draw(st.sampled_from(("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")), label="method")
    segments = data.draw(st.lists(hostile_text().map(lambda t: quote(t[:200], safe="")), max_size=4), label="path")
    path = data.draw(st.sampled_from(_KNOWN_PREFIXES), label="prefix") + "/".join(segments)
    body = data.draw(st.one_of(st.none(), _BROKEN_BODIES, json_values.map(lambda v: json.dumps(v).encode())))
    token = data.draw(st.sampled_from((None, world.anchors.customer_token, world.anchors.admin_token)), label="token")
    sent = HttpInput(method, path, [], body, {})
    send_and_check(http, "any method and path", sent, token=token, fingerprint=world.fingerprint)
