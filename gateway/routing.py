"""REST routes derived from the ``google.api.http`` annotations of the generated descriptors.

Why: the protos are the contract (DESIGN.md §2). A hand-written route table drifts from them the
first time someone adds an RPC; reading the annotations keeps REST and gRPC one contract. Only
unary RPCs with an annotation are exposed, so internal RPCs (ReserveStock, AuthorizePayment,
CreateOrder, ...) are unreachable from the internet by construction.

Path templates follow the HttpRule grammar::

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    Verb     = ":" LITERAL ;
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from urllib.parse import unquote

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor, message
from google.protobuf.message_factory import GetMessageClass

from infra.audit import AUDITED_SERVICES
from infra.ops import OUTBOX_SERVICES
from kassa.audit.v1 import audit_service_pb2
from kassa.checkout.v1 import cart_service_pb2, checkout_admin_service_pb2, checkout_service_pb2
from kassa.notification.v1 import notification_service_pb2
from kassa.ops.v1 import outbox_service_pb2
from kassa.order.v1 import order_service_pb2
from kassa.payment.v1 import payment_admin_service_pb2, payment_service_pb2
from kassa.pricing.v1 import pricing_service_pb2
from kassa.promotion.v1 import promotion_service_pb2
from kassa.warehouse.v1 import inventory_service_pb2, stock_admin_service_pb2

__all__ = [
    "ROUTE_MODULES",
    "SERVICE_MODULES",
    "MethodNotAllowed",
    "PathTemplate",
    "Route",
    "RouteMatch",
    "RouteNotFound",
    "RouteTable",
    "RpcMethod",
    "build_route_table",
    "rpc_method",
]

# The generated modules of the seven services, each served by one backend (its package's <svc>), with the
# operators' services of checkout, payment and warehouse.
SERVICE_MODULES: tuple[ModuleType, ...] = (
    cart_service_pb2,
    checkout_service_pb2,
    order_service_pb2,
    payment_service_pb2,
    inventory_service_pb2,
    pricing_service_pb2,
    promotion_service_pb2,
    checkout_admin_service_pb2,
    payment_admin_service_pb2,
    stock_admin_service_pb2,
)

# What the route table is read from: the seven services, the notification service's admin route (replaying a
# dead letter), the audit log every audited service serves (kassa.audit.v1.AuditService, answered by fanning out
# to them: see gateway.audit), and the outbox status every service with an outbox serves (kassa.ops.v1.OutboxService:
# see gateway.ops) likewise.
ROUTE_MODULES: tuple[ModuleType, ...] = (
    *SERVICE_MODULES,
    notification_service_pb2,
    audit_service_pb2,
    outbox_service_pb2,
)

# Packages whose services no one backend serves: the backends that serve them instead.
SHARED_SERVICES: dict[str, tuple[str, ...]] = {"audit": AUDITED_SERVICES, "ops": OUTBOX_SERVICES}

# RPCs that legitimately run longer than one ordinary call: ConfirmCheckout runs the whole saga
# (DESIGN.md §3), so its deadline is a multiple of settings.rpc_timeout_seconds.
TIMEOUT_MULTIPLIERS: dict[str, float] = {
    "/kassa.checkout.v1.CheckoutService/ConfirmCheckout": 3.0,
}

_HTTP_METHODS = ("get", "put", "post", "delete", "patch")
_LITERAL = re.compile(r"^[A-Za-z0-9._~!$&'()+,;=@%-]+$")
_FIELD_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class RouteNotFound(LookupError):
    """No annotated route has this path."""


class MethodNotAllowed(LookupError):
    """The path exists, but not with this HTTP method."""

    def __init__(self, allowed: Sequence[str]) -> None:
        super().__init__(", ".join(allowed))
        self.allowed = tuple(allowed)


@dataclass(frozen=True)
class PathTemplate:
    """A compiled HttpRule path template; ``variables`` are the field paths it binds, in order."""

    template: str
    regex: re.Pattern[str]
    variables: tuple[str, ...]
    literal_segments: int

    @classmethod
    def compile(cls, template: str) -> PathTemplate:
        """Compile ``template`` or raise ValueError saying what is wrong with it."""
        if not template.startswith("/"):
            raise ValueError(f"path template must start with '/': {template!r}")
        body, verb = _split_verb(template[1:], template)
        pieces: list[str] = []
        variables: list[str] = []
        literals = 0
        for kind, text, sub in _segments(body, template):
            if kind == "var":
                if not _FIELD_PATH.match(text):
                    raise ValueError(f"bad field path {text!r} in {template!r}")
                if text in variables:
                    raise ValueError(f"field {text!r} bound twice in {template!r}")
                group = f"v{len(variables)}"
                variables.append(text)
                pieces.append(f"(?P<{group}>{'/'.join(_segment_regex(s, template) for s in sub.split('/'))})")
            else:
                if text not in ("*", "**"):
                    literals += 1
                pieces.append(_segment_regex(text, template))
        suffix = ""
        if verb is not None:
            if not _LITERAL.match(verb):
                raise ValueError(f"bad verb {verb!r} in {template!r}")
            suffix = re.escape(f":{verb}")
            literals += 1
        regex = re.compile("^/" + "/".join(pieces) + suffix + "$")
        return cls(template=template, regex=regex, variables=tuple(variables), literal_segments=literals)

    def match(self, path: str) -> dict[str, str] | None:
        """Bound field path -> percent-decoded value, or None when ``path`` (raw, still encoded) doesn't match."""
        m = self.regex.match(path)
        if m is None:
            return None
        return {name: unquote(m.group(f"v{i}")) for i, name in enumerate(self.variables)}


