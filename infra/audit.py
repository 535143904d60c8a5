"""The audit log of admin actions: who did what, when, and how it ended. Append-only.

Every service that takes admin actions keeps an ``audit_log`` table in its own schema; its migration
creates it with :func:`create_audit_log_table_v1`, which also installs a trigger that refuses any
UPDATE, DELETE or TRUNCATE of it, so not even the service's own database role can rewrite history.

How an entry gets written (:class:`AuditTrail` wires it into a service):

* The :class:`AuditInterceptor` wraps every RPC of the service except the reads it is told about.
  When the caller's token is an admin's it opens an :class:`AdminAction` for the call: who (subject,
  role), what (the RPC's full name, the request with personal data and secrets masked, the resources
  the request names), the request id and the idempotency key. That is the call's pending action.
* The data layer calls :func:`record` in the transaction that commits the admin's change: the entry
  is written there (SUCCEEDED), so it exists exactly when the change does.
* When the call ends the interceptor settles it, after checking whether that entry really committed:

  ===================================  =========================================================
  the call                             the entry
  ===================================  =========================================================
  succeeded, entry committed           that one
  succeeded, nothing recorded          SUCCEEDED, written on its own (a repeat that changed
                                       nothing, or an RPC whose data layer records nothing)
  refused (a DomainError), nothing     REFUSED with the error's reason and message, on its own
  committed
  raised after the entry committed     a second entry, FAILED, with the reason (a refund
                                       reserved, then refused by the provider)
  raised anything else                 FAILED, on its own
  ===================================  =========================================================

Calls by customers and by services are not recorded: a customer refused PERMISSION_DENIED is in the
service's log, and recording those would let anyone with a guest token grow the table.

Reading: every audited service serves ``kassa.audit.v1.AuditService`` (admins only); the gateway's
``GET /v1/admin/audit`` merges the services' answers (``gateway.audit``).

The table's columns are versioned like the outbox's (``_audit_log_v1``): a migration is a frozen
snapshot, so a later change gets a ``_v2`` list and a new migration, never an edit of ``_v1``.
"""

from __future__ import annotations

import contextvars
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import grpc
import sqlalchemy as sa
from google.protobuf import descriptor, struct_pb2
from google.protobuf.message import Message
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.schema import SchemaItem

from infra.auth import current_identity, require_admin
from infra.db import single_statements
from infra.logs import request_id_var
from infra.pb import checked_datetime, timestamp_to_pb
from infra.pii import redact
from infra.server import AioUnary, Registration, WrappingInterceptor
from kassa.audit.v1 import audit_service_pb2 as pb
from kassa.audit.v1 import audit_service_pb2_grpc as pb_grpc
from kernel import errors
from kernel.paging import decode_keyset_token, keyset_token
from kernel.validation import check_text

if TYPE_CHECKING:
    from types import ModuleType

    from alembic.operations import Operations

__all__ = [
    "AUDITED_SERVICES",
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "AdminAction",
    "AuditInterceptor",
    "AuditTrail",
    "Outcome",
    "audit_log_table",
    "create_audit_log_table_v1",
    "decode_page_token",
    "drop_audit_log_table_v1",
    "page_token",
    "record",
    "summarize",
]

log = logging.getLogger("kassa.audit")

# The services that keep an audit log and serve AuditService (settings.addr keys), in the gateway's order.
AUDITED_SERVICES: tuple[str, ...] = (
    "order",
    "payment",
    "warehouse",
    "pricing",
    "promotion",
    "checkout",
    "notification",
)
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
LIST_METHOD = f"/{pb.DESCRIPTOR.services_by_name['AuditService'].full_name}/ListAuditEntries"


class Outcome:
    """The ``outcome`` column's values (kassa.audit.v1.AuditEntry.Outcome without the prefix, lower case)."""

    SUCCEEDED = "succeeded"
    REFUSED = "refused"
    FAILED = "failed"


_OUTCOME_PB = {
    Outcome.SUCCEEDED: pb.AuditEntry.OUTCOME_SUCCEEDED,
    Outcome.REFUSED: pb.AuditEntry.OUTCOME_REFUSED,
    Outcome.FAILED: pb.AuditEntry.OUTCOME_FAILED,
}


# -- the table ---------------------------------------------------------------------------------------------------


