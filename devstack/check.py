"""``kassa check``: prove DESIGN.md §4 on what a stack holds now, from every service's tables and the provider's ledger.

Runnable against any stack (``python -m devstack.check --database-url … --sandbox-url … [--nats-url …]``);
``make chaos`` runs it after its recovery window. Every check is read-only: one read-only Postgres
transaction over the schemas (one per database when the services have databases of their own:
KASSA_<SERVICE>_DATABASE_URL or ``--service-database-url``, as infra.config gives them), the sandbox
provider's intent list (``GET /v1/payment_intents``), and, with a NATS URL, the message ids of the five
JetStream streams. Each check prints what it counted and, when it fails, the offending ids (at most
``--show`` of them).

The checks, by invariant:

* §4.1 oversell: ``stock_in_bounds`` — every stock row has 0 <= reserved <= on_hand.
* §4.2 double charge: ``one_order_per_session``; ``one_capture_per_order`` — at the provider at most one
  captured intent per order and per checkout session, and at most one capture-holding payment per order.
* §4.3 money leak: ``dlq_drained`` and ``sagas_finished`` (the conditions the others assume: no
  compensation pending or parked dead, no session still CONFIRMING); ``no_open_authorization`` — no
  intent authorized or awaiting the customer whose session has no order, or whose order failed or was
  cancelled (an order placed with capture on shipment holds its authorization until it ships);
  ``no_capture_without_order`` — money kept (captured less refunded) only for a sold order, and every sold
  card order captured exactly its grand total (once it shipped, for capture on shipment).
* §4.4 stock leak: ``reservations_within_ttl`` — nothing still held past its expiry (plus a grace for
  the sweeper); ``stock_reserved_matches_holds`` — each row's reserved = its held reservations;
  ``stock_sold_matches_orders`` — the units confirmed sold per session are exactly the lines of that
  session's sold order; ``stock_conserved`` — initial on_hand = on_hand now + units confirmed sold, for
  the rows whose initial stock is given (``--initial-stock``).
* §4.5 lost event: ``outbox_sent`` — every outbox row of the five publishing services marked sent (and,
  with ``--nats-url``, present in its stream); ``consumer_effects_once`` — no reservation restocked by
  two events, promotion counters equal to their usage rows, no refund past the capture and the
  payment service's refunded amount equal to the provider's.

Exit status: 0 when every check passed, 1 when one failed, 2 when the stack could not be read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from infra.config import DATABASE_SERVICES, redact
from infra.migrate import SCHEMAS

__all__ = [
    "CHECKS",
    "Finding",
    "StackReadError",
    "check_stack",
    "format_findings",
    "main",
    "read_initial_stock",
    "sqlalchemy_to_libpq",
]

# Orders whose units are sold (their reservations confirmed); the card-paid ones among them were captured.
SOLD_STATUSES = ("CONFIRMED", "AWAITING_SHIPMENT", "PACKED", "SHIPPED", "DELIVERED")
ENDED_STATUSES = ("PAYMENT_FAILED", "CANCELLED")
CASH_ON_DELIVERY = "cod"
OUTBOX_SERVICES = ("checkout", "order", "payment", "warehouse", "promotion")
_STREAMS = {service: f"KASSA_{service.upper()}" for service in OUTBOX_SERVICES}
# Provider intent statuses that hold money the customer has not been charged yet.
_OPEN_INTENT = ("requires_capture", "requires_action")
_CAPTURE_HOLDING = ("CAPTURING", "CAPTURED", "PARTIALLY_REFUNDED", "REFUNDED")
_PAGE = 100
_TIMEOUT_S = 30.0

CHECKS: tuple[tuple[str, str], ...] = (
    ("stock_in_bounds", "§4.1"),
    ("one_order_per_session", "§4.2"),
    ("one_capture_per_order", "§4.2"),
    ("dlq_drained", "§4.3"),
    ("sagas_finished", "§4.3"),
    ("no_open_authorization", "§4.3"),
    ("no_capture_without_order", "§4.3"),
    ("reservations_within_ttl", "§4.4"),
    ("stock_reserved_matches_holds", "§4.4"),
    ("stock_sold_matches_orders", "§4.4"),
    ("stock_conserved", "§4.4"),
    ("outbox_sent", "§4.5"),
    ("consumer_effects_once", "§4.5"),
)
_SECTION = dict(CHECKS)


class StackReadError(RuntimeError):
    """The database, the provider or NATS could not be read: nothing was proven either way."""


@dataclass(frozen=True)
class Finding:
    """One check: whether it held, what it counted (``count``), and the ids that break it."""

    name: str
    passed: bool
    count: int
    detail: str
    offenders: tuple[str, ...] = ()
    skipped: bool = False

    @property
    def section(self) -> str:
        return _SECTION.get(self.name, "")

    @property
    def verdict(self) -> str:
        return "SKIP" if self.skipped else "PASS" if self.passed else "FAIL"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "invariant": self.section,
            "verdict": self.verdict,
            "passed": self.passed,
            "count": self.count,
            "detail": self.detail,
            "offenders": list(self.offenders),
        }


def _finding(name: str, count: int, detail: str, offenders: Iterable[str] = ()) -> Finding:
    bad = tuple(offenders)
    return Finding(name, not bad, count, detail, bad)


def sqlalchemy_to_libpq(url: str) -> str:
    """``postgresql+psycopg://u@h/db`` -> ``postgresql://u@h/db`` for psycopg.connect."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}" if sep else url


