"""HTTP request -> protobuf request, protobuf response -> JSON (the proto3 canonical JSON mapping).

Why it is strict: a field the client misspelled must not be silently dropped (a checkout without the
shipping address the customer thought they sent), so unknown fields and malformed values are
refused with INVALID_ARGUMENT naming the field (DESIGN.md §4 invariant 6, "silent corruption"),
before any backend is called.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from google.protobuf import descriptor, json_format, message
from google.protobuf.message_factory import GetMessageClass

from gateway import codec
from gateway.routing import Route
from kernel import errors

__all__ = ["BODY_FIELD", "IDEMPOTENCY_FIELD", "RequestParts", "build_request", "render"]

IDEMPOTENCY_FIELD = "idempotency_key"
MAX_IDEMPOTENCY_KEY_LENGTH = 255

# RPCs that are unsafe to run without a client-chosen key: a double click must not place two orders
# (DESIGN.md §4 invariant 2).
IDEMPOTENCY_REQUIRED: frozenset[str] = frozenset({"/kassa.checkout.v1.CheckoutService/ConfirmCheckout"})

_FD = descriptor.FieldDescriptor
_PARSE_PREFIX = re.compile(r"^(?:Failed to parse \S+ field: )+")
_AT_SUFFIX = re.compile(r"\s+at\s+\S+?\.?$")


@dataclass(frozen=True)
class RequestParts:
    """What the HTTP request carries: path variables, query string, raw body, Idempotency-Key header."""

    path_params: Mapping[str, str]
    query: Iterable[tuple[str, str]]
    body: bytes
    idempotency_key: str | None = None


def build_request(route: Route, parts: RequestParts) -> message.Message:
    """Build the RPC request: body per the rule's ``body``, then query parameters, then path variables.

    Path variables win over the body (the URL names the resource). With ``body: "*"`` every field is
    in the body, so a query string is refused rather than ignored.
    """
    cls = route.rpc.request_cls
    msg = cls()
    desc = cast(descriptor.Descriptor, msg.DESCRIPTOR)  # upb or pure-Python: the same API
    query = list(parts.query)
    if route.body:
        data = _load_json_object(parts.body)
        if route.body != "*":
            data = {route.body: data}
        _parse_into(data, msg)
    if query:
        if route.body == "*":
            raise errors.InvalidArgument(_shown(query[0][0]), "query parameters are not accepted on this route")
        _merge(_nest(desc, query, source="query parameter"), msg)
    if parts.path_params:
        _merge(_nest(desc, parts.path_params.items(), source="path variable"), msg)
    _apply_idempotency_key(route, msg, parts.idempotency_key)
    return msg


def render(msg: message.Message) -> dict[str, Any]:
    """Proto3 JSON with lowerCamelCase names and enum names.

    Fields at their default value are included so clients see a stable shape (an empty cart has
    ``"items": []``, a first webhook delivery ``"duplicate": false``). Exactly
    ``json_format.MessageToDict(msg, always_print_fields_with_no_presence=True)``, compiled once per message type
    (gateway.codec).
    """
    return cast(dict[str, Any], codec.render(msg))


# What an INVALID_ARGUMENT names when the fault is the body as a whole (not JSON, not an object).
BODY_FIELD = "body"


def _load_json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise errors.InvalidArgument(BODY_FIELD, f"malformed JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise errors.InvalidArgument(BODY_FIELD, "must be a JSON object")
    return data


def _merge(data: dict[str, Any], msg: message.Message) -> None:
    extra = type(msg)()
    _parse_into(data, extra)
    msg.MergeFrom(extra)


def _nest(desc: descriptor.Descriptor, items: Iterable[tuple[str, str]], *, source: str) -> dict[str, Any]:
    """Turn ``a.b=1`` style (snake_case or lowerCamelCase) names into a nested JSON object of proto names."""
    out: dict[str, Any] = {}
    for name, value in items:
        current_desc, node = desc, out
        segments = name.split(".")
        path: list[str] = []
        for i, segment in enumerate(segments):
            fd = _field(current_desc, segment)
            if fd is None:
                raise errors.InvalidArgument(".".join([*path, _shown(segment)]), f"unknown {source}")
            path.append(fd.name)
            last = i == len(segments) - 1
            if last:
                _set_leaf(node, fd, value, ".".join(path), source)
            elif fd.message_type is None or fd.is_repeated or _is_well_known(fd.message_type):
                raise errors.InvalidArgument(".".join(path), f"{source} cannot set a field inside it")
            else:
                node = node.setdefault(fd.name, {})
                current_desc = fd.message_type
    return out


def _set_leaf(node: dict[str, Any], fd: descriptor.FieldDescriptor, value: str, path: str, source: str) -> None:
    if fd.message_type is not None and not _is_well_known(fd.message_type):
        raise errors.InvalidArgument(path, f"is a message; set its fields ({path}.<field>) as {source}s")
    converted: Any = value
    if fd.type == _FD.TYPE_BOOL:
        if value not in ("true", "false"):
            raise errors.InvalidArgument(path, "must be true or false")
        converted = value == "true"
    if fd.is_repeated:
        node.setdefault(fd.name, []).append(converted)
    else:
        node[fd.name] = converted


def _apply_idempotency_key(route: Route, msg: message.Message, header: str | None) -> None:
    fd = msg.DESCRIPTOR.fields_by_name.get(IDEMPOTENCY_FIELD)
    if fd is None or fd.type != _FD.TYPE_STRING or fd.is_repeated:
        return
    key = (header or "").strip()
    current = getattr(msg, IDEMPOTENCY_FIELD)
    if key:
        if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
            raise errors.InvalidArgument(IDEMPOTENCY_FIELD, f"at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters")
        if current and current != key:
            raise errors.InvalidArgument(IDEMPOTENCY_FIELD, "differs from the Idempotency-Key header")
        setattr(msg, IDEMPOTENCY_FIELD, key)
    elif not current and route.rpc.path in IDEMPOTENCY_REQUIRED:
        raise errors.InvalidArgument(IDEMPOTENCY_FIELD, "Idempotency-Key header is required")


def _parse_into(data: dict[str, Any], msg: message.Message) -> None:
    """Fill the fresh ``msg`` as ``json_format.ParseDict`` does: plain input by gateway.codec's compiled plan,
    anything it leaves undecided (and every refusal) by json_format itself, from a cleared message."""
    try:
        codec.parse(data, msg)
    except codec.Unsupported:
        msg.Clear()
    else:
        return
    try:
        json_format.ParseDict(data, msg)
    except json_format.ParseError as exc:
        field, reason = _locate(data, cast(descriptor.Descriptor, msg.DESCRIPTOR), "")
        raise errors.InvalidArgument(field, reason) from exc


def _locate(data: dict[str, Any], desc: descriptor.Descriptor, path: str) -> tuple[str, str]:
    """Find the first field of ``data`` json_format refuses, as a proto path like ``items[1].on_hand``.

    Only runs on the error path: each field is re-parsed alone until the culprit is found, descending
    into messages and list elements so the reported path is as precise as the client needs.
    """
    cls = GetMessageClass(desc)
    for key, value in data.items():
        fd = _field(desc, key)
        if fd is None:
            return _join(path, _shown(key)), "unknown field"
        field_path = _join(path, fd.name)
        error = _parse_error({key: value}, cls)
        if error is None:
            continue
        if fd.is_repeated and isinstance(value, list) and not _is_map(fd):
            for i, item in enumerate(value):
                item_error = _parse_error({key: [item]}, cls)
                if item_error is not None:
                    return _descend(fd, item, f"{field_path}[{i}]", item_error)
        elif not fd.is_repeated:
            return _descend(fd, value, field_path, error)
        return field_path, _reason(error)
    return path, "invalid value"


def _descend(fd: descriptor.FieldDescriptor, value: Any, path: str, error: json_format.ParseError) -> tuple[str, str]:
    if fd.message_type is not None and not _is_well_known(fd.message_type) and not _is_map(fd):
        if isinstance(value, dict):
            return _locate(value, fd.message_type, path)
        if value is not None:
            return path, "must be a JSON object"
    return path, _reason(error)


def _parse_error(data: dict[str, Any], cls: type[message.Message]) -> json_format.ParseError | None:
    try:
        json_format.ParseDict(data, cls())
    except json_format.ParseError as exc:
        return exc
    return None


def _reason(error: json_format.ParseError) -> str:
    text = str(error).split("\n", 1)[0]
    text = _PARSE_PREFIX.sub("", text).rstrip(".")
    return _AT_SUFFIX.sub("", text).rstrip(".") or "invalid value"


def _field(desc: descriptor.Descriptor, name: str) -> descriptor.FieldDescriptor | None:
    fd = desc.fields_by_name.get(name)
    if fd is not None:
        return fd
    return next((f for f in desc.fields if f.json_name == name), None)


def _is_map(fd: descriptor.FieldDescriptor) -> bool:
    return fd.message_type is not None and fd.message_type.GetOptions().map_entry


def _is_well_known(desc: descriptor.Descriptor) -> bool:
    """google.protobuf types (Timestamp, FieldMask, wrappers, ...) have their own JSON forms."""
    return desc.full_name.startswith("google.protobuf.")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _shown(name: str) -> str:
    """A name the client sent, as the ``field`` of a refusal: an empty one must still name something."""
    return name if name.strip() else json.dumps(name)
