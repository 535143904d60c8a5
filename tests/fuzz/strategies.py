"""Hypothesis strategies for request messages, derived from the protobuf descriptors.

Nothing here names an RPC's fields by hand except the *hints*: valid values keyed by field name
(``sku`` → a sku the fuzz catalog has, ``session_id`` → the fuzz customer's open session), so that a
request gets past the first check and its hostile field reaches the code that stores it. A field the
hints don't know gets a generic value of its type, so a new field or RPC is fuzzed without anyone
touching this file.

Three shapes of request per RPC, drawn with equal weight:

* ``any_message``: every field independently hostile or valid (hint) or absent;
* ``mutated(valid_message)``: a request built from hints only, then 1-3 fields (at any depth, in any
  repeated element) replaced by a hostile value of their type, or a repeated field blown past its cap;
* ``mutated(seed)``: the same, from a hand-built request the service accepts (``seeds``), for RPCs whose
  fields must agree with each other (an order's totals) before anything is stored.

Hostile values: NUL, C0/C1 control characters, line/paragraph separators, bidi overrides, non-BMP
characters, huge strings; integers at and past every boundary (negative, int32/int64 edges, sums that
overflow); enum numbers no enum defines; out-of-range Timestamps and Durations; oversized repeated fields.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf import descriptor, duration_pb2, field_mask_pb2, message, timestamp_pb2
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

__all__ = [
    "HOSTILE_CHARS",
    "Hints",
    "any_message",
    "assign",
    "hostile_text",
    "mutated",
    "request_strategy",
    "valid_message",
]

FD = descriptor.FieldDescriptor
Hints = Mapping[str, st.SearchStrategy[Any]]
Seed = Callable[[], message.Message]

HOSTILE_CHARS = (
    "\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f", "\x80", "\x85", "\x9f",
    "\t", "\n", "\r", "\u2028", "\u2029", "\u202e", "\u200b", "\u200f", "\ufeff", "\ufffd", "\uffff",
    "\U0001f600", "\U0010fffd", "\u0301", "é", "ß", "İ", "\u00a0", "%", "'", '"', "\\", "{", "<", "/",
)  # fmt: skip
# Strings a parser or a query might treat specially.
_SPECIAL_STRINGS = (
    "", " ", "   ", "\x00", "\x00\x00", "null", "None", "undefined", "-1", "0", "1e309", "NaN",
    "9223372036854775808", "-9223372036854775809", "00000000-0000-0000-0000-000000000000",
    "%00", "%2F", "../../etc/passwd", "' OR 1=1 --", "{{7*7}}", "${jndi:x}", "<script>", "\\u0000",
    "a\x00b", "tok_visa\x00", "US\x00", "USD\x00",
)  # fmt: skip
_HUGE_LENGTHS = (255, 256, 1_000, 10_000, 100_000)

_INT_BOUNDS: dict[int, tuple[int, int]] = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
    FD.TYPE_FIXED64: (0, 2**64 - 1),
}
_EDGES = (0, 1, -1, 2, 99, 100, 101, 999, 1000, 1001, 10**5, 10**6, 10**9, 2**31 - 1, 2**31, 2**32, 2**53 + 1,
          10**12, 10**15, 10**18, 2**62, -(2**31), -(10**12), -(2**62))  # fmt: skip
# Repeated fields this long are past every per-request cap in Kassa (the largest is 1000).
_OVERSIZED = (6, 11, 101, 1_001, 3_000)
# Timestamp.seconds outside 0001-01-01..9999-12-31 and Duration outside ±10,000 years are invalid.
_TS_EDGES = (-62135596801, -62135596800, 0, 253402300799, 253402300800, 2**62, -(2**62))
_DURATION_EDGES = (0, 1, -1, 86400, 86401, 315576000000, 315576000001, -315576000001, 2**62)


def _int_bounds(fd: descriptor.FieldDescriptor) -> tuple[int, int]:
    return _INT_BOUNDS[fd.type]


def hostile_text() -> st.SearchStrategy[str]:
    """Strings a service must refuse or store unharmed: control characters, odd Unicode, huge."""
    chars = st.one_of(st.sampled_from(HOSTILE_CHARS), st.characters(codec="utf-8"))
    repeated = st.sampled_from(("a", "é", "\x00", "\U0001f600", " "))
    return st.one_of(
        st.text(max_size=24),
        st.text(alphabet=chars, max_size=24),
        st.sampled_from(_SPECIAL_STRINGS),
        st.builds(lambda c, n: c * n, repeated, st.sampled_from(_HUGE_LENGTHS)),
    )


def _spliced(base: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A valid value with a hostile character put in, or padded past any length cap."""

    def splice(value: str, char: str, where: float) -> str:
        i = min(len(value), int(where * (len(value) + 1)))
        return value[:i] + char + value[i:]

    return st.one_of(
        st.builds(splice, base, st.sampled_from(HOSTILE_CHARS), st.floats(0, 1)),
        st.builds(lambda v, n: v + "x" * n, base, st.sampled_from(_HUGE_LENGTHS)),
        st.builds(lambda v: f" {v} ", base),
    )