# --------------------------------------------------------------------------------------------------
# What is read


class PaymentRow(NamedTuple):
    payment_id: str
    status: str
    order_id: str | None
    provider_payment_id: str | None
    refunded: int


@dataclass
class Snapshot:
    """Everything the checks need, read once; each list holds plain tuples/dicts."""

    stock: list[tuple[str, str, int, int, int]] = field(default_factory=list)  # sku, wh, on_hand, reserved, held
    expired_holds: list[tuple[str, str, str, str]] = field(default_factory=list)  # id, ref, sku, expires_at
    confirmed_units: dict[tuple[str, str], int] = field(default_factory=dict)  # (sku, wh) -> units sold
    sold_by_ref: dict[str, Counter[str]] = field(default_factory=dict)  # session -> sku -> confirmed units
    orders: dict[str, tuple[str, str, str, int]] = field(default_factory=dict)  # id -> session, status, method, total
    # Orders placed with KASSA_CAPTURE_ON=shipment that have not shipped yet: their hold is meant to stay open.
    awaiting_capture: set[str] = field(default_factory=set)
    lines: dict[str, Counter[str]] = field(default_factory=dict)  # order id -> sku -> quantity
    payments: list[PaymentRow] = field(default_factory=list)
    compensations: list[tuple[str, str, str, str]] = field(default_factory=list)  # id, session, operation, status
    confirming: list[tuple[str, str]] = field(default_factory=list)  # session, since
    outbox: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)  # service -> (id, type, status)
    restock_lines: list[tuple[str, str]] = field(default_factory=list)  # (event id, reservation id)
    promotions: list[tuple[str, int, int, int, int]] = field(default_factory=list)
    refunds: list[tuple[str, int, int]] = field(default_factory=list)  # payment id, captured, refunded succeeded
    intents: list[dict[str, Any]] | None = None
    stream_ids: dict[str, set[str]] | None = None


# The services whose tables the checks read.
READ_SERVICES = ("checkout", "order", "payment", "warehouse", "promotion")


