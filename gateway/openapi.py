"""The REST contract as an OpenAPI 3.1 document, generated from the routes the gateway serves.

Why generated: the routes come from the ``google.api.http`` annotations (gateway.routing), the bodies
from the same message descriptors gateway.transcoding parses with, so the document cannot describe a
REST API other than the one served. ``make openapi`` writes it to ``gateway/openapi.json`` (committed,
so web teams generate clients from a file in the repo; CI regenerates it and fails on a diff), and the
gateway serves that file at ``GET /openapi.json`` with a self-contained page listing it at ``GET /docs``.

Schemas follow the proto3 JSON mapping the gateway speaks: lowerCamelCase names, 64-bit integers as
decimal strings, enums as their value names, Timestamp as an RFC 3339 string, Duration as ``"1.5s"``,
FieldMask as comma-separated paths. Errors are the ``google.rpc.Status`` body of gateway.status, whose
``ErrorInfo.reason`` is a kassa.common.v1.ErrorReason value. Descriptions are the proto comments
(read with protoc from ``proto/`` at generation time: the runtime descriptors carry none).

Usage: ``python -m gateway.openapi [--out gateway/openapi.json]`` (stdout without ``--out``).
"""

from __future__ import annotations

import argparse
import html
import json
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

from google.protobuf import descriptor, descriptor_pb2

from gateway.routing import Route, RouteTable, build_route_table
from gateway.transcoding import IDEMPOTENCY_FIELD, IDEMPOTENCY_REQUIRED
from infra.webhook_signature import SIGNATURE_HEADER
from kassa.common.v1 import errors_pb2

__all__ = ["DOCUMENT_PATH", "build_document", "docs_page", "generate", "load_document", "proto_comments", "render"]

DOCUMENT_PATH = Path(__file__).with_name("openapi.json")
VERSION = "1.0.0"
_REF = "#/components/schemas/"
_FD = descriptor.FieldDescriptor
_INT32 = {"type": "integer", "format": "int32"}
_SCALARS: dict[int, dict[str, Any]] = {
    _FD.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _FD.TYPE_FLOAT: {"type": "number", "format": "float"},
    _FD.TYPE_INT32: _INT32,
    _FD.TYPE_SINT32: _INT32,
    _FD.TYPE_SFIXED32: _INT32,
    _FD.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**32 - 1},
    _FD.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**32 - 1},
    # proto3 JSON writes 64-bit integers as strings (a JavaScript number loses precision past 2^53).
    _FD.TYPE_INT64: {"type": "string", "format": "int64", "pattern": "^-?[0-9]{1,19}$"},
    _FD.TYPE_SINT64: {"type": "string", "format": "int64", "pattern": "^-?[0-9]{1,19}$"},
    _FD.TYPE_SFIXED64: {"type": "string", "format": "int64", "pattern": "^-?[0-9]{1,19}$"},
    _FD.TYPE_UINT64: {"type": "string", "format": "uint64", "pattern": "^[0-9]{1,20}$"},
    _FD.TYPE_FIXED64: {"type": "string", "format": "uint64", "pattern": "^[0-9]{1,20}$"},
    _FD.TYPE_BOOL: {"type": "boolean"},
    _FD.TYPE_STRING: {"type": "string"},
    _FD.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}
_WRAPPERS = {
    "DoubleValue": _FD.TYPE_DOUBLE,
    "FloatValue": _FD.TYPE_FLOAT,
    "Int64Value": _FD.TYPE_INT64,
    "UInt64Value": _FD.TYPE_UINT64,
    "Int32Value": _FD.TYPE_INT32,
    "UInt32Value": _FD.TYPE_UINT32,
    "BoolValue": _FD.TYPE_BOOL,
    "StringValue": _FD.TYPE_STRING,
    "BytesValue": _FD.TYPE_BYTES,
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": "^-?[0-9]{1,12}(\\.[0-9]{1,9})?s$",
        "description": "seconds with an 's' suffix, e.g. \"900s\"",
    },
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": 'comma-separated lowerCamelCase field paths, e.g. "email,shippingAddress"',
    },
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    **{f"google.protobuf.{name}": _SCALARS[t] for name, t in _WRAPPERS.items()},
}
_QUERY_DEPTH = 3
_HEALTH_TAG = "Health"
_AUTH_TAG = "Auth"
_WEBHOOK_TAG = "PaymentWebhooks"


# -- proto comments ----------------------------------------------------------------------------------------


