"""``kassa dlq|sessions|outbox|stock drift|funnel``: the operators' admin RPCs from a terminal.

Each command talks gRPC to a running mesh, found and signed for like ``kassa mail --dead``: the addresses from
``KASSA_<SERVICE>_ADDR`` (default the local ports), an admin token minted with ``KASSA_JWT_SECRET`` (the
development secret when unset; production refuses it) or given in ``KASSA_ADMIN_TOKEN`` (for a mesh whose tokens
come from an identity provider). Human-readable tables by default, ``--json`` for the answers as proto3 JSON.
Commands that act on many entries (retry or replay of a filtered set, resolving every stuck session, a repair)
print a progress line per item on stderr. Exit codes: 0 done, 1 something was refused or failed (or, for
``stock drift``, drift was found and not repaired), 2 an oversell (``stock drift``), 3 the mesh could not be asked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from infra.auth import ROLE_ADMIN, mint_token
from infra.channels import open_channel
from infra.config import DEVELOPMENT, Settings
from infra.ops import OUTBOX_SERVICES
from kassa.checkout.v1 import checkout_admin_service_pb2 as co
from kassa.checkout.v1 import checkout_admin_service_pb2_grpc as co_grpc
from kassa.ops.v1 import outbox_service_pb2 as ob
from kassa.ops.v1 import outbox_service_pb2_grpc as ob_grpc
from kassa.payment.v1 import payment_admin_service_pb2 as pa
from kassa.payment.v1 import payment_admin_service_pb2_grpc as pa_grpc
from kassa.warehouse.v1 import stock_admin_service_pb2 as st
from kassa.warehouse.v1 import stock_admin_service_pb2_grpc as st_grpc

__all__ = ["add_commands"]

UNREACHABLE = 3
# RPCs that run a compensation or a saga's recovery wait for the other services: a longer deadline.
ACTION_TIMEOUT_MULTIPLIER = 6
REPAIR_BATCH = 50
_STATUSES = {
    "pending": co.COMPENSATION_STATUS_PENDING,
    "done": co.COMPENSATION_STATUS_DONE,
    "dead": co.COMPENSATION_STATUS_DEAD,
    "parked": co.COMPENSATION_STATUS_PARKED,
}
_STATUS_NAMES = {v: k for k, v in _STATUSES.items()}


class _Failed(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


_M = TypeVar("_M", bound=Message)


class Mesh:
    """Where the services listen, the admin credentials, and the deadline of one call."""

    def __init__(self) -> None:
        self.settings = Settings.from_env({"KASSA_ENV": DEVELOPMENT, **os.environ})
        token = os.environ.get("KASSA_ADMIN_TOKEN") or mint_token(
            self.settings.jwt_secret, "kassa-cli", role=ROLE_ADMIN, ttl_seconds=600
        )
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.timeout = self.settings.rpc_timeout_seconds

    async def call(self, service: str, rpc: Callable[[grpc.aio.Channel], Awaitable[_M]]) -> _M:
        async with open_channel(self.settings.addr(service), self.settings.grpc_tls) as channel:
            return await rpc(channel)


def _run(
    command: Callable[[argparse.Namespace, Mesh], Coroutine[Any, Any, int]],
) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(command(args, Mesh()))
        except grpc.aio.AioRpcError as exc:
            unreachable = exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            print(f"kassa: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return UNREACHABLE if unreachable else 1
        except _Failed as exc:
            print(f"kassa: {exc}", file=sys.stderr)
            return exc.code

    return handler


def _json(messages: Message | Sequence[Message] | dict[str, Any]) -> str:
    def one(m: Any) -> Any:
        return json_format.MessageToDict(m) if isinstance(m, Message) else m

    if isinstance(messages, dict):
        return json.dumps({k: one(v) for k, v in messages.items()}, indent=2)
    if isinstance(messages, Message):
        return json.dumps(one(messages), indent=2)
    return json.dumps([one(m) for m in messages], indent=2)


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[str(c) for c in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def _when(ts: Any, present: bool = True) -> str:
    if not present:
        return "-"
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _progress(done: int, total: int, text: str) -> None:
    print(f"[{done}/{total}] {text}", file=sys.stderr, flush=True)


# -- kassa dlq -----------------------------------------------------------------------------------------------------


def _dlq(mesh: Mesh) -> Callable[[Callable[[co_grpc.CheckoutAdminServiceStub], Awaitable[Any]]], Awaitable[Any]]:
    async def call(rpc: Callable[[co_grpc.CheckoutAdminServiceStub], Awaitable[Any]]) -> Any:
        return await mesh.call("checkout", lambda ch: rpc(co_grpc.CheckoutAdminServiceStub(ch)))

    return call


async def _list_entries(mesh: Mesh, args: argparse.Namespace, status: str | None, limit: int) -> list[Any]:
    entries: list[Any] = []
    token = ""
    while len(entries) < limit:
        request = co.ListFailedCompensationsRequest(
            status=_STATUSES[status] if status else co.COMPENSATION_STATUS_UNSPECIFIED,
            operation=args.operation or "",
            session_id=args.session or "",
            page_size=min(500, limit - len(entries)),
            page_token=token,
        )

        # A def, not a lambda with a default (mypy cannot type those): bound to this page's request.
        def list_page(s: co_grpc.CheckoutAdminServiceStub, r: Any = request) -> Awaitable[Any]:
            return s.ListFailedCompensations(r, metadata=mesh.metadata, timeout=mesh.timeout)

        page = await _dlq(mesh)(list_page)
        entries += page.entries
        token = page.next_page_token
        if not token:
            break
    return entries


async def cmd_dlq_list(args: argparse.Namespace, mesh: Mesh) -> int:
    entries = await _list_entries(mesh, args, args.status, args.limit)
    if args.json:
        print(_json(entries))
        return 0
    if not entries:
        print("no DLQ entries")
        return 0
    print(
        _table(
            ("ID", "STATUS", "OPERATION", "SESSION", "ATTEMPTS", "NEXT ATTEMPT", "CREATED", "LAST ERROR"),
            (
                (
                    e.id,
                    _STATUS_NAMES.get(e.status, "?"),
                    e.operation,
                    e.session_id,
                    e.attempts,
                    _when(e.next_attempt_time, e.HasField("next_attempt_time")),
                    _when(e.create_time),
                    e.last_error[:60],
                )
                for e in entries
            ),
        )
    )
    return 0


def _show_entry(e: Any) -> str:
    lines = [
        f"id            {e.id}",
        f"status        {_STATUS_NAMES.get(e.status, '?')}",
        f"operation     {e.operation}",
        f"session       {e.session_id}",
        f"attempts      {e.attempts}",
        f"next attempt  {_when(e.next_attempt_time, e.HasField('next_attempt_time'))}",
        f"created       {_when(e.create_time)}",
        f"updated       {_when(e.update_time)}",
        f"last error    {e.last_error or '-'}",
        "payload",
    ]
    payload = json_format.MessageToDict(e.payload) if e.HasField("payload") else {}
    lines += [f"  {k}: {json.dumps(v)}" for k, v in sorted(payload.items())]
    return "\n".join(lines)


async def cmd_dlq_show(args: argparse.Namespace, mesh: Mesh) -> int:
    reply = await _dlq(mesh)(
        lambda s: s.GetFailedCompensation(
            co.GetFailedCompensationRequest(id=args.id), metadata=mesh.metadata, timeout=mesh.timeout
        )
    )
    print(_json(reply) if args.json else _show_entry(reply.entry))
    return 0


async def _act(args: argparse.Namespace, mesh: Mesh, action: str, bulk_status: str | None) -> int:
    """Run ``action`` (retry, park, replay) on the given ids, or on every entry the filters and ``--all`` pick."""
    ids = list(args.ids)
    if args.all:
        if ids:
            raise _Failed("give entry ids or --all, not both", 2)
        ids = [e.id for e in await _list_entries(mesh, args, bulk_status, args.limit)]
    elif not ids:
        raise _Failed(f"nothing to {action}: give entry ids, or --all (with --operation/--session)", 2)
    rpcs = {
        "retry": lambda s, i: s.RetryFailedCompensation(
            co.RetryFailedCompensationRequest(id=i), metadata=mesh.metadata,
            timeout=mesh.timeout * ACTION_TIMEOUT_MULTIPLIER,
        ),
        "park": lambda s, i: s.ParkFailedCompensation(
            co.ParkFailedCompensationRequest(id=i), metadata=mesh.metadata, timeout=mesh.timeout
        ),
        "replay": lambda s, i: s.ReplayFailedCompensation(
            co.ReplayFailedCompensationRequest(id=i), metadata=mesh.metadata,
            timeout=mesh.timeout * ACTION_TIMEOUT_MULTIPLIER,
        ),
    }  # fmt: skip
    results: list[dict[str, Any]] = []
    failed = 0
    for n, entry_id in enumerate(ids, 1):
        try:
            # A def, not a lambda with a default (mypy cannot type those): bound to this entry.
            def act(s: co_grpc.CheckoutAdminServiceStub, i: str = entry_id) -> Awaitable[Any]:
                return rpcs[action](s, i)

            reply = await _dlq(mesh)(act)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED):
                raise
            failed += 1
            results.append({"id": entry_id, "error": f"{exc.code().name}: {exc.details()}"})
            _progress(n, len(ids), f"{action} {entry_id}: refused, {exc.code().name}: {exc.details()}")
            continue
        ok = getattr(reply, "succeeded", True)
        failed += 0 if ok else 1
        results.append(json_format.MessageToDict(reply))
        status = _STATUS_NAMES.get(reply.entry.status, "?")
        outcome = "ok" if ok else f"failed ({reply.error})"
        _progress(n, len(ids), f"{action} {entry_id} {reply.entry.operation}: {outcome}, now {status}")
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{action}: {len(ids) - failed} of {len(ids)} succeeded")
    return 1 if failed else 0


async def cmd_dlq_retry(args: argparse.Namespace, mesh: Mesh) -> int:
    return await _act(args, mesh, "retry", "pending")


async def cmd_dlq_park(args: argparse.Namespace, mesh: Mesh) -> int:
    return await _act(args, mesh, "park", "pending")


async def cmd_dlq_replay(args: argparse.Namespace, mesh: Mesh) -> int:
    return await _act(args, mesh, "replay", args.status or "parked")


# -- kassa sessions ------------------------------------------------------------------------------------------------


async def _stuck(mesh: Mesh, limit: int) -> Any:
    return await _dlq(mesh)(
        lambda s: s.ListStuckSessions(
            co.ListStuckSessionsRequest(page_size=limit), metadata=mesh.metadata, timeout=mesh.timeout
        )
    )


async def cmd_sessions_stuck(args: argparse.Namespace, mesh: Mesh) -> int:
    reply = await _stuck(mesh, args.limit)
    if args.json:
        print(_json(reply))
        return 0
    if not reply.sessions:
        print(f"no session stuck mid-confirm (lease {reply.lease_seconds}s)")
        return 0
    print(
        _table(
            ("SESSION", "STEP", "AGE", "LAST PROGRESS", "ATTEMPT", "ORDER"),
            (
                (
                    s.session_id,
                    s.saga_step or "-",
                    _age(s.age_seconds),
                    _when(s.last_progress_time),
                    s.saga_attempt,
                    s.order_id or "-",
                )
                for s in reply.sessions
            ),
        )
    )
    print(f"\n{len(reply.sessions)} stuck (no progress for more than the {reply.lease_seconds}s saga lease)")
    return 0


async def cmd_sessions_resolve(args: argparse.Namespace, mesh: Mesh) -> int:
    ids = list(args.session_ids)
    if args.all:
        if ids:
            raise _Failed("give session ids or --all, not both", 2)
        ids = [s.session_id for s in (await _stuck(mesh, args.limit)).sessions]
    elif not ids:
        raise _Failed("nothing to resolve: give session ids, or --all", 2)
    results: list[dict[str, Any]] = []
    failed = 0
    for n, sid in enumerate(ids, 1):
        try:
            # A def, not a lambda with a default (mypy cannot type those): bound to this session.
            def resolve(s: co_grpc.CheckoutAdminServiceStub, i: str = sid) -> Awaitable[Any]:
                return s.ResolveStuckSession(
                    co.ResolveStuckSessionRequest(session_id=i),
                    metadata=mesh.metadata,
                    timeout=mesh.timeout * ACTION_TIMEOUT_MULTIPLIER,
                )

            reply = await _dlq(mesh)(resolve)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED):
                raise
            failed += 1
            results.append({"sessionId": sid, "error": f"{exc.code().name}: {exc.details()}"})
            _progress(n, len(ids), f"resolve {sid}: refused, {exc.code().name}: {exc.details()}")
            continue
        failed += 1 if reply.outcome == "retry_later" else 0
        results.append(json_format.MessageToDict(reply))
        order = f", order {reply.order_id}" if reply.order_id else ""
        _progress(n, len(ids), f"resolve {sid}: {reply.outcome} ({reply.session_status}{order})")
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"resolved {len(ids) - failed} of {len(ids)}")
    return 1 if failed else 0


# -- kassa outbox --------------------------------------------------------------------------------------------------


async def cmd_outbox(args: argparse.Namespace, mesh: Mesh) -> int:
    services = [args.service] if args.service else list(OUTBOX_SERVICES)

    async def one(service: str) -> Any:
        reply = await mesh.call(
            service,
            lambda ch: ob_grpc.OutboxServiceStub(ch).GetOutboxStatus(
                ob.GetOutboxStatusRequest(service=service), metadata=mesh.metadata, timeout=mesh.timeout
            ),
        )
        return reply.services[0] if reply.services else ob.OutboxStatus(service=service)

    rows = await asyncio.gather(*(one(s) for s in services))
    if args.json:
        print(_json(list(rows)))
        return 0
    print(
        _table(
            ("SERVICE", "UNPUBLISHED", "PROCESSING", "FAILING", "OLDEST", "LAST PUBLISHED"),
            (
                (
                    r.service,
                    r.unpublished,
                    r.processing,
                    r.failing,
                    _age(r.oldest_unpublished_age_seconds) if r.unpublished else "-",
                    _when(r.last_published_time, r.HasField("last_published_time")),
                )
                for r in rows
            ),
        )
    )
    return 0


# -- kassa stock drift ---------------------------------------------------------------------------------------------

_DRIFT_NAMES = {
    st.DRIFT_STATUS_CLEAN: "clean",
    st.DRIFT_STATUS_DRIFT: "drift",
    st.DRIFT_STATUS_REPAIRED: "repaired",
    st.DRIFT_STATUS_OVERSOLD: "oversold",
}


def _drift_rows(findings: Iterable[Any]) -> str:
    return _table(
        ("SKU", "WAREHOUSE", "ON HAND", "RESERVED", "HELD", "DRIFT", "PROBLEMS"),
        (
            (
                f.sku,
                f.warehouse_id,
                f.on_hand,
                f.reserved,
                f.active_reserved,
                f"{f.drift:+d}",
                ",".join(f.problems) + ("" if f.repairable else " (not repairable)"),
            )
            for f in findings
        ),
    )


async def cmd_stock_drift(args: argparse.Namespace, mesh: Mesh) -> int:
    def stock(rpc: Callable[[st_grpc.StockAdminServiceStub], Awaitable[Any]]) -> Awaitable[Any]:
        return mesh.call("warehouse", lambda ch: rpc(st_grpc.StockAdminServiceStub(ch)))

    report = await stock(
        lambda s: s.GetStockDrift(
            st.GetStockDriftRequest(skus=args.skus or []),
            metadata=mesh.metadata,
            timeout=mesh.timeout * ACTION_TIMEOUT_MULTIPLIER,
        )
    )
    findings = list(report.findings)
    repaired: list[Any] = []
    status = report.status
    if args.repair and any(f.repairable and f.drift for f in findings):
        skus = sorted({f.sku for f in findings if f.repairable and f.drift})
        batches = [skus[i : i + REPAIR_BATCH] for i in range(0, len(skus), REPAIR_BATCH)]
        findings = [f for f in findings if f.sku not in set(skus)]
        for n, batch in enumerate(batches, 1):
            # A def, not a lambda with a default (mypy cannot type those): bound to this batch.
            def repair(s: st_grpc.StockAdminServiceStub, b: list[str] = batch) -> Awaitable[Any]:
                return s.RepairStockDrift(
                    st.RepairStockDriftRequest(skus=b),
                    metadata=mesh.metadata,
                    timeout=mesh.timeout * ACTION_TIMEOUT_MULTIPLIER,
                )

            done = await stock(repair)
            repaired += done.repaired
            fixed = {(r.sku, r.warehouse_id) for r in done.repaired}
            findings += [f for f in done.findings if (f.sku, f.warehouse_id) not in fixed]
            _progress(n, len(batches), f"repaired {len(done.repaired)} rows of {len(batch)} skus")
        worst = [f for f in findings if not f.repairable]
        status = st.DRIFT_STATUS_OVERSOLD if worst else st.DRIFT_STATUS_DRIFT if findings else st.DRIFT_STATUS_REPAIRED
    code = {st.DRIFT_STATUS_OVERSOLD: 2, st.DRIFT_STATUS_DRIFT: 1}.get(status, 0)
    if args.json:
        out = {"status": _DRIFT_NAMES[status], "checked": report.checked, "findings": findings, "repaired": repaired}
        print(
            json.dumps(
                {k: [json_format.MessageToDict(f) for f in v] if isinstance(v, list) else v for k, v in out.items()},
                indent=2,
            )
        )
        return code
    if repaired:
        print(f"repaired {len(repaired)} rows:")
        print(_drift_rows(repaired))
    if findings:
        print(("still " if args.repair else "") + f"{len(findings)} rows with problems:")
        print(_drift_rows(findings))
    print(f"{_DRIFT_NAMES[status]}: {report.checked} stock rows checked")
    return code


# -- kassa funnel --------------------------------------------------------------------------------------------------


async def cmd_funnel(args: argparse.Namespace, mesh: Mesh) -> int:
    end = datetime.now(UTC)
    start = end - timedelta(minutes=args.minutes)
    funnel_req = co.GetFunnelRequest()
    rates_req = pa.GetPaymentFailureRatesRequest()
    for request in (funnel_req, rates_req):
        request.start_time.FromDatetime(start)
        request.end_time.FromDatetime(end)
    funnel, rates = await asyncio.gather(
        _dlq(mesh)(lambda s: s.GetFunnel(funnel_req, metadata=mesh.metadata, timeout=mesh.timeout)),
        mesh.call(
            "payment",
            lambda ch: pa_grpc.PaymentAdminServiceStub(ch).GetPaymentFailureRates(
                rates_req, metadata=mesh.metadata, timeout=mesh.timeout
            ),
        ),
    )
    if args.json:
        print(_json({"funnel": funnel, "payments": rates}))
        return 0
    print(f"checkout funnel, {_when(funnel.start_time)} → {_when(funnel.end_time)} UTC")
    print(
        _table(
            ("STAGE", "COUNT"),
            (
                ("carts created", funnel.carts_created),
                ("checkouts started", funnel.checkouts_started),
                ("confirmed", funnel.checkouts_confirmed),
                ("failed", funnel.checkouts_failed),
                ("failure rate", f"{funnel.failure_rate:.1%}"),
            ),
        )
    )
    if funnel.failures_by_reason:
        print("\nfailed checkouts by reason")
        print(_table(("REASON", "COUNT"), ((f.reason, f.count) for f in funnel.failures_by_reason)))
    print(f"\npayments: {rates.payments}, failed {rates.failed} ({rates.failure_rate:.1%})")
    if rates.by_code:
        print(_table(("CODE", "COUNT", "RATE"), ((c.code, c.count, f"{c.rate:.1%}") for c in rates.by_code)))
    return 0


# -- the parsers ---------------------------------------------------------------------------------------------------


def add_commands(sub: Any, stock_sub: Any) -> None:
    """Register the commands on ``kassa``'s subparsers (and ``drift`` under ``kassa stock``)."""
    dlq = sub.add_parser("dlq", help="checkout's dead-letter queue of failed compensations (admin)")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="DLQ_COMMAND")

    def filters(p: argparse.ArgumentParser, *, status: bool = True) -> None:
        if status:
            p.add_argument("--status", choices=sorted(_STATUSES), help="only entries in this status")
        p.add_argument("--operation", help="only this operation (void_authorization, release_reservations, …)")
        p.add_argument("--session", metavar="SESSION_ID", help="only this checkout session's entries")
        p.add_argument("--limit", type=int, default=500, help="at most this many entries (default 500)")
        p.add_argument("--json", action="store_true", help="print the answers as JSON")

    ls = dlq_sub.add_parser("list", help="list entries, newest first")
    filters(ls)
    ls.set_defaults(func=_run(cmd_dlq_list))
    show = dlq_sub.add_parser("show", help="one entry: payload, attempts, last error, next attempt")
    show.add_argument("id", metavar="ID")
    show.add_argument("--json", action="store_true", help="print the answer as JSON")
    show.set_defaults(func=_run(cmd_dlq_show))
    for name, what, func in (
        ("retry", "run PENDING entries now (--all: every pending entry the filters pick)", cmd_dlq_retry),
        ("park", "stop automatic retries of PENDING entries (--all: every pending one the filters pick)", cmd_dlq_park),
        ("replay", "run PARKED or DEAD entries once, now (--all: every parked one, or --status dead)", cmd_dlq_replay),
    ):
        p = dlq_sub.add_parser(name, help=what)
        p.add_argument("ids", nargs="*", metavar="ID")
        p.add_argument("--all", action="store_true", help="every entry the filters pick")
        filters(p, status=name == "replay")
        p.set_defaults(func=_run(func))

    sessions = sub.add_parser("sessions", help="checkout sessions stuck mid-confirm (admin)")
    sessions_sub = sessions.add_subparsers(dest="sessions_command", required=True, metavar="SESSIONS_COMMAND")
    stuck = sessions_sub.add_parser("stuck", help="sessions whose saga made no progress for longer than its lease")
    stuck.add_argument("--limit", type=int, default=500, help="at most this many (default 500)")
    stuck.add_argument("--json", action="store_true", help="print the answer as JSON")
    stuck.set_defaults(func=_run(cmd_sessions_stuck))
    resolve = sessions_sub.add_parser(
        "resolve", help="drive stuck sessions forward or compensate them now, as the recovery worker would"
    )
    resolve.add_argument("session_ids", nargs="*", metavar="SESSION_ID")
    resolve.add_argument("--all", action="store_true", help="every stuck session")
    resolve.add_argument("--limit", type=int, default=500, help="with --all, at most this many (default 500)")
    resolve.add_argument("--json", action="store_true", help="print the answers as JSON")
    resolve.set_defaults(func=_run(cmd_sessions_resolve))

    outbox = sub.add_parser("outbox", help="each service's outbox: unpublished rows, oldest age, last published")
    outbox.add_argument("--service", choices=OUTBOX_SERVICES, help="only this service")
    outbox.add_argument("--json", action="store_true", help="print the answers as JSON")
    outbox.set_defaults(func=_run(cmd_outbox))

    drift = stock_sub.add_parser(
        "drift",
        help="the warehouse's reconciliation report over gRPC (exit 0 clean or repaired, 1 drift, 2 oversold)",
    )
    drift.add_argument("--repair", action="store_true", help="set reserved to the recomputed units where safe")
    drift.add_argument("--sku", action="append", dest="skus", metavar="SKU", help="only this sku (repeatable)")
    drift.add_argument("--json", action="store_true", help="print the report as JSON")
    drift.set_defaults(func=_run(cmd_stock_drift))

    funnel = sub.add_parser("funnel", help="checkout funnel and payment failure rates of the last hour (admin)")
    funnel.add_argument("--minutes", type=int, default=60, help="the window, ending now (default 60)")
    funnel.add_argument("--json", action="store_true", help="print the answers as JSON")
    funnel.set_defaults(func=_run(cmd_funnel))