def database_urls(database_url: str | None, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each read service's database: its own (``overrides``, as KASSA_<SERVICE>_DATABASE_URL gives the services
    themselves, infra.config) or else ``database_url``. ValueError naming the services left without one."""
    urls = {svc: (overrides or {}).get(svc) or database_url or "" for svc in READ_SERVICES}
    missing = [svc for svc, url in urls.items() if not url]
    if missing:
        raise ValueError(
            f"no database URL for {', '.join(missing)}: give --database-url or KASSA_<SERVICE>_DATABASE_URL"
        )
    return urls


def _connect(database_url: str) -> Any:
    import psycopg

    try:
        conn = psycopg.connect(
            sqlalchemy_to_libpq(database_url),
            options="-c default_transaction_read_only=on",
            connect_timeout=10,
            application_name="kassa-check",
        )
    except psycopg.Error as exc:
        raise StackReadError(f"cannot connect to {redact(database_url)}: {exc}") from exc
    return conn


def _read_database(database_url: str | Mapping[str, str], grace_seconds: float) -> Snapshot:
    """Read every schema, each on its service's database. Services sharing a database share one snapshot
    (REPEATABLE READ); separate databases each get their own, begun back to back before any is read."""
    urls = database_urls(database_url) if isinstance(database_url, str) else dict(database_url)
    s = SCHEMAS
    snap = Snapshot()
    conns: dict[str, Any] = {}
    try:
        for url in dict.fromkeys(urls.values()):
            conns[url] = _connect(url)
        for c in conns.values():
            c.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            c.execute("SELECT 1")  # the snapshot is taken at the first statement: take them all now
        _read_into(snap, {svc: conns[url] for svc, url in urls.items()}, grace_seconds, s)
    finally:
        for c in conns.values():
            with contextlib.suppress(Exception):
                c.rollback()
            c.close()
    return snap


def _read_into(snap: Snapshot, db: Mapping[str, Any], grace_seconds: float, s: Mapping[str, str]) -> None:
    snap.stock = [
        (sku, wh, int(on_hand), int(reserved), int(held))
        for sku, wh, on_hand, reserved, held in db["warehouse"].execute(
            f"""SELECT st.sku, st.warehouse_id, st.on_hand, st.reserved,
                       coalesce((SELECT sum(r.quantity) FROM {s["warehouse"]}.reservations r
                                 WHERE r.sku = st.sku AND r.warehouse_id = st.warehouse_id
                                   AND r.status = 'active'), 0)
                FROM {s["warehouse"]}.stock st ORDER BY st.sku, st.warehouse_id"""
        )
    ]
    snap.expired_holds = [
        (str(rid), ref, sku, str(expires))
        for rid, ref, sku, expires in db["warehouse"].execute(
            f"""SELECT reservation_id, reservation_ref, sku, expires_at FROM {s["warehouse"]}.reservations
                WHERE status = 'active' AND expires_at < now() - make_interval(secs => %s)
                ORDER BY expires_at""",
            (grace_seconds,),
        )
    ]
    for ref, sku, wh, qty in db["warehouse"].execute(
        f"SELECT reservation_ref, sku, warehouse_id, quantity FROM {s['warehouse']}.reservations"
        " WHERE status = 'confirmed'"
    ):
        snap.confirmed_units[(sku, wh)] = snap.confirmed_units.get((sku, wh), 0) + int(qty)
        snap.sold_by_ref.setdefault(ref, Counter())[sku] += int(qty)
    for oid, session, status, method, total in db["order"].execute(
        f"SELECT order_id, checkout_session_id, status, payment_method, grand_total_minor FROM {s['order']}.orders"
    ):
        snap.orders[str(oid)] = (session, status, method, int(total))
    snap.awaiting_capture = {
        str(oid)
        for (oid,) in db["order"].execute(
            f"SELECT order_id FROM {s['order']}.orders WHERE payment_outcome = 'AUTHORIZED'"
            " AND status IN ('CONFIRMED', 'AWAITING_SHIPMENT', 'PACKED')"
        )
    }
    for oid, sku, qty in db["order"].execute(f"SELECT order_id, sku, quantity FROM {s['order']}.order_lines"):
        snap.lines.setdefault(str(oid), Counter())[sku] += int(qty)
    snap.payments = [
        PaymentRow(str(pid), status, order_id, provider_id, int(refunded))
        for pid, status, order_id, provider_id, refunded in db["payment"].execute(
            f"""SELECT payment_id, status, order_id, provider_payment_id, refunded_minor
                FROM {s["payment"]}.payments"""
        )
    ]
    snap.refunds = [
        (str(pid), int(captured), int(refunded))
        for pid, captured, refunded in db["payment"].execute(
            f"""SELECT p.payment_id, p.captured_minor, coalesce(sum(r.amount_minor), 0)
                FROM {s["payment"]}.payments p JOIN {s["payment"]}.refunds r USING (payment_id)
                WHERE r.status = 'SUCCEEDED' GROUP BY p.payment_id, p.captured_minor"""
        )
    ]
    snap.compensations = [
        (str(cid), str(session), op, status)
        for cid, session, op, status in db["checkout"].execute(
            f"""SELECT id, session_id, operation, status FROM {s["checkout"]}.failed_compensations
                WHERE status <> 'done' ORDER BY created_at"""
        )
    ]
    snap.confirming = [
        (str(sid), str(since))
        for sid, since in db["checkout"].execute(
            f"""SELECT session_id, coalesce(confirm_started_at, updated_at) FROM {s["checkout"]}.checkout_sessions
                WHERE status = 'CONFIRMING' AND coalesce(confirm_started_at, updated_at)
                      < now() - make_interval(secs => %s)""",
            (grace_seconds,),
        )
    ]
    for service in OUTBOX_SERVICES:
        snap.outbox[service] = [
            (str(eid), etype, status)
            for eid, etype, status in db[service].execute(
                f"SELECT event_id, event_type, status FROM {s[service]}.outbox ORDER BY created_at"
            )
        ]
    snap.restock_lines = [
        (str(eid), str(rid))
        for eid, rid in db["warehouse"].execute(
            f"""SELECT o.event_id, line->>'reservation_id' FROM {s["warehouse"]}.outbox o,
                       jsonb_array_elements(o.payload->'data'->'lines') AS line
                WHERE o.event_type = 'StockRestocked'"""
        )
    ]
    snap.promotions = [
        (code, int(used), int(reserved), int(confirmed_rows), int(reserved_rows))
        for code, used, reserved, confirmed_rows, reserved_rows in db["promotion"].execute(
            f"""SELECT p.code, p.used_count, p.reserved_count,
                       count(u.*) FILTER (WHERE u.status = 'confirmed'),
                       count(u.*) FILTER (WHERE u.status = 'reserved')
                FROM {s["promotion"]}.promotions p
                LEFT JOIN {s["promotion"]}.promotion_usages u USING (promotion_id)
                GROUP BY p.promotion_id, p.code, p.used_count, p.reserved_count"""
        )
    ]


def read_intents(sandbox_url: str) -> list[dict[str, Any]]:
    """Every intent of the provider's ledger, following its cursor (newest first)."""
    import httpx

    out: list[dict[str, Any]] = []
    cursor: str | None = None
    try:
        with httpx.Client(base_url=sandbox_url.rstrip("/"), timeout=_TIMEOUT_S, trust_env=False) as client:
            while True:
                params: dict[str, Any] = {"limit": _PAGE}
                if cursor:
                    params["starting_after"] = cursor
                response = client.get("/v1/payment_intents", params=params)
                response.raise_for_status()
                page = response.json()
                out.extend(page["data"])
                if not page.get("has_more") or not page["data"]:
                    return out
                cursor = page["data"][-1]["id"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise StackReadError(f"cannot list the provider's intents at {sandbox_url}: {exc!r}") from exc


async def _stream_ids(nats_url: str) -> dict[str, set[str]]:
    """The ``Nats-Msg-Id`` of every message in each service's stream (headers only, an ephemeral consumer)."""
    import nats
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import NotFoundError

    from infra.events import servers

    nc = await nats.connect(servers(nats_url), connect_timeout=5, max_reconnect_attempts=2, allow_reconnect=False)
    try:
        js = nc.jetstream()
        found: dict[str, set[str]] = {}
        for service, stream in _STREAMS.items():
            ids: set[str] = found.setdefault(service, set())
            try:
                info = await js.stream_info(stream)
            except NotFoundError:
                continue
            left = info.state.messages
            if not left:
                continue
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, headers_only=True, inactive_threshold=30
            )
            sub = await js.pull_subscribe(f"kassa.{service}.>", stream=stream, config=config)
            try:
                while left > 0:
                    try:
                        msgs = await sub.fetch(min(left, 1000), timeout=5)
                    except NatsTimeout:
                        break
                    for msg in msgs:
                        if msg.headers and msg.headers.get("Nats-Msg-Id"):
                            ids.add(msg.headers["Nats-Msg-Id"])
                    left -= len(msgs)
            finally:
                await sub.unsubscribe()
        return found
    finally:
        await nc.close()


