"""proto3 JSON for the gateway, compiled once per message type: the same JSON as ``json_format``, without its
per-call reflection.

``json_format`` looks every field up again on every call (its descriptor, its C++ type, whether it is a map, a
well-known type, ...). The gateway renders the same few message types all day, so :func:`render` reads each
type's descriptor once into a small plan (per field: its JSON name and a converter) and then only reads values.
It gives exactly what ``json_format.MessageToDict(msg, always_print_fields_with_no_presence=True)`` gives, keys in
the same order: the fields that are set (``ListFields``: by field number) first, then the fields without presence
left at their default, in declaration order. Well-known types take json_format's own forms (Timestamp, Duration
and FieldMask their ``ToJsonString``; the rarer ones json_format itself).

:func:`parse` is the other way, JSON object -> message, with a fast path for the plain, well-typed input clients
send: strings, integers (int64 also as a decimal string), enum names, booleans, finite doubles, nested objects,
lists, Timestamp/Duration/FieldMask strings, either spelling of each field name. Anything else (null, an integer
written as 1.0 or "1e3", an enum by number, a Struct, a duplicate field spelled both ways, a wrong type, an unknown
field, ...) is not decided here: :class:`Unsupported` is raised and the caller hands the input to
``json_format.ParseDict``, whose answer (the message, or the refusal) stays the one the client gets. Only what
``json_format`` accepts with the very same result is taken by the fast path; ``tests/gateway/unit/test_codec.py``
checks both directions against ``json_format`` on every message type the REST routes reach.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable
from typing import Any, cast

from google.protobuf import descriptor, descriptor_pool, json_format, message
from google.protobuf.internal import type_checkers

__all__ = ["Unsupported", "parse", "render"]

_FD = descriptor.FieldDescriptor
Converter = Callable[[Any], Any]

# What json_format prints and parses by ToJsonString / FromJsonString.
_STRING_FORM = frozenset({"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"})
_INT64_CPP = frozenset({_FD.CPPTYPE_INT64, _FD.CPPTYPE_UINT64})
_INT_CPP = frozenset({_FD.CPPTYPE_INT32, _FD.CPPTYPE_INT64, _FD.CPPTYPE_UINT32, _FD.CPPTYPE_UINT64})
# json_format's own limit is 100 nested messages; deeper input is left to it.
_MAX_DEPTH = 64
_DECIMAL = re.compile(r"-?[0-9]+\Z")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _custom_enum_names() -> bool:
    """Whether enum values may carry a custom JSON name (the pb.enumvalue.json option), which json_format honours."""
    try:
        descriptor_pool.Default().FindExtensionByName("pb.enumvalue.json")
    except KeyError:
        return False
    return True


def _json_format_dict(msg: message.Message) -> Any:
    return json_format.MessageToDict(msg, always_print_fields_with_no_presence=True)


# -- message -> JSON -------------------------------------------------------------------------------------


Printer = Callable[[message.Message], Any]
# By descriptor (not name): a message type of another descriptor pool gets its own plan.
_printers: dict[descriptor.Descriptor, Printer] = {}


def render(msg: message.Message) -> Any:
    """``json_format.MessageToDict(msg, always_print_fields_with_no_presence=True)``, compiled per message type."""
    desc = cast(descriptor.Descriptor, msg.DESCRIPTOR)
    printer = _printers.get(desc)
    if printer is None:
        printer = _printer(desc)
    return printer(msg)


def _printer(desc: descriptor.Descriptor) -> Printer:
    found = _printers.get(desc)
    if found is not None:
        return found
    if desc.full_name in _STRING_FORM:
        _printers[desc] = _to_json_string
        return _to_json_string
    if (
        desc.full_name.startswith("google.protobuf.")
        or desc.extension_ranges
        or not all(_compilable(fd) for fd in desc.fields)
    ):
        # Any, Struct, Value, wrappers, extendable messages, closed enums, ...: json_format's own handling.
        _printers[desc] = _json_format_dict
        return _json_format_dict
    # The plan is filled after the printer is registered, so a recursive type finds its own printer.
    convert: dict[descriptor.FieldDescriptor, tuple[str, Converter]] = {}
    defaults: list[tuple[str, Callable[[], Any]]] = []
    every = len(desc.fields)

    def print_message(msg: message.Message) -> dict[str, Any]:
        js: dict[str, Any] = {}
        for fd, value in msg.ListFields():
            name, conv = convert[fd]
            try:
                js[name] = conv(value)
            except ValueError as exc:  # a FieldMask path with no JSON form, say: json_format's wording
                raise json_format.SerializeToJsonError(f"Failed to serialize {fd.name} field: {exc}.") from exc
        if len(js) < every:
            # json_format's order: the set fields (by number), then the unset ones without presence.
            for name, default in defaults:
                if name not in js:
                    js[name] = default()
        return js

    _printers[desc] = print_message
    for fd in desc.fields:
        conv = cast(Converter, _field_converter(fd))
        convert[fd] = (fd.json_name, conv)
        if not fd.has_presence:
            defaults.append((fd.json_name, _default_factory(fd, conv)))
    return print_message


def _compilable(fd: descriptor.FieldDescriptor) -> bool:
    """Whether this field's values convert here (enums json_format may refuse or rename stay json_format's)."""
    if _is_map(fd):
        fd = _msg(fd).fields_by_name["value"]
    if fd.cpp_type != _FD.CPPTYPE_ENUM:
        return True
    enum = _enum(fd)
    return not enum.is_closed and enum.full_name != "google.protobuf.NullValue" and not _custom_enum_names()


def _to_json_string(msg: message.Message) -> Any:
    return cast(Any, msg).ToJsonString()


def _default_factory(fd: descriptor.FieldDescriptor, conv: Converter) -> Callable[[], Any]:
    if _is_map(fd):
        return dict
    if fd.is_repeated:
        return list
    value = conv(fd.default_value)
    return lambda: value


def _is_map(fd: descriptor.FieldDescriptor) -> bool:
    return fd.message_type is not None and _msg(fd).GetOptions().map_entry


def _msg(fd: descriptor.FieldDescriptor) -> descriptor.Descriptor:
    return cast(descriptor.Descriptor, fd.message_type)


def _enum(fd: descriptor.FieldDescriptor) -> descriptor.EnumDescriptor:
    return cast(descriptor.EnumDescriptor, fd.enum_type)


def _field_converter(fd: descriptor.FieldDescriptor) -> Converter | None:
    """The converter of a whole field's value (a repeated field's list, a map's dict); None: not compiled."""
    if _is_map(fd):
        key_fd = _msg(fd).fields_by_name["key"]
        value_conv = _value_converter(_msg(fd).fields_by_name["value"])
        if value_conv is None:
            return None
        is_bool_key = key_fd.cpp_type == _FD.CPPTYPE_BOOL

        def convert_map(value: Any, conv: Converter = value_conv) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for key in value:
                recorded = ("true" if key else "false") if is_bool_key else str(key)
                out[recorded] = conv(value[key])
            return out

        return convert_map
    conv = _value_converter(fd)
    if conv is None or not fd.is_repeated:
        return conv
    if conv is _same:
        return list
    return lambda values: [conv(v) for v in values]