def _split_verb(body: str, template: str) -> tuple[str, str | None]:
    """Split a trailing ``:verb`` off; a ':' inside a variable or before the last '/' is not a verb."""
    close = body.rfind("}")
    slash = body.rfind("/")
    colon = body.rfind(":")
    if colon > max(close, slash):
        verb = body[colon + 1 :]
        if not verb:
            raise ValueError(f"empty verb in {template!r}")
        return body[:colon], verb
    return body, None


def _segments(body: str, template: str) -> list[tuple[str, str, str]]:
    """Tokenize into ("lit", text, "") and ("var", field_path, sub_pattern) segments."""
    out: list[tuple[str, str, str]] = []
    i = 0
    while i <= len(body):
        if i < len(body) and body[i] == "{":
            end = body.find("}", i)
            if end < 0 or "{" in body[i + 1 : end]:
                raise ValueError(f"unbalanced braces in {template!r}")
            name, _, sub = body[i + 1 : end].partition("=")
            out.append(("var", name, sub or "*"))
            i = end + 1
            if i < len(body) and body[i] != "/":
                raise ValueError(f"a variable must fill whole segments in {template!r}")
            i += 1
            continue
        end = body.find("/", i)
        end = len(body) if end < 0 else end
        text = body[i:end]
        if not text or "}" in text:
            raise ValueError(f"empty or malformed segment in {template!r}")
        out.append(("lit", text, ""))
        i = end + 1
    return out


def _segment_regex(segment: str, template: str) -> str:
    if segment == "*":
        return "[^/]+"
    if segment == "**":
        return ".+"
    if not _LITERAL.match(segment):
        raise ValueError(f"bad literal segment {segment!r} in {template!r}")
    return re.escape(segment)


@dataclass(frozen=True)
class RpcMethod:
    """One unary RPC of a backend: its wire path, message classes and which backend serves it."""

    path: str
    backend: str
    descriptor: descriptor.MethodDescriptor
    request_cls: type[message.Message]
    response_cls: type[message.Message]

    @property
    def name(self) -> str:
        return self.descriptor.name

    @property
    def timeout_multiplier(self) -> float:
        return TIMEOUT_MULTIPLIERS.get(self.path, 1.0)

    @property
    def backends(self) -> tuple[str, ...]:
        """Every backend serving it: its own, or for a shared service (the audit log) each that serves it."""
        return SHARED_SERVICES.get(self.backend, (self.backend,))