def read_stream_ids(nats_url: str) -> dict[str, set[str]]:
    try:
        return asyncio.run(asyncio.wait_for(_stream_ids(nats_url), timeout=120))
    except Exception as exc:
        raise StackReadError(f"cannot read the JetStream streams at {nats_url}: {exc!r}") from exc


# --------------------------------------------------------------------------------------------------
# The checks (pure: a Snapshot in, Findings out)


def _stock_checks(snap: Snapshot, initial: Mapping[tuple[str, str], int] | None) -> list[Finding]:
    rows = len(snap.stock)
    out = [
        _finding(
            "stock_in_bounds",
            rows,
            f"{rows} sku/warehouse rows, each 0 <= reserved <= on_hand",
            (
                f"{sku}@{wh} on_hand={on_hand} reserved={reserved}"
                for sku, wh, on_hand, reserved, _ in snap.stock
                if not (on_hand >= 0 and 0 <= reserved <= on_hand)
            ),
        ),
        _finding(
            "reservations_within_ttl",
            len(snap.expired_holds),
            f"{len(snap.expired_holds)} reservations still held past their expiry",
            (
                f"reservation {rid} (session {ref}, {sku}) expired {expires}"
                for rid, ref, sku, expires in snap.expired_holds
            ),
        ),
        _finding(
            "stock_reserved_matches_holds",
            rows,
            f"{rows} rows whose reserved equals the units of their held reservations",
            (
                f"{sku}@{wh} reserved={reserved} held={held}"
                for sku, wh, _, reserved, held in snap.stock
                if reserved != held
            ),
        ),
    ]
    sold_orders = {
        session: snap.lines.get(oid, Counter())
        for oid, (session, status, _, _) in snap.orders.items()
        if status in SOLD_STATUSES
    }
    mismatched = []
    for ref in sorted(set(snap.sold_by_ref) | set(sold_orders)):
        confirmed, ordered = snap.sold_by_ref.get(ref, Counter()), sold_orders.get(ref)
        if ordered is None:
            mismatched.append(f"session {ref}: {sum(confirmed.values())} units confirmed sold but no sold order")
        elif confirmed != ordered:
            mismatched.append(f"session {ref}: confirmed {dict(confirmed)} but the order has {dict(ordered)}")
    units = sum(sum(c.values()) for c in snap.sold_by_ref.values())
    out.append(
        _finding(
            "stock_sold_matches_orders",
            len(sold_orders),
            f"{len(sold_orders)} sold orders, {units} units confirmed sold, session by session the same lines",
            mismatched,
        )
    )
    if initial:
        now = {(sku, wh): on_hand for sku, wh, on_hand, _, _ in snap.stock}
        leaks = [
            f"{sku}@{wh} initial={start} on_hand={now.get((sku, wh), 0)} sold={snap.confirmed_units.get((sku, wh), 0)}"
            for (sku, wh), start in sorted(initial.items())
            if now.get((sku, wh), 0) + snap.confirmed_units.get((sku, wh), 0) != start
        ]
        sold = sum(snap.confirmed_units.get(key, 0) for key in initial)
        out.append(
            _finding(
                "stock_conserved",
                len(initial),
                f"{len(initial)} rows with known initial stock: initial = on_hand now + {sold} units sold",
                leaks,
            )
        )
    else:
        out.append(
            Finding("stock_conserved", True, 0, "not checked: no initial stock given (--initial-stock)", (), True)
        )
    return out