def _same(value: Any) -> Any:
    return value


def _value_converter(fd: descriptor.FieldDescriptor) -> Converter | None:
    """The converter of one value of the field (json_format's ``_FieldToJsonObject``)."""
    cpp = fd.cpp_type
    if cpp == _FD.CPPTYPE_MESSAGE:
        return _printer(_msg(fd))
    if cpp == _FD.CPPTYPE_ENUM:
        names = {number: value.name for number, value in _enum(fd).values_by_number.items()}

        def convert_enum(value: int) -> Any:
            return names.get(value, value)

        return convert_enum
    if cpp == _FD.CPPTYPE_STRING:
        if fd.type == _FD.TYPE_BYTES:
            return lambda value: base64.b64encode(value).decode("utf-8")
        return _same  # already a str
    if cpp == _FD.CPPTYPE_BOOL:
        return _same  # already a bool
    if cpp in _INT64_CPP:
        return str
    if cpp in (_FD.CPPTYPE_INT32, _FD.CPPTYPE_UINT32):
        return _same
    if cpp in (_FD.CPPTYPE_DOUBLE, _FD.CPPTYPE_FLOAT):
        single = cpp == _FD.CPPTYPE_FLOAT

        def convert_float(value: float) -> Any:
            if math.isinf(value):
                return "-Infinity" if value < 0.0 else "Infinity"
            if math.isnan(value):
                return "NaN"
            return type_checkers.ToShortestFloat(value) if single else value

        return convert_float
    return None


# -- JSON -> message -------------------------------------------------------------------------------------


class Unsupported(Exception):
    """The fast path does not decide this input: parse it with json_format (from a fresh message).

    Raised new each time: one shared instance would gather every raise's traceback (and the frames, with the
    request bodies, they hold) for the life of the process."""


# How a field is filled: a scalar converter, or one of these for messages.
_MESSAGE = "message"
_STRING_MESSAGE = "string-message"


class _Field:
    __slots__ = ("kind", "name", "number", "plan", "repeated")

    def __init__(self, fd: descriptor.FieldDescriptor, kind: Any, plan: _Plan | None) -> None:
        self.name = fd.name
        self.number = fd.number
        self.repeated = fd.is_repeated
        self.kind = kind
        self.plan = plan


class _Plan:
    """One message type's fields by both their spellings (json_name first, as json_format looks them up);
    ``ok`` is False for a type whose JSON form is not an object of its fields (Timestamp, Struct, ...)."""

    __slots__ = ("fields", "ok")

    def __init__(self) -> None:
        self.fields: dict[str, _Field | None] = {}
        self.ok = True


