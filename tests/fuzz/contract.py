"""The error contract every answer is held to (DESIGN.md §2 and §4.6), and the check that a refusal wrote nothing.

* gRPC: never INTERNAL, UNKNOWN, DATA_LOSS, UNIMPLEMENTED, UNAVAILABLE or DEADLINE_EXCEEDED from a healthy
  mesh; an INVALID_ARGUMENT carries a ``google.rpc.ErrorInfo`` (domain "kassa") whose ``metadata["field"]``
  names a field of the request (or "request": bytes that are no message at all).
* REST: never a 5xx; a 400 with code INVALID_ARGUMENT carries the same ErrorInfo with ``metadata.field``
  (a 413, the body refused for its size before it is read, names none; a request the HTTP server's parser
  refuses as not HTTP never reaches the gateway).
* A request refused with INVALID_ARGUMENT changed no row: :class:`Fingerprint` counts the rows of every
  table a request can create and hashes the rows the fuzzer's requests can update, before and after.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
from google.protobuf import descriptor

from infra.grpc_errors import error_info
from infra.server import REQUEST_FIELD

__all__ = ["BAD_GRPC_CODES", "Fingerprint", "Outcome", "grpc_outcome", "rest_outcome"]

BAD_GRPC_CODES = frozenset(
    {
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)
_INDEX = re.compile(r"\[\d+\]")


@dataclass(frozen=True)
class Outcome:
    """How one input was answered: ``label`` for the report ("OK", "INVALID_ARGUMENT", ...)."""

    label: str
    invalid_argument: bool
    problem: str | None = None


def _field_root(field: str) -> str:
    return _INDEX.sub("", field).split(".", 1)[0]


def grpc_outcome(err: grpc.RpcError | None, request_desc: descriptor.Descriptor) -> Outcome:
    if err is None:
        return Outcome("OK", False)
    code = err.code()
    details = err.details() or ""
    if code in BAD_GRPC_CODES:
        return Outcome(code.name, False, f"{code.name}: {details[:300]}")
    if code is not grpc.StatusCode.INVALID_ARGUMENT:
        return Outcome(code.name, False)
    info = error_info(err)  # type: ignore[arg-type]
    if info is None:
        # grpc's own refusals (a message it could not parse) carry no ErrorInfo; Kassa's always do.
        return Outcome(code.name, True, f"INVALID_ARGUMENT without an ErrorInfo detail: {details[:300]}")
    field = info.metadata.get("field", "")
    if not field:
        return Outcome(code.name, True, f"INVALID_ARGUMENT ({info.reason}) names no field: {details[:300]}")
    if _field_root(field) not in request_desc.fields_by_name and field != REQUEST_FIELD:
        return Outcome(code.name, True, f"INVALID_ARGUMENT names {field!r}, not a field of {request_desc.name}")
    return Outcome(code.name, True)


# uvicorn's answer to bytes that are not HTTP (a control character in a header value): the request never
# reached the gateway, and the server's HTTP parser can't answer in JSON.
_HTTP_PARSER_REFUSAL = "Invalid HTTP request received."


def rest_outcome(status: int, body: Any) -> Outcome:
    if status == 400 and body == _HTTP_PARSER_REFUSAL:
        return Outcome("HTTP 400 (not HTTP)", False)
    if status >= 500:
        return Outcome(f"HTTP {status}", False, f"HTTP {status}: {str(body)[:300]}")
    if status < 400:
        return Outcome("OK", False)
    if not isinstance(body, dict) or not isinstance(body.get("code"), int):
        return Outcome(f"HTTP {status}", False, f"HTTP {status} without a google.rpc.Status body: {str(body)[:300]}")
    infos = [d for d in body.get("details", []) if str(d.get("@type", "")).endswith("google.rpc.ErrorInfo")]
    label = f"HTTP {status} {infos[0].get('reason', '') if infos else ''}".rstrip()
    if body["code"] != grpc.StatusCode.INVALID_ARGUMENT.value[0]:
        return Outcome(label, False)
    if status == 413:
        return Outcome(label, True)
    if not infos or infos[0].get("domain") != "kassa":
        return Outcome(label, True, f"INVALID_ARGUMENT without a kassa ErrorInfo: {str(body)[:300]}")
    if not (infos[0].get("metadata") or {}).get("field"):
        return Outcome(label, True, f"INVALID_ARGUMENT names no field: {str(body)[:300]}")
    return Outcome(label, True)


# Tables a request can add rows to. Outbox, inbox, history and provider events are left out: background
# workers and consumers write them on their own schedule.
_COUNTED = (
    "checkout.carts", "checkout.cart_items", "checkout.checkout_sessions", "checkout.confirm_requests",
    "orders.orders", "orders.order_lines", "orders.order_discounts",
    "payment.payments", "payment.refunds",
    "pricing.products", "pricing.prices", "pricing.tax_rates", "pricing.shipping_rates",
    "promotion.promotions", "promotion.promotion_usages",
    "warehouse.warehouses", "warehouse.stock", "warehouse.reservations",
)  # fmt: skip


class Fingerprint:
    """Row counts of every table a request can create rows in, and hashes of the fuzz rows it can change.

    The hashed rows are the ones the fuzzed RPCs update in place and nothing in the background touches:
    the test's cart and its lines, its session, the fuzz catalog's products, prices and stock on hand, and
    the fuzz coupon's definition.
    """

    def __init__(self, conn: psycopg.Connection[Any], *, cart_id: str, session_id: str, skus: list[str], coupon: str):
        self._conn = conn
        counts = ", ".join(f"(SELECT count(*) FROM {t})" for t in _COUNTED)
        self._sql = f"""
            SELECT {counts},
              (SELECT md5(coalesce(string_agg(c::text, '|'), '')) FROM checkout.carts c
                 WHERE c.cart_id::text = %(cart)s),
              (SELECT md5(coalesce(string_agg(i::text, '|' ORDER BY i.sku), '')) FROM checkout.cart_items i
                 WHERE i.cart_id::text = %(cart)s),
              (SELECT md5(coalesce(string_agg(s::text, '|'), '')) FROM checkout.checkout_sessions s
                 WHERE s.session_id::text = %(session)s),
              (SELECT md5(coalesce(string_agg(p::text, '|' ORDER BY p.sku), '')) FROM pricing.products p
                 WHERE p.sku = ANY(%(skus)s)),
              (SELECT md5(coalesce(string_agg(p::text, '|' ORDER BY p.sku, p.currency_code), ''))
                 FROM pricing.prices p WHERE p.sku = ANY(%(skus)s)),
              (SELECT md5(coalesce(string_agg(s.sku || s.warehouse_id || s.on_hand, '|'
                                                  ORDER BY s.sku, s.warehouse_id), ''))
                 FROM warehouse.stock s WHERE s.sku = ANY(%(skus)s)),
              (SELECT md5(coalesce(string_agg(concat_ws(',', p.code, p.name, p.type, p.percent_off, p.amount_off_minor,
                   p.currency_code, p.usage_limit, p.usage_limit_per_customer, p.min_subtotal_minor, p.starts_at,
                   p.ends_at, p.combinable, p.active, p.conditions), '|'), ''))
                 FROM promotion.promotions p WHERE p.code = %(coupon)s)
        """
        self._names = [*_COUNTED, "cart", "cart items", "session", "products", "prices", "stock on hand", "coupon"]
        self._params = {"cart": cart_id, "session": session_id, "skus": skus, "coupon": coupon}

    def take(self) -> tuple[Any, ...]:
        with self._conn.cursor() as cur:
            cur.execute(self._sql, self._params)  # type: ignore[arg-type]
            row = cur.fetchone()
        assert row is not None
        return tuple(row)

    def diff(self, before: tuple[Any, ...], after: tuple[Any, ...]) -> list[str]:
        return [f"{n}: {b} -> {a}" for n, b, a in zip(self._names, before, after, strict=True) if a != b]