def _audit_log_v1() -> list[SchemaItem]:
    """Version 1 of the audit log: columns, check and index (fresh objects on every call)."""
    return [
        # GENERATED ALWAYS: the database numbers entries; an INSERT naming an id is refused.
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("actor_role", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("targets", ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("request", JSONB, nullable=False, server_default="{}"),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("request_id", sa.Text, nullable=False, server_default=""),
        sa.Column("idempotency_key", sa.Text, nullable=False, server_default=""),
        sa.CheckConstraint("outcome in ('succeeded','refused','failed')", name="audit_log_outcome_valid"),
        sa.Index("audit_log_at_idx", "at", "id"),
    ]


def audit_log_table(metadata: sa.MetaData) -> sa.Table:
    """The audit log as the code uses it: the newest version the migrations create."""
    return sa.Table("audit_log", metadata, *_audit_log_v1())


# One function per schema: a trigger function can't be shared across schemas without naming one of them.
_APPEND_ONLY_FUNCTION_V1 = """
CREATE FUNCTION "{schema}".audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$
"""
# FOR EACH STATEMENT: refused even when it would touch no row, and TRUNCATE has no rows to fire for.
_APPEND_ONLY_TRIGGER_V1 = """
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON "{schema}".audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION "{schema}".audit_log_append_only()
"""


def create_audit_log_table_v1(op: Operations | ModuleType, schema: str) -> None:
    """For a service's migration: CREATE TABLE audit_log (version 1) in ``schema``, and the trigger that
    refuses every UPDATE, DELETE and TRUNCATE of it."""
    op.create_table("audit_log", *_audit_log_v1(), schema=schema)
    op.execute(_APPEND_ONLY_FUNCTION_V1.format(schema=schema))
    op.execute(_APPEND_ONLY_TRIGGER_V1.format(schema=schema))


def drop_audit_log_table_v1(op: Operations | ModuleType, schema: str) -> None:
    """The downgrade of :func:`create_audit_log_table_v1` (DROP is not refused: only a migration drops)."""
    op.drop_table("audit_log", schema=schema)
    op.execute(f'DROP FUNCTION "{schema}".audit_log_append_only()')


# -- the request summary -----------------------------------------------------------------------------------------

REDACTED = "<redacted>"
_MAX_TEXT = 200
_MAX_ITEMS = 50
_MAX_DEPTH = 8
_MAX_TARGETS = 1000
# Field names whose values are personal data or secrets, wherever they appear.
_SECRET_FIELDS = frozenset(
    {
        "email",
        "customer_email",
        "phone",
        "notes",
        "payment_method",
        "payment_token",
        "token",
        "signature",
        "payload",
        "password",
        "secret",
    }
)
# An address is personal data but for its country (kept: it says which rules applied).
_ADDRESS_TYPE = "kassa.common.v1.Address"
_ADDRESS_KEPT = frozenset({"country_code"})
# Request fields that name the resource acted on, and the collection its name goes in.
_TARGET_FIELDS = {"order_id": "orders", "payment_id": "payments"}
_INT64_TYPES = frozenset(
    {
        descriptor.FieldDescriptor.TYPE_INT64,
        descriptor.FieldDescriptor.TYPE_UINT64,
        descriptor.FieldDescriptor.TYPE_SINT64,
        descriptor.FieldDescriptor.TYPE_FIXED64,
        descriptor.FieldDescriptor.TYPE_SFIXED64,
    }
)


def _clean(text: str, limit: int = _MAX_TEXT) -> str:
    """Storable text: no NUL (Postgres refuses it in text and jsonb), at most ``limit`` characters."""
    text = text.replace("\x00", "\ufffd")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _free_text(text: str, limit: int = _MAX_TEXT) -> str:
    """What a caller wrote (a request's texts, an error message quoting them): stored like :func:`_clean`, with
    emails and phone numbers masked and tokens removed (``infra.pii.redact``) wherever they appear."""
    return _clean(redact(text), limit)


def summarize(request: Message) -> dict[str, Any]:
    """The request as a JSON object of its set fields (proto field names; 64-bit integers as strings, as
    proto3 JSON has them), with personal data and secrets replaced by ``"<redacted>"`` (and any email, phone
    number or token inside other texts masked by ``infra.pii.redact``), texts cut at 200
    characters, lists at 50 entries (then ``"+N more"``) and nesting at 8 levels. Never raises on what a
    client can send (out-of-range timestamps, undefined enum numbers, NULs)."""
    return _message(request, 0)


def _message(msg: Message, depth: int) -> dict[str, Any]:
    if depth >= _MAX_DEPTH:
        return {"<nested>": "..."}
    address = msg.DESCRIPTOR.full_name == _ADDRESS_TYPE
    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        if fd.name in _SECRET_FIELDS or (address and fd.name not in _ADDRESS_KEPT):
            out[fd.name] = REDACTED
        elif fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            value_fd = fd.message_type.fields_by_name["value"]
            items = sorted(value.items(), key=lambda kv: str(kv[0]))
            out[fd.name] = {_clean(str(k)): _value(value_fd, v, depth + 1) for k, v in items[:_MAX_ITEMS]}
        elif fd.is_repeated:
            shown = [_value(fd, v, depth + 1) for v in list(value)[:_MAX_ITEMS]]
            if len(value) > _MAX_ITEMS:
                shown.append(f"+{len(value) - _MAX_ITEMS} more")
            out[fd.name] = shown
        else:
            out[fd.name] = _value(fd, value, depth + 1)
    return out


def _value(fd: descriptor.FieldDescriptor, value: Any, depth: int) -> Any:
    t = fd.type
    if t in (descriptor.FieldDescriptor.TYPE_MESSAGE, descriptor.FieldDescriptor.TYPE_GROUP):
        name = value.DESCRIPTOR.full_name
        if name == "google.protobuf.Timestamp":
            try:
                return checked_datetime(fd.name, value).isoformat().replace("+00:00", "Z")
            except errors.InvalidArgument:
                return {"seconds": str(value.seconds), "nanos": value.nanos}
        if name == "google.protobuf.Duration":
            return {"seconds": str(value.seconds), "nanos": value.nanos}
        return _message(value, depth)
    if t == descriptor.FieldDescriptor.TYPE_STRING:
        return _free_text(value)
    if t == descriptor.FieldDescriptor.TYPE_BYTES:
        return f"<{len(value)} bytes>"
    if t == descriptor.FieldDescriptor.TYPE_ENUM:
        known = cast(descriptor.EnumDescriptor, fd.enum_type).values_by_number.get(value)  # set on an enum field
        return known.name if known is not None else value
    if t in _INT64_TYPES:
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def request_targets(request: Message) -> list[str]:
    """The resources a request names by id at its top level (``order_id`` -> ``orders/{id}``)."""
    out = []
    for name, collection in _TARGET_FIELDS.items():
        fd = request.DESCRIPTOR.fields_by_name.get(name)
        if fd is None or fd.type != descriptor.FieldDescriptor.TYPE_STRING:
            continue
        value = getattr(request, name)
        if value and len(value) <= 128 and value.isprintable():
            out.append(f"{collection}/{value}")
    return out


# -- the pending action of a call, and recording it --------------------------------------------------------------


@dataclass
class AdminAction:
    """An admin's call in progress: what its entry will say. ``recorded_id`` is the id :func:`record` got
    for it; whether that entry committed is checked when the call ends."""

    actor: str
    actor_role: str
    action: str
    request: dict[str, Any]
    request_id: str = ""
    idempotency_key: str = ""
    targets: list[str] = field(default_factory=list)
    recorded_id: int | None = None

    def add_targets(self, targets: Iterable[str]) -> None:
        for target in targets:
            name = _clean(target, 300)
            if name not in self.targets and len(self.targets) < _MAX_TARGETS:
                self.targets.append(name)

    def row(self, outcome: str, error: BaseException | None = None) -> dict[str, Any]:
        reason, message = "", ""
        if isinstance(error, errors.DomainError):
            reason, message = error.reason, error.message
        elif error is not None:
            reason, message = "INTERNAL", type(error).__name__
        return {
            "actor": self.actor,
            "actor_role": self.actor_role,
            "action": self.action,
            "targets": list(self.targets),
            "request": self.request,
            "outcome": outcome,
            "reason": _clean(reason, 100),
            "message": _free_text(message, 500),
            "request_id": self.request_id,
            "idempotency_key": self.idempotency_key,
        }


_pending: contextvars.ContextVar[AdminAction | None] = contextvars.ContextVar("kassa_admin_action", default=None)


def pending_action() -> AdminAction | None:
    """The admin action the current call is taking, if the caller is an admin and the RPC is audited."""
    return _pending.get()


async def record(conn: AsyncConnection, table: sa.Table, *targets: str) -> None:
    """Write the current call's admin action (if any) in the caller's open transaction, which commits
    the change it describes: SUCCEEDED, naming ``targets`` besides what the request named. Does nothing
    for calls by customers and services, for reads, and the second time in one call."""
    action = _pending.get()
    if action is None or action.recorded_id is not None:
        return
    action.add_targets(targets)
    result = await conn.execute(table.insert().values(**action.row(Outcome.SUCCEEDED)).returning(table.c.id))
    action.recorded_id = result.scalar_one()


# -- the interceptor ---------------------------------------------------------------------------------------------


def _action_name(method: str) -> str:
    """``/kassa.x.v1.S/M`` -> ``kassa.x.v1.S.M`` (the MethodDescriptor's full name)."""
    return method.lstrip("/").replace("/", ".")


class AuditInterceptor(WrappingInterceptor):
    """Opens an :class:`AdminAction` for every admin call of an audited RPC and settles its entry at the end.

    It runs inside :class:`infra.server.KassaInterceptor` (after the caller is authenticated, with the
    request decoded), so what it sees raised is what the caller gets as a status.
    """

    def __init__(self, trail: AuditTrail) -> None:
        super().__init__()
        self._trail = trail

    def wraps(self, method: str) -> bool:
        return self._trail.audits(method)

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            self._serve(_action_name(method), cast(AioUnary, handler.unary_unary)),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _serve(self, action_name: str, inner: Callable[[Any, Any], Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        trail = self._trail

        async def serve(request: Any, context: grpc.aio.ServicerContext) -> Any:
            identity = current_identity()
            if identity is None or not identity.is_admin:
                return await inner(request, context)
            action = trail.open(identity.subject, identity.role, action_name, request)
            token = _pending.set(action)
            try:
                reply = await inner(request, context)
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    raise  # cancelled: the caller went away; whatever committed has its entry
                await trail.settle(action, exc)
                raise
            finally:
                _pending.reset(token)
            await trail.settle(action, None)
            return reply

        return serve


# -- the trail: writing on its own, listing ----------------------------------------------------------------------


def page_token(at: datetime, entry_id: int) -> str:
    """The page token that continues a listing after the entry (``at``, ``entry_id``)."""
    return keyset_token(at, entry_id)


def _audit_id(value: object) -> int:
    if type(value) is not int:
        raise ValueError("not an audit entry id")
    return value


def decode_page_token(token: str) -> tuple[datetime, int]:
    """(at, id) of a :func:`page_token`; InvalidArgument naming ``page_token`` for anything else."""
    return decode_keyset_token(token, _audit_id)


@dataclass(frozen=True)
class AuditQuery:
    page_size: int = DEFAULT_PAGE_SIZE
    after: tuple[datetime, int] | None = None
    actor: str = ""
    action: str = ""
    target: str = ""
    start_time: datetime | None = None
    end_time: datetime | None = None


def query_from_pb(request: pb.ListAuditEntriesRequest) -> AuditQuery:
    """Validate a ListAuditEntriesRequest (INVALID_ARGUMENT naming the field)."""
    if request.page_size < 0:
        raise errors.InvalidArgument("page_size", "must not be negative")
    return AuditQuery(
        page_size=min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
        after=decode_page_token(request.page_token) if request.page_token else None,
        actor=check_text("actor", request.actor, max_length=255),
        action=check_text("action", request.action, max_length=255),
        target=check_text("target", request.target, max_length=300),
        start_time=checked_datetime("start_time", request.start_time) if request.HasField("start_time") else None,
        end_time=checked_datetime("end_time", request.end_time) if request.HasField("end_time") else None,
    )


class AuditTrail:
    """A service's audit log: the interceptor that fills it, its AuditService, and the reads it skips.

    ``reads``: names of the service's RPCs that change nothing (``"CheckStock"``); every other RPC called
    with an admin token is recorded. AuditService's own ListAuditEntries is always a read.
    """

    def __init__(self, engine: AsyncEngine, table: sa.Table, *, service: str, reads: Iterable[str] = ()) -> None:
        self.service = service
        self.table = table
        self._engine = engine
        self._reader = single_statements(engine)
        self._reads = frozenset(reads)
        self.interceptor = AuditInterceptor(self)
        self.registration = Registration(
            pb_grpc.add_AuditServiceServicer_to_server,
            AuditServicer(self),
            pb.DESCRIPTOR.services_by_name["AuditService"].full_name,
        )

    def audits(self, method: str) -> bool:
        """Whether an admin's call of ``method`` (``/pkg.Service/Method``) is recorded."""
        if not method.startswith("/kassa.") or method == LIST_METHOD:
            return False
        return method.rsplit("/", 1)[-1] not in self._reads

    def open(self, actor: str, role: str, action_name: str, request: Any) -> AdminAction:
        """The pending action of an admin's call; never raises on what the client sent."""
        summary: dict[str, Any] = {}
        targets: list[str] = []
        key = ""
        if isinstance(request, Message):
            try:
                summary = summarize(request)
                targets = request_targets(request)
                fd = request.DESCRIPTOR.fields_by_name.get("idempotency_key")
                if fd is not None and fd.type == descriptor.FieldDescriptor.TYPE_STRING:
                    key = _clean(cast(Any, request).idempotency_key, 255)
            except Exception:  # the summary is a courtesy: never let it fail the admin's call
                log.exception("could not summarize the request of %s", action_name)
                summary = {"<unreadable>": type(request).__name__}
        action = AdminAction(
            actor=_clean(actor, 255),
            actor_role=_clean(role, 50),
            action=action_name,
            request=summary,
            request_id=_clean(request_id_var.get(), 128),
            idempotency_key=key,
        )
        action.add_targets(targets)
        return action

    async def settle(self, action: AdminAction, error: BaseException | None) -> None:
        """Make sure the call has the entry the module docstring's table gives it. A failure to write is
        logged, never raised: the call's own result (or error) is what the caller gets."""
        try:
            committed = action.recorded_id is not None and await self._committed(action.recorded_id)
            if error is None:
                if not committed:
                    await self._write(action.row(Outcome.SUCCEEDED))
            elif committed or not isinstance(error, errors.DomainError):
                await self._write(action.row(Outcome.FAILED, error))
            else:
                await self._write(action.row(Outcome.REFUSED, error))
        except Exception:
            log.exception(
                "AUDIT ENTRY LOST: %s by %s (request %s)", action.action, action.actor, action.request_id or "-"
            )

    async def _committed(self, entry_id: int) -> bool:
        async with self._reader.connect() as conn:
            found = await conn.execute(sa.select(self.table.c.id).where(self.table.c.id == entry_id))
            return found.first() is not None

    async def _write(self, row: dict[str, Any]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(self.table.insert().values(**row))

    async def list(self, query: AuditQuery) -> tuple[list[sa.Row[Any]], str]:
        """Entries newest first (by ``at``, then ``id``), and the next page's token ("" on the last page)."""
        t = self.table
        stmt = sa.select(t).order_by(t.c.at.desc(), t.c.id.desc()).limit(query.page_size + 1)
        if query.after is not None:
            at, entry_id = query.after
            cursor = sa.tuple_(sa.literal(at, sa.DateTime(timezone=True)), sa.literal(entry_id, sa.BigInteger))
            stmt = stmt.where(sa.tuple_(t.c.at, t.c.id) < cursor)
        if query.actor:
            stmt = stmt.where(t.c.actor == query.actor)
        if query.action:
            stmt = stmt.where(
                t.c.action == query.action
                if "." in query.action
                else t.c.action.endswith("." + query.action, autoescape=True)
            )
        if query.target:
            stmt = stmt.where(t.c.targets.contains([query.target]))
        if query.start_time is not None:
            stmt = stmt.where(t.c.at >= query.start_time)
        if query.end_time is not None:
            stmt = stmt.where(t.c.at < query.end_time)
        async with self._reader.connect() as conn:
            rows = list(await conn.execute(stmt))
        if len(rows) <= query.page_size:
            return rows, ""
        rows = rows[: query.page_size]
        return rows, page_token(rows[-1].at, rows[-1].id)

    def to_pb(self, row: sa.Row[Any]) -> pb.AuditEntry:
        request = struct_pb2.Struct()
        request.update(row.request)
        return pb.AuditEntry(
            service=self.service,
            id=row.id,
            create_time=timestamp_to_pb(row.at),
            actor=row.actor,
            actor_role=row.actor_role,
            action=row.action,
            targets=row.targets,
            request=request,
            outcome=_OUTCOME_PB.get(row.outcome, pb.AuditEntry.OUTCOME_UNSPECIFIED),
            reason=row.reason,
            message=row.message,
            request_id=row.request_id,
            idempotency_key=row.idempotency_key,
        )


class AuditServicer(pb_grpc.AuditServiceServicer):
    """kassa.audit.v1.AuditService for one service's own log; admins only."""

    def __init__(self, trail: AuditTrail) -> None:
        self._trail = trail

    async def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAuditEntriesResponse:
        require_admin()
        query = query_from_pb(request)
        check_text("service", request.service, max_length=64)
        if request.service and request.service != self._trail.service:
            return pb.ListAuditEntriesResponse()
        rows, next_token = await self._trail.list(query)
        return pb.ListAuditEntriesResponse(entries=[self._trail.to_pb(r) for r in rows], next_page_token=next_token)


def entries_sorted(entries: Sequence[pb.AuditEntry]) -> list[pb.AuditEntry]:
    """Newest first across services: by time, then service, then id (what the gateway's merge uses)."""
    return sorted(
        entries,
        key=lambda e: (e.create_time.seconds, e.create_time.nanos, e.service, e.id),
        reverse=True,
    )
