"""gateway.codec against json_format, on every message type the REST routes reach (requests, replies, and every
message inside them, well-known types included).

render: the same JSON, keys in the same order, for random messages (defaults, -0.0, NaN and infinities, unknown
enum numbers, nested and repeated messages, Timestamps, FieldMasks, Structs); the same exception where
json_format raises. parse (through gateway.transcoding, as the gateway runs it): for JSON a client might send,
plain or malformed (either spelling, int64 as string or number, enum by name or number, wrong types, nulls,
unknown and duplicated fields), the same message, or the same refusal naming the same field, as json_format alone.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
from google.protobuf import descriptor, json_format, message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.gateway import canned_replies, codec_cases
from gateway import codec, transcoding
from gateway.routing import build_route_table
from kernel import errors

pytestmark = pytest.mark.unit

_FD = descriptor.FieldDescriptor
_INT_RANGES = {
    _FD.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    _FD.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    _FD.CPPTYPE_UINT32: (0, 2**32 - 1),
    _FD.CPPTYPE_UINT64: (0, 2**64 - 1),
}
_MAX_DEPTH = 3
# Per message type and property: about 100 types, so a few thousand examples in all.
EXAMPLES = 15


def _reachable() -> dict[str, descriptor.Descriptor]:
    found: dict[str, descriptor.Descriptor] = {}

    def walk(desc: descriptor.Descriptor) -> None:
        if desc.full_name in found:
            return
        found[desc.full_name] = desc
        for fd in desc.fields:
            if fd.message_type is not None:
                walk(fd.message_type)

    for route in build_route_table().routes:
        walk(route.rpc.descriptor.input_type)
        walk(route.rpc.descriptor.output_type)
    return found


REACHABLE = _reachable()
# The map entries (Struct's fields) are no message anyone renders or parses alone.
TYPES = sorted(name for name, desc in REACHABLE.items() if not desc.GetOptions().map_entry)
REQUESTS = sorted({route.rpc.descriptor.input_type.full_name for route in build_route_table().routes})


def test_the_route_table_reaches_the_types_this_file_means() -> None:
    assert len(TYPES) > 90
    assert {"google.protobuf.Timestamp", "google.protobuf.FieldMask", "google.protobuf.Struct"} <= set(TYPES)


# -- random messages -------------------------------------------------------------------------------------


def _scalar(fd: descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    cpp = fd.cpp_type
    if cpp in _INT_RANGES:
        low, high = _INT_RANGES[cpp]
        return st.one_of(st.sampled_from([0, 1, -1 if low else 2, low, high]), st.integers(low, high))
    if cpp in (_FD.CPPTYPE_DOUBLE, _FD.CPPTYPE_FLOAT):
        special = st.sampled_from([0.0, -0.0, float("nan"), float("inf"), float("-inf"), 1.5, 1e300])
        return st.one_of(special, st.floats(width=32 if cpp == _FD.CPPTYPE_FLOAT else 64))
    if cpp == _FD.CPPTYPE_BOOL:
        return st.booleans()
    if cpp == _FD.CPPTYPE_ENUM:
        known = [v.number for v in fd.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-(2**31), 2**31 - 1))
    if fd.type == _FD.TYPE_BYTES:
        return st.binary(max_size=8)
    return st.one_of(st.sampled_from(["", "a", "SKU-1", "é", "😀"]), st.text(max_size=12))


@st.composite
def _message(draw: st.DrawFn, desc: descriptor.Descriptor, depth: int = 0) -> message.Message:
    msg = GetMessageClass(desc)()
    name = desc.full_name
    if name == "google.protobuf.Timestamp":
        msg.seconds = draw(st.integers(-62135596800, 253402300799))
        msg.nanos = draw(st.sampled_from([0, 1_000_000, 123_456_000, 999_999_999]) | st.integers(0, 999_999_999))
        return msg
    if name == "google.protobuf.FieldMask":
        path = st.from_regex(r"[a-z][a-z0-9]{0,5}(_[a-z][a-z0-9]{0,3}){0,2}(\.[a-z]{1,4})?", fullmatch=True)
        msg.paths.extend(draw(st.lists(st.one_of(path, st.text(max_size=4)), max_size=3)))
        return msg
    if name == "google.protobuf.Struct":
        json_value = st.recursive(
            st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
            lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
            max_leaves=4,
        )
        msg.update(draw(st.dictionaries(st.text(max_size=4), json_value, max_size=3)))
        return msg
    for fd in desc.fields:
        if not draw(st.booleans()):
            continue
        if fd.message_type is not None:
            if depth >= _MAX_DEPTH or fd.message_type.GetOptions().map_entry:
                continue
            if fd.is_repeated:
                for item in draw(st.lists(_message(fd.message_type, depth + 1), max_size=2)):
                    getattr(msg, fd.name).add().CopyFrom(item)
            else:
                getattr(msg, fd.name).CopyFrom(draw(_message(fd.message_type, depth + 1)))
        elif fd.is_repeated:
            getattr(msg, fd.name).extend(draw(st.lists(_scalar(fd), max_size=3)))
        else:
            setattr(msg, fd.name, draw(_scalar(fd)))
    return msg


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        value = call()
    except Exception as exc:  # the type is what is compared
        return "raised", type(exc).__name__
    return "ok", json.dumps(value)  # the text: key order, -0.0 and every value's type count


@pytest.mark.parametrize("name", TYPES)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_render_is_json_formats_json(name: str, data: st.DataObject) -> None:
    msg = data.draw(_message(REACHABLE[name]))
    expected = _outcome(lambda: json_format.MessageToDict(msg, always_print_fields_with_no_presence=True))
    assert _outcome(lambda: codec.render(msg)) == expected


def test_render_of_the_checkout_replies() -> None:
    for reply in canned_replies().values():
        expected = json.dumps(json_format.MessageToDict(reply, always_print_fields_with_no_presence=True))
        assert json.dumps(transcoding.render(reply)) == expected


def test_an_empty_message_shows_every_field_without_presence() -> None:
    cart = GetMessageClass(REACHABLE["kassa.checkout.v1.Cart"])()
    assert codec.render(cart) == {
        "cartId": "",
        "customerId": "",
        "status": "CART_STATUS_UNSPECIFIED",
        "currencyCode": "",
        "items": [],
    }


# -- JSON a client might send ----------------------------------------------------------------------------

_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([1.0, 1.5, -0.0, float("nan"), float("inf"), 1e300, 2.0**63]),
    st.sampled_from(["", "12", "-7", "007", "+5", " 1", "1e3", "1.0", "abc", "NaN", "Infinity", "٣", "\ud800", "true"]),
    st.sampled_from(["2026-12-07T04:00:00Z", "1970-01-01T00:00:00.5Z", "bad-time", "a,b", "fooBar", "a_b", "1.5s"]),
    st.lists(st.integers(0, 3) | st.text(max_size=2) | st.none(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers() | st.none(), max_size=2),
)


def _json_value(draw: st.DrawFn, fd: descriptor.FieldDescriptor, value: Any) -> Any:
    """A field's canonical JSON value as a client might write it instead (or something else entirely)."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(_JUNK)
    if fd.cpp_type == _FD.CPPTYPE_ENUM and choice == 1 and not fd.is_repeated:
        known = [v.number for v in fd.enum_type.values]
        return draw(st.sampled_from(known) | st.integers(-3, 100))
    if fd.cpp_type in (_FD.CPPTYPE_INT64, _FD.CPPTYPE_UINT64) and choice == 1 and not fd.is_repeated:
        return int(value) if isinstance(value, str) and value.lstrip("-").isdigit() else value
    if fd.cpp_type == _FD.CPPTYPE_DOUBLE and choice == 1 and not fd.is_repeated and isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**60 else str(value)
    if fd.message_type is not None and isinstance(value, dict) and not fd.message_type.full_name.startswith("google."):
        return _client_object(draw, fd.message_type, value)
    if fd.message_type is not None and isinstance(value, list) and not fd.message_type.full_name.startswith("google."):
        return [_client_object(draw, fd.message_type, v) if isinstance(v, dict) else v for v in value]
    return value