def proto_comments(proto_dir: Path, include_dirs: Iterable[Path] = ()) -> dict[str, str]:
    """Full proto name (message, field, enum, service, method) -> its leading comment, via protoc.

    Needs grpcio-tools (a dev dependency): only ``make openapi`` and the tests run it.
    """
    from grpc_tools import protoc

    files = sorted(str(p.relative_to(proto_dir)) for p in proto_dir.rglob("*.proto"))
    includes = [f"-I{proto_dir}", *(f"-I{d}" for d in include_dirs), f"-I{_protoc_include()}"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.binpb"
        argv = ["protoc", *includes, "--include_source_info", f"--descriptor_set_out={out}", *files]
        if protoc.main(argv) != 0:
            raise RuntimeError(f"protoc failed on {proto_dir}")
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    comments: dict[str, str] = {}
    for file in fds.file:
        names = _location_names(file)
        for location in file.source_code_info.location:
            name = names.get(tuple(location.path))
            # buf:lint:ignore lines are instructions to buf, not documentation.
            lines = [line.strip() for line in location.leading_comments.strip().splitlines()]
            text = "\n".join(line for line in lines if not line.startswith("buf:lint:")).strip()
            if name and text:
                comments[name] = text
    return comments


def _protoc_include() -> str:
    import grpc_tools

    return str(Path(grpc_tools.__file__).parent / "_proto")


def _location_names(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    """Source-location path -> full name, for the kinds of element the document describes."""
    names: dict[tuple[int, ...], str] = {}

    def message(msg: descriptor_pb2.DescriptorProto, path: tuple[int, ...], prefix: str) -> None:
        full = f"{prefix}.{msg.name}"
        names[path] = full
        for i, f in enumerate(msg.field):
            names[(*path, 2, i)] = f"{full}.{f.name}"
        for i, nested in enumerate(msg.nested_type):
            message(nested, (*path, 3, i), full)
        for i, enum_type in enumerate(msg.enum_type):
            enum(enum_type, (*path, 4, i), full)

    def enum(desc: descriptor_pb2.EnumDescriptorProto, path: tuple[int, ...], prefix: str) -> None:
        names[path] = f"{prefix}.{desc.name}"
        for i, value in enumerate(desc.value):
            names[(*path, 2, i)] = f"{prefix}.{desc.name}.{value.name}"

    for i, msg in enumerate(file.message_type):
        message(msg, (4, i), file.package)
    for i, enum_type in enumerate(file.enum_type):
        enum(enum_type, (5, i), file.package)
    for i, service in enumerate(file.service):
        names[(6, i)] = f"{file.package}.{service.name}"
        for j, method in enumerate(service.method):
            names[(6, i, 2, j)] = f"{file.package}.{service.name}.{method.name}"
    return names


# -- schemas -----------------------------------------------------------------------------------------------


class _Schemas:
    """components.schemas, filled with each message and enum the routes reach (by full proto name)."""

    def __init__(self, comments: Mapping[str, str]) -> None:
        self.comments = comments
        self.components: dict[str, dict[str, Any]] = {}

    def ref(self, desc: descriptor.Descriptor | descriptor.EnumDescriptor) -> dict[str, Any]:
        if desc.full_name not in self.components:
            self.components[desc.full_name] = {}  # placeholder: recursive messages refer back to it
            if isinstance(desc, descriptor.EnumDescriptor):
                self.components[desc.full_name] = self._enum(desc)
            else:
                self.components[desc.full_name] = self.message(desc)
        return {"$ref": _REF + desc.full_name}

    def message(self, desc: descriptor.Descriptor, *, omit: Iterable[str] = ()) -> dict[str, Any]:
        skip = set(omit)
        properties = {f.json_name: self.field(f) for f in desc.fields if f.name not in skip}
        schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
        oneofs = [o for o in desc.oneofs if not (len(o.fields) == 1 and o.name == f"_{o.fields[0].name}")]
        notes = [f"At most one of: {', '.join(f.json_name for f in o.fields)}." for o in oneofs]
        text = "\n\n".join(filter(None, [self.comments.get(desc.full_name, ""), *notes]))
        if text:
            schema["description"] = text
        return schema

    def field(self, fd: descriptor.FieldDescriptor) -> dict[str, Any]:
        if _is_map(fd):
            value_fd = cast(descriptor.Descriptor, fd.message_type).fields_by_name["value"]  # a map's entry
            schema: dict[str, Any] = {"type": "object", "additionalProperties": self.single(value_fd)}
        elif fd.is_repeated:
            schema = {"type": "array", "items": self.single(fd)}
        else:
            schema = dict(self.single(fd))
        comment = self.comments.get(fd.full_name)
        if comment:
            schema["description"] = comment
        return schema

    def single(self, fd: descriptor.FieldDescriptor) -> dict[str, Any]:
        """The schema of one value of ``fd`` (an element, for a repeated field)."""
        if fd.enum_type is not None:
            return self.ref(fd.enum_type)
        if fd.message_type is not None:
            known = _WELL_KNOWN.get(fd.message_type.full_name)
            return dict(known) if known is not None else self.ref(fd.message_type)
        return dict(_SCALARS[fd.type])

    def _enum(self, desc: descriptor.EnumDescriptor) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string", "enum": [v.name for v in desc.values]}
        # Value comments are keyed by the enum's name (descriptors put values in the enclosing scope).
        values = [
            f"- {v.name}: {' '.join(text.split())}"
            for v in desc.values
            if (text := self.comments.get(f"{desc.full_name}.{v.name}"))
        ]
        text = "\n".join(filter(None, [self.comments.get(desc.full_name, ""), *values]))
        if text:
            schema["description"] = text
        return schema


def _is_map(fd: descriptor.FieldDescriptor) -> bool:
    return fd.message_type is not None and fd.message_type.GetOptions().map_entry


def _status_schemas(schemas: _Schemas) -> None:
    reason = schemas.ref(errors_pb2.ErrorReason.DESCRIPTOR)
    schemas.components["google.rpc.ErrorInfo"] = {
        "type": "object",
        "required": ["@type", "reason", "domain"],
        "properties": {
            "@type": {"const": "type.googleapis.com/google.rpc.ErrorInfo"},
            "reason": {**reason, "description": "What went wrong, for clients to branch on; never parse message."},
            "domain": {"const": "kassa"},
            "metadata": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": 'Details of the reason: "field" names the offending field of INVALID_ARGUMENT.',
            },
        },
    }
    schemas.components["google.rpc.Status"] = {
        "type": "object",
        "required": ["code"],
        "properties": {
            "code": {"type": "integer", "format": "int32", "description": "The gRPC status code."},
            "message": {"type": "string", "description": "For people, not programs."},
            "details": {"type": "array", "items": {"$ref": _REF + "google.rpc.ErrorInfo"}},
        },
        "description": "Every error, whatever failed: the gRPC status with one ErrorInfo detail (domain kassa).",
    }


# -- operations --------------------------------------------------------------------------------------------


def _openapi_path(route: Route) -> str:
    """``/v1/orders/{order_id}:cancel`` stays as it is; ``{name=a/*}`` becomes ``{name}``."""
    out, i, text = [], 0, route.template.template
    while i < len(text):
        if text[i] == "{":
            end = text.index("}", i)
            out.append("{" + text[i + 1 : end].partition("=")[0] + "}")
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _field_at(desc: descriptor.Descriptor, path: str) -> descriptor.FieldDescriptor:
    fd = None
    for name in path.split("."):
        fd = desc.fields_by_name[name]
        desc = cast(descriptor.Descriptor, fd.message_type)  # a message, but after the path's last name
    assert fd is not None
    return fd


def _query_parameters(
    schemas: _Schemas, desc: descriptor.Descriptor, bound: set[str], prefix: str = "", json_prefix: str = ""
) -> list[dict[str, Any]]:
    """Query parameters for the fields not bound by the path: scalars, enums, well-known types and repeated
    scalars, and the fields of singular messages as ``a.b`` (what gateway.transcoding accepts)."""
    params: list[dict[str, Any]] = []
    for fd in desc.fields:
        path, name = f"{prefix}{fd.name}", f"{json_prefix}{fd.json_name}"
        if path in bound or _is_map(fd):
            continue
        if fd.message_type is not None and fd.message_type.full_name not in _WELL_KNOWN:
            if not fd.is_repeated and path.count(".") < _QUERY_DEPTH:
                params += _query_parameters(schemas, fd.message_type, bound, f"{path}.", f"{name}.")
            continue
        param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schemas.field(fd)}
        if fd.is_repeated:
            param |= {"style": "form", "explode": True}
        params.append(param)
    return params