def _order_checks(snap: Snapshot) -> list[Finding]:
    by_session: dict[str, list[str]] = defaultdict(list)
    for oid, (session, *_rest) in snap.orders.items():
        by_session[session].append(oid)
    return [
        _finding(
            "one_order_per_session",
            len(snap.orders),
            f"{len(snap.orders)} orders for {len(by_session)} checkout sessions",
            (f"session {s}: orders {', '.join(sorted(o))}" for s, o in sorted(by_session.items()) if len(o) > 1),
        ),
        _finding(
            "dlq_drained",
            len(snap.compensations),
            f"{len(snap.compensations)} failed compensations pending or parked dead",
            (f"{op} {cid} (session {session}) {status}" for cid, session, op, status in snap.compensations),
        ),
        _finding(
            "sagas_finished",
            len(snap.confirming),
            f"{len(snap.confirming)} sessions still CONFIRMING",
            (f"session {sid} CONFIRMING since {since}" for sid, since in snap.confirming),
        ),
    ]


def _kept(intent: Mapping[str, Any]) -> int:
    return int(intent.get("amount_received") or 0) - int(intent.get("amount_refunded") or 0)


def _money_checks(snap: Snapshot) -> list[Finding]:
    order_of_session = {
        session: (oid, status, method, total) for oid, (session, status, method, total) in snap.orders.items()
    }
    holding = Counter(p.order_id for p in snap.payments if p.status in _CAPTURE_HOLDING and p.order_id)
    double_db = [f"order {o}: {n} capture-holding payments" for o, n in sorted(holding.items()) if n > 1]
    if snap.intents is None:
        skipped = "not checked: no provider URL (--sandbox-url)"
        return [
            _finding(
                "one_capture_per_order",
                len(holding),
                f"{len(holding)} orders with a capture (payment service only)",
                double_db,
            ),
            Finding("no_open_authorization", True, 0, skipped, (), True),
            Finding("no_capture_without_order", True, 0, skipped, (), True),
        ]
    captured = [i for i in snap.intents if int(i.get("amount_received") or 0) > 0]
    # A capture given back in full (a late success refunded at once) no longer charges anyone.
    charging = [i for i in captured if _kept(i) > 0]
    per_order: dict[str, list[str]] = defaultdict(list)
    per_session: dict[str, list[str]] = defaultdict(list)
    for intent in charging:
        meta = intent.get("metadata") or {}
        if meta.get("kassa_order_id"):
            per_order[meta["kassa_order_id"]].append(intent["id"])
        if meta.get("kassa_session_id"):
            per_session[meta["kassa_session_id"]].append(intent["id"])
    doubles = double_db + [f"order {o}: intents {', '.join(i)}" for o, i in sorted(per_order.items()) if len(i) > 1]
    doubles += [f"session {s}: intents {', '.join(i)}" for s, i in sorted(per_session.items()) if len(i) > 1]
    open_bad = []
    open_count = 0
    for intent in snap.intents:
        if intent.get("status") not in _OPEN_INTENT:
            continue
        open_count += 1
        session = (intent.get("metadata") or {}).get("kassa_session_id", "")
        order = order_of_session.get(session)
        if order is None:
            open_bad.append(f"intent {intent['id']} {intent['status']}: session {session or '?'} has no order")
        elif order[1] in ENDED_STATUSES or (
            intent["status"] == "requires_capture"
            and order[1] in SOLD_STATUSES
            and order[0] not in snap.awaiting_capture
        ):
            open_bad.append(f"intent {intent['id']} {intent['status']}: order {order[0]} is {order[1]}")
    kept_bad = []
    kept_by_session: Counter[str] = Counter()
    for intent in captured:
        session = (intent.get("metadata") or {}).get("kassa_session_id", "")
        kept_by_session[session] += _kept(intent)
        if _kept(intent) <= 0:
            continue
        order = order_of_session.get(session)
        if order is None:
            kept_bad.append(f"intent {intent['id']} keeps {_kept(intent)}: session {session or '?'} has no order")
        elif order[1] not in SOLD_STATUSES:
            kept_bad.append(f"intent {intent['id']} keeps {_kept(intent)}: order {order[0]} is {order[1]}")
    paid_orders = 0
    # What the payment service refunded of each order (an operator's partial refund of a sold order: the order stays
    # sold and keeps the rest). A capture given back in full at once (a late duplicate) is no refund of the order's.
    refunded_by_order: Counter[str] = Counter()
    for p in snap.payments:
        if p.order_id:
            refunded_by_order[p.order_id] += p.refunded
    for session, (oid, status, method, total) in order_of_session.items():
        if status in SOLD_STATUSES and method != CASH_ON_DELIVERY and total > 0 and oid not in snap.awaiting_capture:
            paid_orders += 1
            if kept_by_session.get(session, 0) not in (total, total - refunded_by_order[oid]):
                kept_bad.append(f"order {oid} {status}: captured {kept_by_session.get(session, 0)} of {total}")
    return [
        _finding(
            "one_capture_per_order",
            len(captured),
            f"{len(captured)} captured intents at the provider, {len(charging)} still charging, "
            f"for {len(per_session)} sessions",
            doubles,
        ),
        _finding(
            "no_open_authorization",
            open_count,
            f"{open_count} intents authorized or awaiting the customer, each for a live order",
            open_bad,
        ),
        _finding(
            "no_capture_without_order",
            paid_orders,
            f"{paid_orders} sold card orders each captured their total; money kept only for sold orders",
            kept_bad,
        ),
    ]