def _client_object(draw: st.DrawFn, desc: descriptor.Descriptor, canonical: dict[str, Any]) -> dict[str, Any]:
    by_json = {fd.json_name: fd for fd in desc.fields}
    out: dict[str, Any] = {}
    for key, value in canonical.items():
        fd = by_json[key]
        if draw(st.integers(0, 9)) == 0:
            continue  # left out
        spelled = fd.name if draw(st.booleans()) else key
        out[spelled] = _json_value(draw, fd, value)
        if draw(st.integers(0, 19)) == 0:
            out[fd.name if spelled == key else key] = _json_value(draw, fd, value)  # both spellings
    if draw(st.integers(0, 14)) == 0:
        out[draw(st.sampled_from(["foo", "", " ", "[ext]", "Sku", "cart-id"]))] = draw(_JUNK)
    return dict(draw(st.permutations(list(out.items()))))


def _reference(data: dict[str, Any], desc: descriptor.Descriptor) -> tuple[str, Any]:
    """What the gateway answered before gateway.codec: json_format.ParseDict, its refusal located by _locate."""
    msg = GetMessageClass(desc)()
    try:
        json_format.ParseDict(data, msg)
    except json_format.ParseError:
        return "refused", transcoding._locate(data, desc, "")
    except Exception as exc:
        return "raised", type(exc).__name__
    return "ok", msg.SerializeToString(deterministic=True)