def _operation(schemas: _Schemas, route: Route, operation_ids: set[str]) -> dict[str, Any]:
    rpc = route.rpc
    service = rpc.descriptor.containing_service
    request = cast(descriptor.Descriptor, rpc.request_cls.DESCRIPTOR)  # upb or pure-Python: the same API
    base_id = f"{service.name}_{rpc.name}"
    operation_id, n = base_id, 1
    while operation_id in operation_ids:
        n += 1
        operation_id = f"{base_id}_{n}"
    operation_ids.add(operation_id)
    comment = schemas.comments.get(rpc.descriptor.full_name, "")
    op: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [service.name],
        "summary": comment.split("\n\n")[0].replace("\n", " ") if comment else rpc.name,
        "description": f"{comment}\n\ngRPC: `{rpc.path}`".strip(),
    }
    bound = set(route.template.variables)
    params: list[dict[str, Any]] = [
        {
            "name": var,
            "in": "path",
            "required": True,
            "schema": schemas.field(_field_at(request, var)),
        }
        for var in route.template.variables
    ]
    if route.body == "*":
        body_schema = schemas.message(request, omit=bound) if bound else schemas.ref(request)
        # An empty body is the empty message (proto3: every field optional), as gateway.transcoding reads it.
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": body_schema}}}
    else:
        if route.body:
            body_fd = request.fields_by_name[route.body]
            content = {"application/json": {"schema": schemas.field(body_fd)}}
            op["requestBody"] = {"required": False, "content": content}
            bound.add(route.body)
        params += _query_parameters(schemas, request, bound)
    key = request.fields_by_name.get(IDEMPOTENCY_FIELD)
    if key is not None and key.type == _FD.TYPE_STRING:
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": rpc.path in IDEMPOTENCY_REQUIRED,
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                "description": "A retry with the same key returns the first result and does the work once"
                " (or send idempotencyKey in the body; both must agree).",
            }
        )
    if params:
        op["parameters"] = params
    op["responses"] = {
        "200": _json_response(schemas.ref(cast(descriptor.Descriptor, rpc.response_cls.DESCRIPTOR)), "OK"),
        "default": {"$ref": "#/components/responses/Error"},
    }
    return op