def _event_checks(snap: Snapshot) -> list[Finding]:
    total = sum(len(rows) for rows in snap.outbox.values())
    unsent = [
        f"{service} event {eid} {etype} {status}"
        for service, rows in snap.outbox.items()
        for eid, etype, status in rows
        if status != "sent"
    ]
    detail = f"{total} outbox rows of {len(snap.outbox)} services marked sent"
    if snap.stream_ids is not None:
        missing = [
            f"{service} event {eid} {etype} marked sent but not in stream {_STREAMS[service]}"
            for service, rows in snap.outbox.items()
            for eid, etype, status in rows
            if status == "sent" and eid not in snap.stream_ids.get(service, set())
        ]
        unsent += missing
        detail += f" and found in JetStream ({sum(len(v) for v in snap.stream_ids.values())} messages read)"
    effects: list[str] = []
    restocked = Counter(rid for _, rid in snap.restock_lines)
    effects += [f"reservation {rid} restocked by {n} events" for rid, n in sorted(restocked.items()) if n > 1]
    effects += [
        f"promotion {code}: used_count={used} for {rows_c} confirmed uses, reserved_count={reserved} for {rows_r}"
        for code, used, reserved, rows_c, rows_r in snap.promotions
        if used != rows_c or reserved != rows_r
    ]
    effects += [
        f"payment {pid}: refunds {refunded} exceed the capture {captured}"
        for pid, captured, refunded in snap.refunds
        if refunded > captured
    ]
    if snap.intents is not None:
        refunded_at = {i["id"]: int(i.get("amount_refunded") or 0) for i in snap.intents}
        effects += [
            f"payment {p.payment_id}: refunded {p.refunded} here, {refunded_at[p.provider_payment_id]} at the "
            f"provider ({p.provider_payment_id})"
            for p in snap.payments
            if p.provider_payment_id in refunded_at and p.refunded > refunded_at[p.provider_payment_id]
        ]
    count = len(snap.restock_lines) + len(snap.promotions) + len(snap.refunds)
    return [
        _finding("outbox_sent", total, detail, unsent),
        _finding(
            "consumer_effects_once",
            count,
            f"{len(restocked)} restocked reservations, {len(snap.promotions)} promotions, "
            f"{len(snap.refunds)} refunded payments: each effect applied once",
            effects,
        ),
    ]