_plans: dict[descriptor.Descriptor, _Plan] = {}


def parse(data: dict[str, Any], msg: message.Message) -> None:
    """Fill the fresh ``msg`` from the JSON object ``data`` as ``json_format.ParseDict`` would, or raise
    :class:`Unsupported` (``msg`` may then be partly filled: parse again into a fresh or cleared one)."""
    _fill(data, msg, _plan(cast(descriptor.Descriptor, msg.DESCRIPTOR)), 1)


def _plan(desc: descriptor.Descriptor) -> _Plan:
    found = _plans.get(desc)
    if found is not None:
        return found
    plan = _Plan()
    _plans[desc] = plan
    if desc.full_name.startswith("google.protobuf."):
        plan.ok = False
    elif not desc.extension_ranges and not desc.oneofs:  # extensions and oneofs: json_format's (no field known)
        compiled = [(fd, _parse_field(fd)) for fd in desc.fields]
        fields: dict[str, _Field | None] = {fd.name: field for fd, field in compiled}
        fields.update((fd.json_name, field) for fd, field in compiled)
        plan.fields = fields
    return plan


def _parse_field(fd: descriptor.FieldDescriptor) -> _Field | None:
    if _is_map(fd):
        return None
    cpp = fd.cpp_type
    if cpp == _FD.CPPTYPE_MESSAGE:
        sub = _msg(fd)
        if sub.full_name in _STRING_FORM:
            return _Field(fd, _STRING_MESSAGE, None)
        if sub.full_name.startswith("google.protobuf."):
            return None
        return _Field(fd, _MESSAGE, _plan(sub))
    conv = _scalar_parser(fd)
    return None if conv is None else _Field(fd, conv, None)


def _scalar_parser(fd: descriptor.FieldDescriptor) -> Converter | None:
    cpp = fd.cpp_type
    if cpp == _FD.CPPTYPE_STRING:
        return None if fd.type == _FD.TYPE_BYTES else _parse_string
    if cpp in _INT_CPP:
        return _parse_integer
    if cpp == _FD.CPPTYPE_BOOL:
        return _parse_bool
    if cpp == _FD.CPPTYPE_DOUBLE:
        return _parse_double
    if cpp == _FD.CPPTYPE_ENUM:
        numbers = {name: value.number for name, value in _enum(fd).values_by_name.items()}

        def parse_enum(value: Any) -> int:
            if type(value) is str:
                number = numbers.get(value)
                if number is not None:
                    return number
            raise Unsupported

        return parse_enum
    return None  # float (single precision): its range checks are json_format's


def _parse_string(value: Any) -> str:
    if type(value) is str and (value.isascii() or _SURROGATE.search(value) is None):
        return value
    raise Unsupported


def _parse_integer(value: Any) -> int:
    if type(value) is int:
        return value
    if type(value) is str and _DECIMAL.match(value):
        return int(value)
    raise Unsupported


def _parse_bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    raise Unsupported


def _parse_double(value: Any) -> float:
    if type(value) is float:
        if math.isfinite(value):
            return value
    elif type(value) is int and abs(value) < 2**53:
        return float(value)
    raise Unsupported


def _fill(data: Any, msg: message.Message, plan: _Plan, depth: int) -> None:
    if type(data) is not dict or depth > _MAX_DEPTH or not plan.ok:
        raise Unsupported
    fields = plan.fields
    seen: set[int] = set()
    for key, value in data.items():
        field = fields.get(key)
        if field is None or value is None or field.number in seen:
            raise Unsupported
        seen.add(field.number)
        kind = field.kind
        try:
            if field.repeated:
                if type(value) is not list:
                    raise Unsupported
                container = getattr(msg, field.name)
                if kind is _MESSAGE:
                    sub_plan = cast(_Plan, field.plan)
                    for item in value:
                        _fill(item, container.add(), sub_plan, depth + 1)
                elif kind is _STRING_MESSAGE:
                    for item in value:
                        _from_string(container.add(), item)
                else:
                    container.extend([kind(item) for item in value])
            elif kind is _MESSAGE:
                sub = getattr(msg, field.name)
                sub.SetInParent()
                _fill(value, sub, cast(_Plan, field.plan), depth + 1)
            elif kind is _STRING_MESSAGE:
                sub = getattr(msg, field.name)
                sub.SetInParent()
                _from_string(sub, value)
            else:
                setattr(msg, field.name, kind(value))
        except (ValueError, TypeError, OverflowError) as exc:
            # Out of range for the field, or anything else the message refuses: json_format's to word.
            raise Unsupported from exc


def _from_string(sub: message.Message, value: Any) -> None:
    if type(value) is not str:
        raise Unsupported
    try:
        cast(Any, sub).FromJsonString(value)
    except Exception as exc:  # whatever it is, json_format decides what the client hears
        raise Unsupported from exc