def _json_response(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
        "content": {"application/json": {"schema": schema}},
    }


def _gateway_operations() -> dict[str, dict[str, Any]]:
    """The routes the gateway serves itself (no RPC annotation): guest tokens, webhooks, health."""
    error = {"$ref": "#/components/responses/Error"}
    health = {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "backends": {"type": "object", "additionalProperties": {"type": "boolean"}},
        },
    }
    return {
        "/v1/auth/guest": {
            "post": {
                "operationId": "Gateway_CreateGuestToken",
                "tags": [_AUTH_TAG],
                "summary": "A guest bearer token: a fresh customer id whose carts and orders it owns.",
                "security": [],
                "responses": {
                    "200": _json_response(
                        {
                            "type": "object",
                            "required": ["token", "customerId"],
                            "properties": {"token": {"type": "string"}, "customerId": {"type": "string"}},
                            "additionalProperties": False,
                        },
                        "A guest token",
                    ),
                    "default": error,
                },
            }
        },
        "/v1/payments/webhooks/{provider}": {
            "post": {
                "operationId": "Gateway_HandlePaymentWebhook",
                "tags": [_WEBHOOK_TAG],
                "summary": "A payment provider's event; its signature is checked before payment sees it.",
                "security": [],
                "parameters": [
                    {
                        "name": "provider",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[a-z0-9_-]{1,64}$"},
                    },
                    {
                        "name": SIGNATURE_HEADER,
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<body>'>",
                    },
                ],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {
                    "200": _json_response(
                        {
                            "type": "object",
                            "required": ["received", "duplicate"],
                            "properties": {"received": {"const": True}, "duplicate": {"type": "boolean"}},
                            "additionalProperties": False,
                        },
                        "Accepted (duplicate: this event was already applied)",
                    ),
                    "default": error,
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "Gateway_Healthz",
                "tags": [_HEALTH_TAG],
                "summary": "Liveness: the gateway process answers.",
                "security": [],
                "responses": {"200": {"description": "alive", "content": {"application/json": {"schema": health}}}},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "Gateway_Readyz",
                "tags": [_HEALTH_TAG],
                "summary": "Readiness: every backend's gRPC health service answers SERVING.",
                "security": [],
                "responses": {
                    "200": {"description": "ready", "content": {"application/json": {"schema": health}}},
                    "503": {"description": "not ready", "content": {"application/json": {"schema": health}}},
                },
            }
        },
    }


def build_document(routes: RouteTable | None = None, comments: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` (default: the gateway's), described by ``comments``."""
    table = routes or build_route_table()
    schemas = _Schemas(comments or {})
    _status_schemas(schemas)
    paths: dict[str, dict[str, Any]] = {}
    operation_ids: set[str] = set()
    tags: dict[str, str] = {}
    ordered = sorted(table.routes, key=lambda r: (_openapi_path(r), r.http_method))
    for route in ordered:
        service = route.rpc.descriptor.containing_service
        tags.setdefault(service.name, schemas.comments.get(service.full_name, "") or service.full_name)
        op = _operation(schemas, route, operation_ids)
        paths.setdefault(_openapi_path(route), {})[route.http_method.lower()] = op
    paths.update(_gateway_operations())
    tag_list = [{"name": name, "description": text} for name, text in sorted(tags.items())]
    tag_list += [
        {"name": _AUTH_TAG, "description": "Guest identities minted by the gateway."},
        {"name": _WEBHOOK_TAG, "description": "Signed notifications from payment providers."},
        {"name": _HEALTH_TAG, "description": "Liveness and readiness probes."},
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Kassa REST API",
            "version": VERSION,
            "description": "Carts, checkout and orders over HTTP/JSON, transcoded to Kassa's gRPC services"
            " from their google.api.http annotations (proto3 JSON mapping). Send"
            " `Authorization: Bearer <JWT>` (a guest token from POST /v1/auth/guest will do); routes under"
            " /v1/admin need the admin role. Every error is a google.rpc.Status whose ErrorInfo.reason is"
            " stable and machine-readable.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "tags": tag_list,
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "responses": {
                "Error": {
                    "description": "An error: the HTTP status follows the gRPC code (400, 401, 403, 404, 409, 429,"
                    " 503, ...); 429 and 503 carry Retry-After.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
                    "content": {"application/json": {"schema": {"$ref": _REF + "google.rpc.Status"}}},
                }
            },
            "headers": {
                "X-Request-Id": {
                    "description": "The request's id in every log line it caused (yours when you sent a valid one).",
                    "schema": {"type": "string"},
                }
            },
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A customer, guest or admin token (`kassa token [--admin] SUBJECT` mints one"
                    " locally).",
                }
            },
        },
    }


def render(document: Mapping[str, Any]) -> str:
    """The document as the committed file spells it: stable key order, two-space indent, final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def load_document(path: Path = DOCUMENT_PATH) -> dict[str, Any]:
    """The committed document (what the gateway serves)."""
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


# -- the docs page -----------------------------------------------------------------------------------------


def docs_page(document: Mapping[str, Any], spec_url: str = "/openapi.json") -> str:
    """A self-contained HTML page listing every operation; no script, no stylesheet from elsewhere.

    For an interactive viewer, point any OpenAPI tool (Swagger UI, Redoc, an IDE) at ``spec_url``.
    """
    esc = html.escape
    info = document["info"]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in document["paths"].items():
        for method, op in item.items():
            by_tag.setdefault(op.get("tags", ["Other"])[0], []).append((method.upper(), path, op))
    sections: list[str] = []
    for tag in document.get("tags", []):
        ops = by_tag.get(tag["name"], [])
        if not ops:
            continue
        rows = []
        for method, path, op in ops:
            params = ", ".join(f"{p['name']} ({p['in']})" for p in op.get("parameters", []))
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            body_text = json.dumps(body, indent=1) if body else ""
            rows.append(
                f'<details id="{esc(op["operationId"])}"><summary><code class="m">{esc(method)}</code>'
                f" <code>{esc(path)}</code> {esc(op.get('summary', ''))}</summary>"
                f"<p>{esc(op.get('description', ''))}</p>"
                + (f"<p>Parameters: {esc(params)}</p>" if params else "")
                + (f"<p>Body:</p><pre>{esc(body_text)}</pre>" if body_text else "")
                + "</details>"
            )
        sections.append(f"<h2>{esc(tag['name'])}</h2><p>{esc(tag.get('description', ''))}</p>{''.join(rows)}")
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{esc(info['title'])}</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
        "details{border-bottom:1px solid #ddd;padding:.3rem 0}code.m{font-weight:bold;min-width:4rem;"
        "display:inline-block}pre{background:#f6f6f6;padding:.5rem;overflow:auto}</style></head><body>"
        f"<h1>{esc(info['title'])} {esc(info['version'])}</h1><p>{esc(info['description'])}</p>"
        f'<p>The machine-readable contract: <a href="{esc(spec_url)}">{esc(spec_url)}</a> (OpenAPI'
        f" {esc(document['openapi'])}); load it into any OpenAPI viewer or client generator. Schemas are in"
        " its components.</p>" + "".join(sections) + "</body></html>"
    )


# -- command line ------------------------------------------------------------------------------------------


def generate(root: Path) -> str:
    """The document of the current protos, with their comments, as the committed file spells it."""
    comments = proto_comments(root / "proto", [root / "third_party" / "proto"])
    return render(build_document(comments=comments))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.openapi", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write here (default: stdout)")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="the repository")
    args = parser.parse_args(argv)
    text = generate(args.root)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