def evaluate(snap: Snapshot, initial: Mapping[tuple[str, str], int] | None = None) -> list[Finding]:
    """Every check over one snapshot, in the order of :data:`CHECKS`."""
    found = {
        f.name: f
        for f in (*_stock_checks(snap, initial), *_order_checks(snap), *_money_checks(snap), *_event_checks(snap))
    }
    return [found[name] for name, _ in CHECKS]


def check_stack(
    database_url: str | Mapping[str, str],
    *,
    sandbox_url: str | None = None,
    nats_url: str | None = None,
    initial_stock: Mapping[tuple[str, str], int] | None = None,
    grace_seconds: float = 30.0,
) -> list[Finding]:
    """Read the stack and run every check. ``database_url``: one database for every schema, or each read
    service's own (:func:`database_urls`). Raises :class:`StackReadError` when something can't be read."""
    snap = _read_database(database_url, grace_seconds)
    if sandbox_url:
        snap.intents = read_intents(sandbox_url)
    if nats_url:
        snap.stream_ids = read_stream_ids(nats_url)
    return evaluate(snap, initial_stock)


# --------------------------------------------------------------------------------------------------
# Output and the command line


def format_findings(findings: Sequence[Finding], *, show: int = 10) -> str:
    width = max(len(f.name) for f in findings)
    lines = []
    for f in findings:
        lines.append(f"  {f.verdict}  {f.section:<5} {f.name:<{width}}  {f.count:>7}  {f.detail}")
        for offender in f.offenders[:show]:
            lines.append(f"        - {offender}")
        if len(f.offenders) > show:
            lines.append(f"        … and {len(f.offenders) - show} more")
    failed = [f.name for f in findings if not f.passed]
    lines.append(f"  result: {'FAIL (' + ', '.join(failed) + ')' if failed else 'PASS'}")
    return "\n".join(lines)


