"""No personal data in plain text anywhere the mesh keeps or writes things (issue 10 §5).

A customer with distinctive personal data (an email, a name, streets, phone numbers, notes, each carrying a
fresh random marker) checks out over REST through the whole mesh: a declined card, a 3-D Secure payment
left waiting (its saga state kept), a paid order that is then cancelled (events to payment, warehouse and
promotion), reads of the order, and requests refused for bad input that carries the marker. Then everything
the mesh holds is read back — a ``pg_dump`` of the database (every schema: sessions, orders, outboxes,
inboxes, DLQ, idempotency records), every message of every JetStream stream, every Redis key, the sandbox
provider's ledger, every process's log and every span of the trace files — and none may contain any of the
values in plain text. The controls check that the scan saw the flow: the order's id is in the dump, the streams
and the logs, and its personal data is in the dump as ``pii1:`` tokens.

A second test reads every log line the mesh wrote in this run (every e2e test before it, and a flow of its own
with an admin call and a webhook): one JSON object per line, no JWT, bearer credential, payment token, webhook
signature or secret, no unmasked email, and every line written while serving a call or an event carries the
trace it belongs to (``trace_id``, ``span_id``), checkout's naming the session, order or payment it works on.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import nats
import pytest
import redis.asyncio as redis_async
import sqlalchemy as sa
from e2e.support import Rest, RestError, eventually, fill_cart, make_catalog
from nats.js.errors import NotFoundError

from devstack.localstack import postgres_bin_dir

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


class Personal:
    """One customer's personal data, every value unique to this run."""

    def __init__(self) -> None:
        self.marker = uuid.uuid4().hex
        digits = "".join(random.choices("0123456789", k=8))
        more = "".join(random.choices("0123456789", k=8))
        self.email = f"pii-scan-{self.marker}@example.com"
        self.phone = f"+44 20 {digits[:4]} {digits[4:]}"
        self.billing_phone = f"+1 (555) {more[:3]}-{more[3:7]}"
        self.shipping = {
            "name": f"Ada {self.marker[:12]} Lovelace",
            "line1": f"{self.marker} Secret Street",
            "line2": f"Flat {self.marker[:6]}",
            "city": "London",
            "postalCode": "10001",
            "countryCode": "US",
            "phone": self.phone,
        }
        self.billing = {
            "name": "A. Lovelace",
            "line1": f"{self.marker} Billing Road",
            "city": "Newark",
            "postalCode": "07102",
            "countryCode": "US",
            "phone": self.billing_phone,
        }
        self.notes = f"gate code {self.marker[:10]}, call {self.phone}"
        self._digits, self._more = digits, more

    def needles(self) -> list[str]:
        """What must appear nowhere: the marker (in every value), the email, the phone numbers in any spacing."""
        return [
            self.marker,
            self.marker[:12],
            self.email,
            self._digits,
            f"{self._digits[:4]} {self._digits[4:]}",
            self._more[:7],
            f"{self._more[:3]}-{self._more[3:7]}",
        ]