def _hostile_int(fd: descriptor.FieldDescriptor) -> st.SearchStrategy[int]:
    lo, hi = _int_bounds(fd)
    return st.one_of(
        st.integers(lo, hi),
        st.sampled_from([e for e in (*_EDGES, lo, hi, lo + 1, hi - 1) if lo <= e <= hi]),
        st.integers(max(lo, -5), min(hi, 1005)),
    )


def _hostile_enum(fd: descriptor.FieldDescriptor) -> st.SearchStrategy[int]:
    numbers = [v.number for v in fd.enum_type.values]
    undefined = st.integers(-(2**31), 2**31 - 1).filter(lambda n: n not in numbers)
    return st.one_of(st.sampled_from(numbers), undefined, st.sampled_from([max(numbers) + 1, -1, 2**31 - 1]))


def _timestamp(hostile: bool) -> st.SearchStrategy[timestamp_pb2.Timestamp]:
    if not hostile:
        return st.integers(1_700_000_000, 2_100_000_000).map(lambda s: timestamp_pb2.Timestamp(seconds=s))
    seconds = st.one_of(st.sampled_from(_TS_EDGES), st.integers(-(2**63), 2**63 - 1))
    nanos = st.one_of(st.just(0), st.sampled_from((-1, 999_999_999, 10**9, -(2**31), 2**31 - 1)))
    return st.builds(lambda s, n: timestamp_pb2.Timestamp(seconds=s, nanos=n), seconds, nanos)


def _duration(hostile: bool) -> st.SearchStrategy[duration_pb2.Duration]:
    if not hostile:
        return st.integers(1, 3600).map(lambda s: duration_pb2.Duration(seconds=s))
    seconds = st.one_of(st.sampled_from(_DURATION_EDGES), st.integers(-(2**63), 2**63 - 1))
    nanos = st.one_of(st.just(0), st.sampled_from((-1, 1, 999_999_999, 10**9, -(2**31), 2**31 - 1)))
    return st.builds(lambda s, n: duration_pb2.Duration(seconds=s, nanos=n), seconds, nanos)


def _field_mask(owner: descriptor.Descriptor, hostile: bool) -> st.SearchStrategy[field_mask_pb2.FieldMask]:
    names = [
        f.name
        for f in owner.fields
        if f.message_type is None or f.message_type.full_name != "google.protobuf.FieldMask"
    ]
    path = st.sampled_from(names) if not hostile else st.one_of(st.sampled_from(names), hostile_text())
    return st.lists(path, max_size=4 if not hostile else 12).map(lambda p: field_mask_pb2.FieldMask(paths=p))


_WELL_KNOWN: dict[str, Callable[[descriptor.Descriptor, bool], st.SearchStrategy[Any]]] = {
    "google.protobuf.Timestamp": lambda _o, h: _timestamp(h),
    "google.protobuf.Duration": lambda _o, h: _duration(h),
    "google.protobuf.FieldMask": _field_mask,
}


def _hint(hints: Hints, fd: descriptor.FieldDescriptor) -> st.SearchStrategy[Any] | None:
    specific = hints.get(f"{fd.containing_type.name}.{fd.name}")
    return specific if specific is not None else hints.get(fd.name)


def _scalar(fd: descriptor.FieldDescriptor, hints: Hints, *, hostile: bool) -> st.SearchStrategy[Any]:
    """One value (one element, for a repeated field) of ``fd``: hostile or built from the hints."""
    hint = _hint(hints, fd)
    if fd.type == FD.TYPE_STRING:
        plain = (
            hint
            if hint is not None
            else st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
        )
        return st.one_of(hostile_text(), _spliced(plain), plain) if hostile else plain
    if fd.type == FD.TYPE_BYTES:
        plain = hint if hint is not None else st.binary(max_size=64)
        huge = st.sampled_from(_HUGE_LENGTHS).map(lambda n: b"\x00" * n)
        return st.one_of(st.binary(max_size=256), huge, plain) if hostile else plain
    if fd.type == FD.TYPE_BOOL:
        return st.booleans()
    if fd.type == FD.TYPE_ENUM:
        plain = hint if hint is not None else st.sampled_from([v.number for v in fd.enum_type.values])
        return st.one_of(_hostile_enum(fd), plain) if hostile else plain
    if fd.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return st.floats(allow_nan=hostile, allow_infinity=hostile, width=64 if fd.type == FD.TYPE_DOUBLE else 32)
    if fd.type in _INT_BOUNDS:
        lo, hi = _int_bounds(fd)
        plain = hint if hint is not None else st.integers(max(lo, 0), min(hi, 100))
        return st.one_of(_hostile_int(fd), plain) if hostile else plain
    raise TypeError(f"no strategy for {fd.full_name} (type {fd.type})")