def read_initial_stock(path: Path) -> dict[tuple[str, str], int]:
    """``{"SKU": {"warehouse": on_hand, ...}, ...}`` from a JSON file."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError("--initial-stock wants a JSON object {sku: {warehouse_id: on_hand}}")
    return {(sku, wh): int(n) for sku, per in data.items() for wh, n in dict(per).items()}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kassa check",
        description="Prove DESIGN.md §4's invariants on a stack's databases and its provider's ledger.",
    )
    p.add_argument(
        "--database-url",
        default=os.environ.get("KASSA_DATABASE_URL"),
        help="the database of every service without one of its own (default: $KASSA_DATABASE_URL)",
    )
    p.add_argument(
        "--service-database-url",
        action="append",
        default=[],
        metavar="SERVICE=URL",
        help="a service's own database, as the services read KASSA_<SERVICE>_DATABASE_URL (which is the default)",
    )
    p.add_argument(
        "--sandbox-url",
        default=os.environ.get("KASSA_SANDBOX_URL"),
        help="the sandbox provider whose ledger to read (default: $KASSA_SANDBOX_URL; 'none' to skip)",
    )
    p.add_argument(
        "--nats-url",
        default=os.environ.get("KASSA_NATS_URL"),
        help="check sent events are in JetStream (default: $KASSA_NATS_URL; 'none' to skip)",
    )
    p.add_argument("--initial-stock", type=Path, help="JSON {sku: {warehouse_id: on_hand}}: check stock is conserved")
    p.add_argument(
        "--grace-seconds",
        type=float,
        default=30.0,
        help="a hold past its expiry or a session CONFIRMING for less than this is still in progress",
    )
    p.add_argument("--show", type=int, default=10, help="offending ids printed per check")
    p.add_argument("--json", type=Path, help="also write the findings as JSON here")
    return p


def _none(value: str | None) -> str | None:
    return None if not value or value.lower() == "none" else value


def _service_urls(pairs: Sequence[str]) -> dict[str, str]:
    """KASSA_<SERVICE>_DATABASE_URL from the environment, then each --service-database-url SERVICE=URL."""
    urls = {svc: url for svc in DATABASE_SERVICES if (url := os.environ.get(f"KASSA_{svc.upper()}_DATABASE_URL"))}
    for pair in pairs:
        svc, sep, url = pair.partition("=")
        if not sep or svc not in DATABASE_SERVICES or not url:
            raise ValueError(
                f"--service-database-url wants SERVICE=URL with SERVICE one of {', '.join(DATABASE_SERVICES)}"
            )
        urls[svc] = url
    return urls


def main(argv: Sequence[str] | None = None, *, out: Callable[[str], object] = print) -> int:
    args = build_parser().parse_args(argv)
    try:
        urls = database_urls(args.database_url, _service_urls(args.service_database_url))
    except ValueError as exc:
        sys.stderr.write(f"kassa check: {exc}\n")
        return 2
    try:
        initial = read_initial_stock(args.initial_stock) if args.initial_stock else None
        findings = check_stack(
            urls,
            sandbox_url=_none(args.sandbox_url),
            nats_url=_none(args.nats_url),
            initial_stock=initial,
            grace_seconds=args.grace_seconds,
        )
    except (StackReadError, OSError, ValueError) as exc:
        sys.stderr.write(f"kassa check: {exc}\n")
        return 2
    databases = ", ".join(
        f"{redact(url)} ({', '.join(svc for svc, u in urls.items() if u == url)})"
        for url in dict.fromkeys(urls.values())
    )
    out(f"kassa check: {databases}" + (f", provider {args.sandbox_url}" if _none(args.sandbox_url) else ""))
    out(format_findings(findings, show=args.show))
    if args.json:
        args.json.write_text(json.dumps([f.as_dict() for f in findings], indent=2) + "\n")
    return 0 if all(f.passed for f in findings) else 1


if __name__ == "__main__":
    sys.exit(main())