async def _checkout(client: Rest, skus: list[str], who: Personal, token: str, *, bad_input: bool = False) -> dict:
    cart_id = await fill_cart(client, skus, [1])
    started = await client.call("POST", "/v1/checkout/start", {"cartId": cart_id, "shipToCountryCode": "US"})
    session_id = started["session"]["sessionId"]
    if bad_input:
        # Refusals of input carrying the personal data must not echo it (nor log or store it).
        for state, field in (
            ({"email": f"pii-scan-{who.marker}@@example.com"}, "email"),
            ({"shippingAddress": {**who.shipping, "phone": f"{who.phone}\u0000"}}, "shipping_address.phone"),
            ({"notes": f"{who.notes}\u0000"}, "notes"),
        ):
            with pytest.raises(RestError) as refused:
                await client.call("PUT", "/v1/checkout/state", {"sessionId": session_id, **state})
            assert refused.value.status == 400 and refused.value.metadata.get("field") == field, refused.value.body
            assert who.marker not in str(refused.value.body) and who._digits[4:] not in str(refused.value.body)
    state = {
        "sessionId": session_id,
        "email": who.email,
        "shippingAddress": who.shipping,
        "billingAddress": who.billing,
        "shippingMethod": "standard",
        "paymentMethod": token,
        "notes": who.notes,
    }
    session = (await client.call("PUT", "/v1/checkout/state", state))["session"]
    assert session["email"] == who.email and session["shippingAddress"]["line1"] == who.shipping["line1"]
    preview = (await client.call("GET", f"/v1/checkout/sessions/{session_id}/preview"))["preview"]
    try:
        return dict(
            await client.call(
                "POST",
                "/v1/checkout/confirm",
                {"sessionId": session_id, "expectedGrandTotal": preview["grandTotal"]},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
        )
    except RestError as exc:
        return {"error": exc.reason, "sessionId": session_id}


# -- reading back everything the mesh holds --------------------------------------------------------------------


def _pg_dump(database_url: str) -> str:
    url = sa.engine.make_url(database_url)
    env = {**os.environ, "PGPASSWORD": url.password or ""}
    argv = [
        str(postgres_bin_dir() / "pg_dump"), "--no-owner", "--host", url.host or "127.0.0.1",
        "--port", str(url.port or 5432), "--username", url.username or "postgres", url.database or "postgres",
    ]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout.decode(errors="replace")


async def _jetstream_messages(nats_url: str) -> str:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        parts: list[str] = []
        for stream in await js.streams_info():
            for seq in range(max(stream.state.first_seq, 1), stream.state.last_seq + 1):
                try:
                    msg = await js.get_msg(stream.config.name or "", seq)
                except NotFoundError:
                    continue  # deleted, or aged out
                parts.append((msg.data or b"").decode(errors="replace"))
                parts.append(repr(msg.headers))
        return "\n".join(parts)
    finally:
        await nc.close()


async def _redis_values(redis_url: str) -> str:
    client = redis_async.Redis.from_url(redis_url)
    parts: list[str] = []
    try:
        async for key in client.scan_iter(count=1000):
            kind = (await client.type(key)).decode()
            if kind == "string":
                value: Any = await client.get(key)
            elif kind == "hash":
                value = await client.hgetall(key)
            elif kind == "list":
                value = await client.lrange(key, 0, -1)
            elif kind == "set":
                value = await client.smembers(key)
            elif kind == "zset":
                value = await client.zrange(key, 0, -1)
            elif kind == "stream":
                value = await client.xrange(key)
            else:
                value = kind
            parts.append(f"{key!r}={value!r}")
    finally:
        await client.aclose()
    return "\n".join(parts)


def _place(where: str, text: str, index: int) -> str:
    """Where in a store ``index`` is: for the dump, the table whose COPY block holds it."""
    if where == "pg_dump":
        start = text.rfind("\nCOPY ", 0, index)
        return f"pg_dump {text[start + 6 : text.find(' ', start + 6)]}" if start >= 0 else "pg_dump (schema)"
    return where


def _files(root: Path) -> str:
    return "\n".join(p.read_bytes().decode(errors="replace") for p in sorted(root.rglob("*")) if p.is_file())


async def test_no_personal_data_in_plain_text_in_the_database_streams_cache_or_logs(mesh: Any) -> None:
    assert shutil.which(str(postgres_bin_dir() / "pg_dump")), "pg_dump of the embedded Postgres is needed"
    skus = await make_catalog(mesh, n=1, on_hand=50)
    who = Personal()
    client = Rest(mesh.gateway_url)
    try:
        await client.guest()
        declined = await _checkout(client, skus, who, "tok_chargeDeclined", bad_input=True)
        assert declined.get("error") == "PAYMENT_DECLINED", declined
        waiting = await _checkout(client, skus, who, "tok_threeDSecure")
        assert waiting["orderStatus"] == "ORDER_STATUS_PENDING_PAYMENT", waiting
        paid = await _checkout(client, skus, who, "tok_visa")
        assert paid["orderStatus"] == "ORDER_STATUS_CONFIRMED", paid
        order_id = paid["orderId"]

        order = (await client.call("GET", f"/v1/orders/{order_id}"))["order"]
        assert order["email"] == who.email and order["notes"] == who.notes
        assert (
            order["shippingAddress"]["phone"] == who.phone and order["billingAddress"]["line1"] == who.billing["line1"]
        )
        await client.call("GET", "/v1/orders")
        await client.call("GET", f"/v1/orders/{order_id}/timeline")
        await client.call("POST", f"/v1/orders/{order_id}:cancel", {"reason": "changed my mind"})

        async def refunded() -> bool:
            status = (await client.call("GET", f"/v1/orders/{order_id}"))["order"].get("paymentStatus")
            return status == "PAYMENT_STATUS_REFUNDED"

        # The cancellation went through the order's outbox, JetStream and payment's consumer and back.
        await eventually(refunded, what="the cancelled order's refund")
    finally:
        await client.close()

    traces = Path(mesh.env["KASSA_TRACE_DIR"])

    async def traced() -> bool:
        return await asyncio.to_thread(lambda: traces.is_dir() and order_id in _files(traces))

    # Spans are written in batches: wait until this flow's are on disk, so the scan covers them too.
    await eventually(traced, within=60, what="the order's spans in the trace files")
    dump = await asyncio.to_thread(_pg_dump, mesh.env["KASSA_DATABASE_URL"])
    stores = {
        "trace files": _files(traces),
        "pg_dump": dump,
        "jetstream": await _jetstream_messages(mesh.env["KASSA_NATS_URL"]),
        "redis": await _redis_values(mesh.env["KASSA_REDIS_URL"]),
        "sandbox ledger": _files(Path(mesh.env["KASSA_SANDBOX_DB"]).parent) if "KASSA_SANDBOX_DB" in mesh.env else "",
    }
    logs = {str(p.relative_to(mesh.log_dir)): p.read_bytes().decode(errors="replace") for p in mesh.log_dir.rglob("*")
            if p.is_file()}  # fmt: skip
    assert logs, f"no process logs under {mesh.log_dir}"
    stores.update({f"log {name}": text for name, text in logs.items()})

    found: dict[str, list[str]] = {}
    for where, text in stores.items():
        for needle in who.needles():
            if needle in text:
                found.setdefault(_place(where, text, text.find(needle)), []).append(needle)
    assert not found, f"personal data in plain text: {found}"

    # Controls: the scan saw this flow, and its personal data is stored, encrypted.
    assert order_id in dump and order_id in stores["jetstream"]
    assert dump.count("pii1:") >= 4


# What no log line may hold (issue 13 §3): credentials of every kind the mesh handles.
_CREDENTIALS = {
    "JWT": re.compile(r"\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*"),
    "bearer credential": re.compile(r"(?i)\bbearer\s+(?!\*|\[|<)[^\s\"',;]+"),
    "payment token": re.compile(r"\b(?:tok|pm|whsec)_[A-Za-z0-9]+"),
    "webhook signature": re.compile(r"\bv1=[0-9a-f]{16,}"),
    "unmasked email": re.compile(r"(?<![\w.+*-])[\w.+-]+@example\.com"),
}
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")
_NOT_JSON_BY_DESIGN = ("=== kassa mesh: ", "kassa fault: crash at ")


def _log_lines(log_dir: Path) -> list[tuple[str, str]]:
    return [
        (path.name, line)
        for path in sorted(log_dir.rglob("*"))
        if path.is_file()
        for line in path.read_bytes().decode(errors="replace").splitlines()
        if line.strip()
    ]


async def test_no_personal_data_or_credential_in_any_log_line_and_each_carries_its_trace(mesh: Any) -> None:
    skus = await make_catalog(mesh, n=1, on_hand=20)
    who = Personal()
    client = Rest(mesh.gateway_url)
    admin = Rest(mesh.gateway_url, mesh.admin_token)
    try:
        await client.guest()
        declined = await _checkout(client, skus, who, "tok_chargeDeclined", bad_input=True)
        assert declined.get("error") == "PAYMENT_DECLINED", declined
        paid = await _checkout(client, skus, who, "tok_visa")
        assert paid["orderStatus"] == "ORDER_STATUS_CONFIRMED", paid
        order_id = paid["orderId"]
        await admin.call(
            "POST", f"/v1/admin/orders/{order_id}:refund", {"reason": "scan"}, {"Idempotency-Key": order_id}
        )

        async def refunded() -> bool:
            status = (await client.call("GET", f"/v1/orders/{order_id}"))["order"].get("paymentStatus")
            return status == "PAYMENT_STATUS_REFUNDED"

        await eventually(refunded, what="the refund through payment's events")
        customer_token = client.token or ""
    finally:
        await client.close()
        await admin.close()

    secrets = {
        "customer token": customer_token,
        "admin token": mesh.admin_token,
        "JWT secret": mesh.env["KASSA_JWT_SECRET"],
        "service secret": mesh.env["KASSA_SERVICE_SECRET"],
        "webhook secret": mesh.env["KASSA_WEBHOOK_SECRET"],
    }
    lines = _log_lines(mesh.log_dir)
    found: dict[str, list[str]] = {}
    entries: list[tuple[str, dict[str, Any]]] = []
    for name, line in lines:
        for what, pattern in _CREDENTIALS.items():
            if pattern.search(line):
                found.setdefault(what, []).append(f"{name}: {line[:300]}")
        for what, value in secrets.items():
            if value and value in line:
                found.setdefault(what, []).append(f"{name}: {line[:300]}")
        for needle in who.needles():
            if needle in line:
                found.setdefault("personal data", []).append(f"{name}: {line[:300]}")
        if line.startswith(_NOT_JSON_BY_DESIGN):
            continue  # devstack.mesh's line at each (re)start of a process; infra.faults' last words before a crash
        try:
            entry = json.loads(line)
        except ValueError:
            found.setdefault("a line that is not JSON", []).append(f"{name}: {line[:300]}")
            continue
        if isinstance(entry, dict):
            entries.append((name, entry))
    assert not found, {what: hits[:5] for what, hits in found.items()}

    # Control: the scan read this flow's lines (the consumers log each event they apply, naming the order).
    assert any(e.get("order_id") == order_id for _n, e in entries), "no log line names the order"
    # Every line written while serving a call or handling an event belongs to a trace.
    untraced = [e for _n, e in entries if (e.get("request_id") or e.get("order_id")) and not e.get("trace_id")]
    assert not untraced, untraced[:5]
    traced = [e for _n, e in entries if e.get("trace_id")]
    assert all(_HEX_ID.match(str(e["trace_id"])) and len(str(e.get("span_id"))) == 16 for e in traced), traced[:3]
    checkout = [e for _n, e in entries if e.get("service") == "checkout" and e.get("trace_id")]
    assert checkout, "no checkout log line carries a trace_id"
    # ... and names what it was working on.
    assert all(any(e.get(key) for key in ("session_id", "order_id", "cart_id", "payment_id")) for e in checkout), [
        e.get("msg") for e in checkout
    ][:20]