def rpc_method(method: descriptor.MethodDescriptor) -> RpcMethod:
    """Describe ``method``; its backend is the <svc> of its package ``kassa.<svc>.v1`` (a settings.addr key)."""
    service = method.containing_service
    parts = service.full_name.split(".")
    if len(parts) < 4 or parts[0] != "kassa":
        raise ValueError(f"not a kassa service: {service.full_name}")
    return RpcMethod(
        path=f"/{service.full_name}/{method.name}",
        backend=parts[1],
        descriptor=method,
        request_cls=GetMessageClass(method.input_type),
        response_cls=GetMessageClass(method.output_type),
    )


@dataclass(frozen=True)
class Route:
    """An HTTP method + path template bound to an RPC, with the rule's ``body`` ("*", "" or a field)."""

    http_method: str
    template: PathTemplate
    body: str
    rpc: RpcMethod


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    path_params: dict[str, str] = field(default_factory=dict)


class RouteTable:
    """Finds the route for a request; the most literal template wins when several match."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes: tuple[Route, ...] = tuple(
            sorted(routes, key=lambda r: (-r.template.literal_segments, len(r.template.variables)))
        )
        seen: set[tuple[str, str]] = set()
        for r in self.routes:
            key = (r.http_method, r.template.regex.pattern)
            if key in seen:
                raise ValueError(f"two RPCs claim {r.http_method} {r.template.template}")
            seen.add(key)
        # Each method's routes, in the same order: a request is matched against its own method's only.
        self._by_method: dict[str, tuple[Route, ...]] = {}
        for r in self.routes:
            self._by_method[r.http_method] = (*self._by_method.get(r.http_method, ()), r)

    def match(self, http_method: str, raw_path: str) -> RouteMatch:
        """Raise RouteNotFound or MethodNotAllowed when nothing serves ``http_method raw_path``."""
        for route in self._by_method.get(http_method, ()):
            params = route.template.match(raw_path)
            if params is not None:
                return RouteMatch(route, params)
        allowed: list[str] = []
        for route in self.routes:
            if route.template.match(raw_path) is None:
                continue
            if route.http_method not in allowed:
                allowed.append(route.http_method)
        if allowed:
            raise MethodNotAllowed(allowed)
        raise RouteNotFound(raw_path)

    def for_rpc(self, path: str) -> list[Route]:
        """The routes bound to the RPC ``/pkg.Service/Method``."""
        return [r for r in self.routes if r.rpc.path == path]


def _rules(rule: http_pb2.HttpRule) -> list[http_pb2.HttpRule]:
    return [rule, *rule.additional_bindings]


def routes_for_method(method: descriptor.MethodDescriptor) -> list[Route]:
    """The routes the method's ``google.api.http`` option declares (none when it has no option)."""
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return []
    if method.client_streaming or method.server_streaming:
        raise ValueError(f"{method.full_name}: only unary RPCs can have REST routes")
    rpc = rpc_method(method)
    routes: list[Route] = []
    for rule in _rules(options.Extensions[annotations_pb2.http]):
        pattern = rule.WhichOneof("pattern")
        if pattern not in _HTTP_METHODS:
            raise ValueError(f"{method.full_name}: unsupported HttpRule pattern {pattern!r}")
        template = PathTemplate.compile(getattr(rule, pattern))
        if rule.body not in ("", "*") and rule.body not in method.input_type.fields_by_name:
            raise ValueError(f"{method.full_name}: body field {rule.body!r} does not exist")
        routes.append(Route(http_method=pattern.upper(), template=template, body=rule.body, rpc=rpc))
    return routes


def build_route_table(modules: Iterable[ModuleType] = ROUTE_MODULES) -> RouteTable:
    """Walk every service of ``modules`` and compile the routes its methods declare."""
    routes: list[Route] = []
    for module in modules:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                routes.extend(routes_for_method(method))
    return RouteTable(routes)