def _value(fd: descriptor.FieldDescriptor, hints: Hints, depth: int, *, hostile: bool) -> st.SearchStrategy[Any]:
    """A value for one (non-repeated) field or one element of a repeated field."""
    if fd.message_type is None:
        return _scalar(fd, hints, hostile=hostile)
    well_known = _WELL_KNOWN.get(fd.message_type.full_name)
    if well_known is not None:
        hint = _hint(hints, fd)
        if hint is not None and not hostile:
            return hint
        return well_known(fd.containing_type, hostile)
    hint = _hint(hints, fd)
    if hint is not None and not hostile:
        return hint
    if hostile:
        return any_message(fd.message_type, hints, depth + 1)
    return valid_message(fd.message_type, hints, depth + 1)


def _repeated(
    fd: descriptor.FieldDescriptor, hints: Hints, depth: int, *, hostile: bool
) -> st.SearchStrategy[list[Any]]:
    element = _value(fd, hints, depth, hostile=hostile)
    if not hostile:
        return st.lists(element, min_size=1, max_size=3)
    # Copies of one plain element: past the cap in count, not in bytes.
    oversized = st.builds(lambda e, n: [e] * n, _value(fd, hints, depth, hostile=False), st.sampled_from(_OVERSIZED))
    return st.one_of(st.lists(element, max_size=4), oversized)


def _field(fd: descriptor.FieldDescriptor, hints: Hints, depth: int, *, hostile: bool) -> st.SearchStrategy[Any]:
    if fd.is_repeated:
        return _repeated(fd, hints, depth, hostile=hostile)
    return _value(fd, hints, depth, hostile=hostile)


def _build(desc: descriptor.Descriptor, values: dict[str, Any]) -> message.Message:
    return GetMessageClass(desc)(**values)


_MAX_DEPTH = 6


def any_message(desc: descriptor.Descriptor, hints: Hints, depth: int = 0) -> st.SearchStrategy[message.Message]:
    """Each field absent, valid (from the hints) or hostile, independently; nested messages likewise."""
    if depth > _MAX_DEPTH:
        return st.just(GetMessageClass(desc)())

    def either(fd: descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
        return st.one_of(_field(fd, hints, depth, hostile=True), _field(fd, hints, depth, hostile=False))

    optional = {fd.name: st.deferred(lambda fd=fd: either(fd)) for fd in desc.fields}
    return st.fixed_dictionaries({}, optional=optional).map(lambda v: _build(desc, v))


def valid_message(desc: descriptor.Descriptor, hints: Hints, depth: int = 0) -> st.SearchStrategy[message.Message]:
    """Every field from its hint (or a plain value of its type): what a well-behaved client would send."""
    if depth > _MAX_DEPTH:
        return st.just(GetMessageClass(desc)())
    required = {fd.name: st.deferred(lambda fd=fd: _field(fd, hints, depth, hostile=False)) for fd in desc.fields}
    return st.fixed_dictionaries(required).map(lambda v: _build(desc, v))


def _slots(msg: message.Message) -> list[tuple[message.Message, descriptor.FieldDescriptor]]:
    """Every (message, field) in ``msg`` and the messages set inside it: the places a mutation can land."""
    out: list[tuple[message.Message, descriptor.FieldDescriptor]] = []
    for fd in msg.DESCRIPTOR.fields:
        out.append((msg, fd))
        if fd.message_type is None or fd.message_type.full_name in _WELL_KNOWN:
            continue
        if fd.is_repeated:
            for item in getattr(msg, fd.name):
                out.extend(_slots(item))
        elif msg.HasField(fd.name):
            out.extend(_slots(getattr(msg, fd.name)))
    return out


def assign(target: message.Message, fd: descriptor.FieldDescriptor, value: Any) -> None:
    if fd.is_repeated:
        target.ClearField(fd.name)
        field = getattr(target, fd.name)
        if fd.message_type is not None:
            for item in value:
                field.add().CopyFrom(item)
        else:
            field.extend(value)
    elif fd.message_type is not None:
        getattr(target, fd.name).CopyFrom(value)
    else:
        setattr(target, fd.name, value)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[message.Message], hints: Hints) -> message.Message:
    """``base`` with 1-3 of its fields (anywhere inside it) replaced by hostile values of their type."""
    msg = draw(base)
    out = type(msg)()
    out.CopyFrom(msg)
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(out)
        if not slots:
            break
        target, fd = draw(st.sampled_from(slots))
        action = draw(st.sampled_from(("hostile", "hostile", "clear")))
        if action == "clear":
            target.ClearField(fd.name)
            continue
        assign(target, fd, draw(_field(fd, hints, 1, hostile=True)))
    return out


def request_strategy(
    desc: descriptor.Descriptor, hints: Hints, seed: Seed | None = None
) -> st.SearchStrategy[message.Message]:
    """The requests an RPC taking ``desc`` is fuzzed with (see the module docstring)."""
    shapes = [any_message(desc, hints), mutated(valid_message(desc, hints), hints)]
    if seed is not None:
        seeded = st.builds(seed)
        shapes += [
            seeded.flatmap(lambda m: mutated(st.just(m), hints)),
            seeded.flatmap(lambda m: mutated(st.just(m), hints)),
        ]
    return st.one_of(shapes)