def _gateway(data: dict[str, Any], desc: descriptor.Descriptor) -> tuple[str, Any]:
    msg = GetMessageClass(desc)()
    try:
        transcoding._parse_into(data, msg)
    except errors.InvalidArgument as exc:
        return "refused", (exc.field, exc.message.split(": ", 1)[1])
    except Exception as exc:
        return "raised", type(exc).__name__
    return "ok", msg.SerializeToString(deterministic=True)


@pytest.mark.parametrize("name", TYPES)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_parse_is_json_formats_parse(name: str, data: st.DataObject) -> None:
    desc = REACHABLE[name]
    msg = data.draw(_message(desc))
    try:
        canonical = json_format.MessageToDict(msg)
    except (json_format.SerializeToJsonError, ValueError):  # a FieldMask path with no JSON form
        canonical = {}
    if not isinstance(canonical, dict) or name.startswith("google.protobuf."):
        # Never a request of its own: what matters is that the fast path leaves it to json_format.
        sent: Any = data.draw(st.just({"value": canonical}) | st.dictionaries(st.text(max_size=3), _JUNK, max_size=2))
    else:
        sent = _client_object(data.draw, desc, canonical)
    assert _gateway(copy.deepcopy(sent), desc) == _reference(copy.deepcopy(sent), desc)
    # Whatever the fast path takes, json_format takes too, with the same message.
    fast = GetMessageClass(desc)()
    try:
        codec.parse(copy.deepcopy(sent), fast)
    except codec.Unsupported:
        return
    slow = GetMessageClass(desc)()
    json_format.ParseDict(copy.deepcopy(sent), slow)
    assert fast.SerializeToString(deterministic=True) == slow.SerializeToString(deterministic=True)


@pytest.mark.parametrize("name", REQUESTS)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_canonical_json_of_a_request_takes_the_fast_path(name: str, data: st.DataObject) -> None:
    """What the SDK and the web clients send (json_format's own JSON, either spelling) never needs json_format."""
    desc = REACHABLE[name]
    msg = data.draw(_message(desc).filter(_finite))
    for preserving in (False, True):
        sent = json_format.MessageToDict(msg, preserving_proto_field_name=preserving)
        fast = GetMessageClass(desc)()
        codec.parse(sent, fast)
        assert fast.SerializeToString(deterministic=True) == msg.SerializeToString(deterministic=True)


def _finite(msg: message.Message) -> bool:
    """No NaN/infinite double and no unknown enum number: their JSON (a string, a number) is json_format's to read."""
    for fd, value in msg.ListFields():
        values = value if fd.is_repeated else [value]
        for v in values:
            if fd.message_type is not None:
                if fd.message_type.full_name.startswith("google.protobuf.") and fd.message_type.name != "Timestamp":
                    return False
                if not _finite(v):
                    return False
            elif fd.cpp_type == _FD.CPPTYPE_DOUBLE:
                if not (math.isfinite(v) and abs(v) < 2**53):
                    return False
            elif fd.cpp_type == _FD.CPPTYPE_ENUM and v not in fd.enum_type.values_by_number:
                return False
    return True


def test_the_checkout_flow_takes_the_fast_path() -> None:
    for route, parts, _reply in codec_cases():
        if parts.body:
            codec.parse(json.loads(parts.body), route.rpc.request_cls())


@pytest.mark.parametrize(
    "body",
    [
        {"quantity": "3"},
        {"quantity": 3.0},
        {"quantity": None},
        {"sku": None},
        {"sku": 7},
        {"cartId": "a", "cart_id": "b"},
        {"quantity": "1e3"},
        {"quantity": 2**63},
    ],
)
def test_what_the_fast_path_leaves_is_json_formats(body: dict[str, Any]) -> None:
    desc = REACHABLE["kassa.checkout.v1.AddCartItemRequest"]
    assert _gateway(copy.deepcopy(body), desc) == _reference(copy.deepcopy(body), desc)


def test_each_fallback_is_a_fresh_exception_holding_only_its_own_traceback() -> None:
    # A shared instance would chain every raise's frames (and the request bodies in them) for the process's life.
    desc = REACHABLE["kassa.checkout.v1.AddCartItemRequest"]
    raised = []
    for _ in range(3):
        with pytest.raises(codec.Unsupported) as caught:
            codec.parse({"quantity": None}, GetMessageClass(desc)())
        raised.append(caught.value)
    assert len({id(exc) for exc in raised}) == 3
    depths = set()
    for exc in raised:
        tb, depth = exc.__traceback__, 0
        while tb is not None:
            tb, depth = tb.tb_next, depth + 1
        depths.add(depth)
    assert len(depths) == 1
