"""SQL implementations of the biz repositories, bound to one open transaction (a connection), and the unit of
work that opens it: SqlTx holds the repositories of one transaction and its outbox, SqlUnitOfWork is the only
place a transaction begins.

Every state change is a conditional ``UPDATE … WHERE <expected state> … RETURNING`` or an
``INSERT … ON CONFLICT``: concurrent requests and replicas serialize on the row, never on a read
followed by a write.

Personal data is encrypted here on its way in and decrypted on its way out (infra.pii), so biz sees plain
values and the tables only tokens: a session's email, notes and addresses, and the copies of them its saga
state keeps (the CreateOrder draft, the AuthorizePayment request's email).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from psycopg import errors as pg_errors
from sqlalchemy.dialects.postgresql import ARRAY, UUID, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.selectable import CTE

from checkout.biz.ports import SessionEnd, SessionPayment
from checkout.data.tables import (
    audit_log,
    cart_items,
    carts,
    checkout_sessions,
    confirm_requests,
    failed_compensations,
    outbox,
)
from checkout.model.cart import Cart, CartItem, CartStatus
from checkout.model.catalog import Address, PaymentStatus
from checkout.model.compensation import (
    BACKOFF_SCHEDULE_SECONDS,
    CompensationFilter,
    CompensationStatus,
    FailedCompensation,
    NewCompensation,
    Operation,
)
from checkout.model.funnel import Funnel
from checkout.model.session import (
    ConfirmRecord,
    ConfirmResult,
    Preview,
    SagaState,
    SagaStep,
    Session,
    SessionLine,
    SessionStatus,
)
from infra import audit
from infra.outbox import OutboxTx
from infra.outbox_cte import OutboxCte, StatementUnitOfWork, returned_a_row
from infra.pii import PiiCipher
from kernel.errors import AlreadyExists, Reason

__all__ = [
    "SqlCartRepo",
    "SqlCompensationRepo",
    "SqlConfirmRecordRepo",
    "SqlFunnelRepo",
    "SqlSessionRepo",
    "SqlTx",
    "SqlUnitOfWork",
]

_NOW = sa.func.now()
_IDEMPOTENCY_INDEX = "checkout_sessions_idempotency_key_uq"

# The hot statements, built once (building a statement per call costs more CPU than running it).
_GET_CART = sa.select(carts).where(carts.c.cart_id == sa.bindparam("cart_id"))
_GET_ITEMS = (
    sa.select(cart_items)
    .where(cart_items.c.cart_id == sa.bindparam("cart_id"))
    .order_by(cart_items.c.added_at, cart_items.c.sku)
)
# A cart's columns with its lines' (one row per line; read by _cart and _item).
_CART_WITH_ITEM_COLUMNS = (
    carts,
    cart_items.c.sku.label("item_sku"),
    cart_items.c.name.label("item_name"),
    cart_items.c.quantity.label("item_quantity"),
    cart_items.c.unit_price_minor.label("item_unit_price_minor"),
)
# The cart and its lines in one statement (one snapshot): a cart without lines comes back as one row of NULLs.
_GET_CART_WITH_ITEMS = (
    sa.select(*_CART_WITH_ITEM_COLUMNS)
    .select_from(carts.outerjoin(cart_items, cart_items.c.cart_id == carts.c.cart_id))
    .where(carts.c.cart_id == sa.bindparam("cart_id"))
    .order_by(cart_items.c.added_at, cart_items.c.sku)
)
_INSERT_CART = (
    carts.insert()
    .values(cart_id=sa.bindparam("b_cart_id"), customer_id=sa.bindparam("b_customer_id"),
            currency_code=sa.bindparam("b_currency_code"), status=sa.bindparam("b_status"))
    .returning(*carts.c)
)  # fmt: skip
_LOCK_ACTIVE = (
    carts.update()
    .where(carts.c.cart_id == sa.bindparam("b_cart_id"), carts.c.status == CartStatus.ACTIVE.value)
    .values(version=carts.c.version + 1, updated_at=_NOW)
    .returning(*carts.c)
)
_new_item = insert(cart_items).values(
    cart_id=sa.bindparam("b_cart_id"),
    sku=sa.bindparam("b_sku"),
    name=sa.bindparam("b_name"),
    quantity=sa.bindparam("b_quantity"),
    unit_price_minor=sa.bindparam("b_unit_price_minor"),
    # The time of the insert, not of the transaction's start: under the cart's row lock, a new line
    # sorts after every line already there, so a caller can append it without reading the cart again.
    added_at=sa.func.clock_timestamp(),
)
_UPSERT_ITEM = _new_item.on_conflict_do_update(
    index_elements=[cart_items.c.cart_id, cart_items.c.sku],
    set_={
        "name": _new_item.excluded.name,
        "quantity": _new_item.excluded.quantity,
        "unit_price_minor": _new_item.excluded.unit_price_minor,
    },
)


def _bump_then_write_line() -> tuple[CTE, CTE]:
    """Two CTEs: ``bumped`` bumps an ACTIVE cart still at ``b_version`` (returning its row as written), ``written``
    writes the sku's line (in place, or after every line) only if it did."""
    bumped = (
        carts.update()
        .where(
            carts.c.cart_id == sa.bindparam("b_cart_id"),
            carts.c.status == CartStatus.ACTIVE.value,
            carts.c.version == sa.bindparam("b_version"),
        )
        .values(version=carts.c.version + 1, updated_at=_NOW)
        .returning(*carts.c)
        .cte("bumped")
    )
    line = insert(cart_items).from_select(
        ["cart_id", "sku", "name", "quantity", "unit_price_minor", "added_at"],
        sa.select(
            bumped.c.cart_id,
            sa.bindparam("b_sku", type_=sa.Text),
            sa.bindparam("b_name", type_=sa.Text),
            sa.bindparam("b_quantity", type_=sa.BigInteger),
            sa.bindparam("b_unit_price_minor", type_=sa.BigInteger),
            sa.func.clock_timestamp(),
        ),
    )
    written = (
        line.on_conflict_do_update(
            index_elements=[cart_items.c.cart_id, cart_items.c.sku],
            set_={
                "name": line.excluded.name,
                "quantity": line.excluded.quantity,
                "unit_price_minor": line.excluded.unit_price_minor,
            },
        )
        .returning(cart_items.c.sku)
        .cte("written")
    )
    return bumped, written


def _write_line_at_version() -> sa.Select[Any]:
    """One statement: bump an ACTIVE cart still at ``b_version`` and write the sku's line (in place, or after every
    line) only if it did; the cart head as written, no row when the cart moved on meanwhile."""
    bumped, written = _bump_then_write_line()
    return sa.select(bumped).add_cte(written)


def _write_line_or_read() -> sa.Select[Any]:
    """One statement: the line written as :func:`_write_line_at_version` writes it, and the cart with its lines as
    the statement's snapshot shows them, one row per line (a cart without lines: one row of NULLs), with the
    ``new_*`` columns set only when the write applied: the write's answer, or else the read a caller whose version
    was stale needs next."""
    bumped, written = _bump_then_write_line()
    return (
        sa.select(
            *_CART_WITH_ITEM_COLUMNS, bumped.c.version.label("new_version"), bumped.c.updated_at.label("new_updated_at")
        )
        .select_from(carts.outerjoin(cart_items, cart_items.c.cart_id == carts.c.cart_id).outerjoin(bumped, sa.true()))
        .where(carts.c.cart_id == sa.bindparam("b_cart_id"))
        .order_by(cart_items.c.added_at, cart_items.c.sku)
        .add_cte(written)
    )


_WRITE_LINE_AT_VERSION = _write_line_at_version()
_WRITE_LINE_OR_READ = _write_line_or_read()


def _line_at(cart_id: str, item: CartItem, version: int) -> dict[str, object]:
    """The parameters of a statement that writes ``item`` on the cart only at ``version``."""
    return {
        "b_cart_id": cart_id,
        "b_version": version,
        "b_sku": item.sku,
        "b_name": item.name,
        "b_quantity": item.quantity,
        "b_unit_price_minor": item.unit_price_minor,
    }


def _cart(row: sa.Row[Any], items: list[CartItem]) -> Cart:
    return Cart(
        cart_id=row.cart_id,
        customer_id=row.customer_id,
        currency_code=row.currency_code,
        status=CartStatus(row.status),
        version=row.version,
        items=items,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _item(row: sa.Row[Any]) -> CartItem:
    return CartItem(row.item_sku, row.item_name, row.item_quantity, row.item_unit_price_minor)


def _in(seconds: float) -> sa.ColumnElement[Any]:
    """now() + the given number of seconds (a number we computed, never user input)."""
    return _NOW + sa.literal_column(f"interval '{float(seconds):.3f} seconds'")


def _lease(
    table: sa.Table,
    key: sa.Column[Any],
    due: Sequence[sa.ColumnElement[bool]],
    *,
    oldest_first: sa.ColumnElement[Any],
    limit: int,
    values: dict[str, Any],
    recheck: Sequence[sa.ColumnElement[bool]] = (),
) -> sa.Update:
    """Update the ``limit`` oldest due rows that no other caller holds (FOR UPDATE SKIP LOCKED), returning
    them: how every sweep here hands rows to one replica at a time.

    The rows are picked in a MATERIALIZED CTE, evaluated once. As ``key IN (SELECT … LIMIT n FOR UPDATE SKIP
    LOCKED)`` Postgres may run the subquery again for each row it scans, and each run takes ``limit`` more
    rows: a claim of one session leased every stuck session it came across, and the caller, working on the one
    it asked for, left the rest leased to nobody until their lease ran out.
    """
    picked = (
        (sa.select(key).where(*due).order_by(oldest_first).limit(limit).with_for_update(skip_locked=True))
        .cte(f"picked_{table.name}")
        .prefix_with("MATERIALIZED")
    )
    return table.update().where(key == picked.c[key.name], *recheck).values(**values).returning(*table.c)


class SqlCartRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._c = conn

    async def create(self, cart: Cart) -> Cart:
        params = {"b_cart_id": cart.cart_id, "b_customer_id": cart.customer_id,
                  "b_currency_code": cart.currency_code, "b_status": cart.status.value}  # fmt: skip
        return _cart((await self._c.execute(_INSERT_CART, params)).one(), [])

    async def get(self, cart_id: str) -> Cart | None:
        rows = (await self._c.execute(_GET_CART_WITH_ITEMS, {"cart_id": cart_id})).all()
        if not rows:
            return None
        return _cart(rows[0], [_item(r) for r in rows if r.item_sku is not None])

    async def get_head(self, cart_id: str) -> Cart | None:
        row = (await self._c.execute(_GET_CART, {"cart_id": cart_id})).first()
        return None if row is None else _cart(row, [])

    async def lock_active(self, cart_id: str) -> Cart | None:
        row = (await self._c.execute(_LOCK_ACTIVE, {"b_cart_id": cart_id})).first()
        return None if row is None else await self._with_items(row)

    async def _with_items(self, row: sa.Row[Any]) -> Cart:
        items = (await self._c.execute(_GET_ITEMS, {"cart_id": row.cart_id})).all()
        return _cart(row, [CartItem(i.sku, i.name, i.quantity, i.unit_price_minor) for i in items])

    async def put_item_at(self, cart_id: str, item: CartItem, *, version: int) -> Cart | None:
        row = (await self._c.execute(_WRITE_LINE_AT_VERSION, _line_at(cart_id, item, version))).first()
        return None if row is None else _cart(row, [])

    async def put_item_or_read(self, cart_id: str, item: CartItem, *, version: int) -> tuple[bool, Cart | None]:
        rows = (await self._c.execute(_WRITE_LINE_OR_READ, _line_at(cart_id, item, version))).all()
        if not rows:
            return False, None
        cart = _cart(rows[0], [_item(r) for r in rows if r.item_sku is not None])
        if rows[0].new_version is None:
            return False, cart
        cart.version, cart.updated_at = rows[0].new_version, rows[0].new_updated_at
        cart.put(item)
        return True, cart

    async def upsert_item(self, cart_id: str, item: CartItem) -> None:
        await self._c.execute(
            _UPSERT_ITEM,
            {"b_cart_id": cart_id, "b_sku": item.sku, "b_name": item.name, "b_quantity": item.quantity,
             "b_unit_price_minor": item.unit_price_minor},
        )  # fmt: skip

    async def delete_item(self, cart_id: str, sku: str) -> bool:
        result = await self._c.execute(
            cart_items.delete().where(cart_items.c.cart_id == cart_id, cart_items.c.sku == sku)
        )
        return bool(result.rowcount)

    async def set_prices(self, cart_id: str, prices: dict[str, int], *, version: int) -> int | None:
        new_version = (
            await self._c.execute(
                carts.update()
                .where(carts.c.cart_id == cart_id, carts.c.version == version)
                .values(version=carts.c.version + 1, updated_at=_NOW)
                .returning(carts.c.version)
            )
        ).scalar()
        if new_version is None:
            return None
        await self._c.execute(
            cart_items.update()
            .where(cart_items.c.cart_id == cart_id, cart_items.c.sku == sa.bindparam("b_sku"))
            .values(unit_price_minor=sa.bindparam("b_price")),
            [{"b_sku": sku, "b_price": price} for sku, price in prices.items()],
        )
        return int(new_version)

    async def transition(
        self, cart_id: str, from_statuses: Collection[CartStatus], to: CartStatus, *, version: int | None = None
    ) -> bool:
        stmt = carts.update().where(carts.c.cart_id == cart_id, carts.c.status.in_([s.value for s in from_statuses]))
        if version is not None:
            stmt = stmt.where(carts.c.version == version)
        result = await self._c.execute(
            stmt.values(status=to.value, version=carts.c.version + 1, updated_at=_NOW).returning(carts.c.cart_id)
        )
        return result.first() is not None


_SEALED_TEXT = ("email", "notes")
_SEALED_ADDRESSES = ("shipping_address", "billing_address")


def _sealed_changes(changes: dict[str, Any], cipher: PiiCipher) -> dict[str, Any]:
    """A session update with its personal fields encrypted (addresses arrive as dicts, or None to clear)."""
    sealed = dict(changes)
    for name in _SEALED_TEXT:
        if name in sealed:
            sealed[name] = cipher.encrypt(sealed[name])
    for name in _SEALED_ADDRESSES:
        if name in sealed:
            sealed[name] = cipher.encrypt_json(sealed[name])
    return sealed


def _saga_json(state: SagaState, cipher: PiiCipher) -> dict[str, Any]:
    """The saga state as stored: the order draft's and the authorization's personal fields encrypted."""
    doc = state.to_dict()
    if doc.get("order_draft"):
        draft = doc["order_draft"] = dict(doc["order_draft"])
        for name in _SEALED_TEXT:
            draft[name] = cipher.encrypt(draft[name])
        for name in _SEALED_ADDRESSES:
            draft[name] = cipher.encrypt_json(draft[name])
    if doc.get("authorize"):
        authorize = doc["authorize"] = dict(doc["authorize"])
        authorize["customer_email"] = cipher.encrypt(authorize["customer_email"])
    return doc


def _saga_state(doc: dict[str, Any] | None, cipher: PiiCipher) -> SagaState:
    if doc and doc.get("order_draft"):
        doc = {**doc, "order_draft": dict(doc["order_draft"])}
        draft = doc["order_draft"]
        for name in _SEALED_TEXT:
            draft[name] = cipher.decrypt(draft[name])
        for name in _SEALED_ADDRESSES:
            draft[name] = cipher.decrypt_json(draft[name])
    if doc and doc.get("authorize"):
        doc = {**doc, "authorize": dict(doc["authorize"])}
        doc["authorize"]["customer_email"] = cipher.decrypt(doc["authorize"]["customer_email"])
    return SagaState.from_dict(doc)


def _session(row: sa.Row[Any], cipher: PiiCipher) -> Session:
    return Session(
        session_id=row.session_id,
        cart_id=row.cart_id,
        customer_id=row.customer_id,
        currency_code=row.currency_code,
        lines=[SessionLine.from_dict(ln) for ln in row.lines],
        expires_at=row.expires_at,
        status=SessionStatus(row.status),
        email=cipher.decrypt(row.email),
        shipping_address=Address.from_dict(cipher.decrypt_json(row.shipping_address)),
        billing_address=Address.from_dict(cipher.decrypt_json(row.billing_address)),
        shipping_method=row.shipping_method,
        payment_method=row.payment_method,
        promotion_codes=list(row.promotion_codes or []),
        notes=cipher.decrypt(row.notes),
        preview=Preview.from_dict(row.preview) if row.preview else None,
        idempotency_key=row.idempotency_key,
        confirm_fingerprint=row.confirm_fingerprint,
        saga_step=SagaStep(row.saga_step) if row.saga_step else None,
        saga_state=_saga_state(row.saga_state, cipher),
        result=ConfirmResult.from_dict(row.result) if row.result else None,
        confirm_started_at=row.confirm_started_at,
        saga_attempt=row.saga_attempt,
        order_id=row.order_id,
        last_error=row.last_error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


_S = checkout_sessions
_R = confirm_requests
_LIVE = (SessionStatus.OPEN.value, SessionStatus.CONFIRMING.value)
_GET_SESSION = sa.select(_S).where(_S.c.session_id == sa.bindparam("session_id"))
# Two scalars of the saga document, extracted by Postgres: none of its personal fields is read or decrypted.
_GET_PAYMENT = sa.select(
    _S.c.status,
    _S.c.saga_step,
    _S.c.saga_state["payment_id"].astext.label("payment_id"),
    _S.c.saga_state["payment_status"].astext.label("payment_status"),
).where(_S.c.session_id == sa.bindparam("session_id"))
_NEXT_ATTEMPT = _S.c.saga_attempt + 1


# An update of a CONFIRMING session's saga, applied only while attempt ``b_attempt`` still owns it (``_fence``).
_FENCED = _S.update().where(
    _S.c.session_id == sa.bindparam("b_session_id"),
    _S.c.status == SessionStatus.CONFIRMING.value,
    _S.c.saga_attempt == sa.bindparam("b_attempt"),
)


def _fence(session_id: str, attempt: int) -> dict[str, Any]:
    """The parameters of ``_FENCED``."""
    return {"b_session_id": session_id, "b_attempt": attempt}


_SAVE_PROGRESS = _FENCED.values(
    saga_step=sa.bindparam("b_saga_step"), saga_state=sa.bindparam("b_saga_state"), confirm_started_at=_NOW,
    updated_at=_NOW,
)  # fmt: skip
_RENEW = _FENCED.values(confirm_started_at=_NOW)


def _create_holding_cart() -> sa.Select[Any]:
    """The cart's move to CHECKOUT (from one of ``b_from_statuses``, at ``b_version``) and the session's insert in one
    statement: the insert reads the move's RETURNING, so no session is written for a cart that did not move. One row:
    ``did_move``, and the session inserted (NULLs when none was)."""
    moved = (
        carts.update()
        .where(
            carts.c.cart_id == sa.bindparam("b_cart_id", type_=carts.c.cart_id.type),
            carts.c.status == sa.any_(sa.cast(sa.bindparam("b_from_statuses"), ARRAY(sa.Text))),
            carts.c.version == sa.bindparam("b_version", type_=carts.c.version.type),
        )
        .values(status=CartStatus.CHECKOUT.value, version=carts.c.version + 1, updated_at=_NOW)
        .returning(carts.c.cart_id)
        .cte("moved")
    )
    created = (
        insert(_S)
        .from_select(
            ["session_id", "cart_id", "customer_id", "status", "currency_code", "lines", "expires_at"],
            sa.select(
                sa.bindparam("b_session_id", type_=_S.c.session_id.type),
                moved.c.cart_id,
                sa.bindparam("b_customer_id", type_=sa.Text),
                sa.bindparam("b_status", type_=sa.Text),
                sa.bindparam("b_currency_code", type_=_S.c.currency_code.type),
                sa.bindparam("b_lines", type_=_S.c.lines.type),
                sa.bindparam("b_expires_at", type_=_S.c.expires_at.type),
            ),
        )
        .on_conflict_do_nothing()
        .returning(*_S.c)
        .cte("created")
    )
    did_move = sa.exists(sa.select(moved.c.cart_id)).label("did_move")
    return sa.select(did_move, created).select_from(
        sa.select(sa.literal(1).label("one")).subquery("one").outerjoin(created, sa.true())
    )


def _begin_confirm(*, unchanged: bool) -> sa.Update:
    """An OPEN, unexpired session (still at ``b_unchanged_since``, if ``unchanged``) to CONFIRMING under a new saga
    attempt, returning it and its cart's status; a key already answered for this session (a failure kept, then the
    session reopened) starts nothing."""
    key = sa.bindparam("b_idempotency_key", type_=sa.Text)
    answered = sa.exists().where(
        _R.c.customer_id == _S.c.customer_id, _R.c.idempotency_key == key, _R.c.session_id == _S.c.session_id
    )
    return (
        _S.update()
        .where(
            _S.c.session_id == sa.bindparam("b_session_id", type_=_S.c.session_id.type),
            _S.c.status == SessionStatus.OPEN.value,
            _S.c.expires_at > _NOW,
            ~answered,
            *([_S.c.updated_at == sa.bindparam("b_unchanged_since", type_=_S.c.updated_at.type)] if unchanged else []),
        )
        .values(
            status=SessionStatus.CONFIRMING.value,
            idempotency_key=key,
            confirm_fingerprint=sa.bindparam("b_fingerprint", type_=_S.c.confirm_fingerprint.type),
            confirm_started_at=_NOW,
            saga_attempt=_NEXT_ATTEMPT,
            saga_step=SagaStep.VALIDATED.value,
            saga_state={},
            last_error="",
            updated_at=_NOW,
        )
        .returning(
            *_S.c,
            sa.select(carts.c.status).where(carts.c.cart_id == _S.c.cart_id).scalar_subquery().label("cart_status"),
        )
    )


@dataclass(frozen=True)
class _EndShape:
    """What a saga's end writes besides the session, as far as its statement's form depends on it."""

    kept: bool
    compensations: int
    if_cart_moved: int
    events: int

    @classmethod
    def of(cls, end: SessionEnd | None) -> _EndShape | None:
        if end is None:
            return None
        return cls(end.kept is not None, len(end.compensations), len(end.if_cart_moved), len(end.events))


class _FinishStatement:
    """The statement of :meth:`SqlSessionRepo.finish` for one :class:`_EndShape`, built once (:func:`_finish_statement`)
    with bind parameters; :meth:`end_params` binds a :class:`SessionEnd` of that shape."""

    def __init__(self, shape: _EndShape | None, *, with_result: bool) -> None:
        finished = _FENCED.values(
            status=sa.bindparam("b_status"),
            saga_step=sa.bindparam("b_saga_step"),
            saga_state=sa.bindparam("b_saga_state"),
            order_id=sa.bindparam("b_order_id"),
            # SQL NULL, not JSON null, when there is no answer.
            result=sa.bindparam("b_result") if with_result else None,
            confirm_fingerprint=None,
            last_error=sa.bindparam("b_last_error"),
            updated_at=_NOW,
        ).returning(_S.c.session_id)
        self._events: list[OutboxCte] = []
        if shape is None:
            self.statement: sa.Executable = finished
            return
        ended_cte = finished.cte("finished")
        ended = sa.exists(sa.select(ended_cte.c.session_id))
        writes: list[CTE] = []
        if shape.kept:
            kept = insert(_R).from_select(
                ["customer_id", "idempotency_key", "session_id", "fingerprint", "response"],
                sa.select(
                    sa.bindparam("k_customer_id", type_=sa.Text),
                    sa.bindparam("k_idempotency_key", type_=sa.Text),
                    ended_cte.c.session_id,
                    sa.bindparam("k_fingerprint", type_=_R.c.fingerprint.type),
                    sa.bindparam("k_response", type_=_R.c.response.type),
                ),
            )
            writes.append(
                kept.on_conflict_do_update(
                    index_elements=[_R.c.customer_id, _R.c.idempotency_key],
                    set_={"response": kept.excluded.response, "fingerprint": kept.excluded.fingerprint,
                          "created_at": _NOW},
                )
                .returning(_R.c.idempotency_key)
                .cte("kept")
            )  # fmt: skip
        for n in range(shape.compensations):
            writes.append(
                _F.insert()
                .from_select(
                    ["id", "session_id", "operation", "payload", "last_error", "next_attempt_at"],
                    sa.select(
                        sa.bindparam(f"c{n}_id", type_=_F.c.id.type),
                        sa.bindparam(f"c{n}_session_id", type_=_F.c.session_id.type),
                        sa.bindparam(f"c{n}_operation", type_=_F.c.operation.type),
                        sa.bindparam(f"c{n}_payload", type_=_F.c.payload.type),
                        sa.bindparam(f"c{n}_last_error", type_=_F.c.last_error.type),
                        _in(BACKOFF_SCHEDULE_SECONDS[0]),
                    ).where(ended),
                )
                .returning(_F.c.id)
                .cte(f"compensation_{n}")
            )
        moved = (
            carts.update()
            .where(
                carts.c.cart_id == sa.bindparam("m_cart_id", type_=carts.c.cart_id.type),
                carts.c.status == CartStatus.CHECKOUT.value,
                ended,
            )
            .values(status=sa.bindparam("m_cart_to", type_=sa.Text), version=carts.c.version + 1, updated_at=_NOW)
            .returning(carts.c.cart_id)
            .cte("moved")
        )
        whens = [moved] * shape.if_cart_moved + [ended_cte] * shape.events
        for n, when in enumerate(whens):
            event = OutboxCte(outbox, where=returned_a_row(when), prefix=f"event_{n}", name=f"event_{n}")
            self._events.append(event)
            writes.append(event.cte)
        did_move = sa.exists(sa.select(moved.c.cart_id))
        self.statement = sa.select(ended.label("ended"), did_move.label("moved")).add_cte(*writes)

    def end_params(self, end: SessionEnd) -> dict[str, Any]:
        params: dict[str, Any] = {"m_cart_id": end.cart_id, "m_cart_to": end.cart_to.value}
        if (answer := end.kept) is not None:
            params |= {"k_customer_id": answer.customer_id, "k_idempotency_key": answer.idempotency_key,
                       "k_fingerprint": answer.record.fingerprint, "k_response": answer.record.to_dict()}  # fmt: skip
        for n, item in enumerate(end.compensations):
            params |= {f"c{n}_id": str(uuid.uuid4()), f"c{n}_session_id": item.session_id,
                       f"c{n}_operation": item.operation.value, f"c{n}_payload": item.payload,
                       f"c{n}_last_error": item.error}  # fmt: skip
        for outbox_row, event in zip(self._events, [*end.if_cart_moved, *end.events], strict=True):
            params |= outbox_row.params(
                service="checkout", event_type=event.event_type, aggregate_id=event.aggregate_id, data=event.data
            )
        return params


@functools.lru_cache(maxsize=64)
def _finish_statement(shape: _EndShape | None, *, with_result: bool) -> _FinishStatement:
    return _FinishStatement(shape, with_result=with_result)


_CREATE_HOLDING_CART = _create_holding_cart()
_BEGIN_CONFIRM = {unchanged: _begin_confirm(unchanged=unchanged) for unchanged in (False, True)}


class SqlSessionRepo:
    def __init__(
        self, conn: AsyncConnection, cipher: PiiCipher, count_events: Callable[[int], None] = lambda _n: None
    ) -> None:
        self._c = conn
        self._cipher = cipher
        self._count_events = count_events  # events written as CTEs of a statement here (the Tx's outbox count)

    async def create_holding_cart(
        self, session: Session, from_statuses: Collection[CartStatus], *, version: int
    ) -> tuple[bool, Session | None]:
        # The cart's move and the session's insert in one statement (_CREATE_HOLDING_CART).
        params = {
            "b_cart_id": session.cart_id,
            "b_from_statuses": [s.value for s in from_statuses],
            "b_version": version,
            "b_session_id": session.session_id,
            "b_customer_id": session.customer_id,
            "b_status": session.status.value,
            "b_currency_code": session.currency_code,
            "b_lines": [ln.to_dict() for ln in session.lines],
            "b_expires_at": session.expires_at,
        }
        row = (await self._c.execute(_CREATE_HOLDING_CART, params)).one()
        if row.session_id is None:
            return bool(row.did_move), None
        return bool(row.did_move), _session(row, self._cipher)

    async def get(self, session_id: str) -> Session | None:
        row = (await self._c.execute(_GET_SESSION, {"session_id": session_id})).first()
        return None if row is None else _session(row, self._cipher)

    async def get_payment(self, session_id: str) -> SessionPayment | None:
        row = (await self._c.execute(_GET_PAYMENT, {"session_id": session_id})).first()
        if row is None:
            return None
        return SessionPayment(
            status=SessionStatus(row.status),
            saga_step=SagaStep(row.saga_step) if row.saga_step else None,
            payment_id=row.payment_id or "",
            payment_status=PaymentStatus(row.payment_status) if row.payment_status else None,
        )

    async def get_live_for_cart(self, cart_id: str) -> Session | None:
        row = (await self._c.execute(sa.select(_S).where(_S.c.cart_id == cart_id, _S.c.status.in_(_LIVE)))).first()
        return None if row is None else _session(row, self._cipher)

    async def update_state(
        self,
        session_id: str,
        changes: dict[str, Any],
        preview: Preview | None,
        *,
        unchanged_since: datetime | None = None,
    ) -> Session | None:
        stmt = _S.update().where(
            _S.c.session_id == session_id, _S.c.status == SessionStatus.OPEN.value, _S.c.expires_at > _NOW
        )
        if unchanged_since is not None:
            stmt = stmt.where(_S.c.updated_at == unchanged_since)
        values = _sealed_changes(changes, self._cipher)
        values["preview"] = preview.to_dict() if preview is not None else None
        row = (await self._c.execute(stmt.values(**values, updated_at=_NOW).returning(*_S.c))).first()
        return None if row is None else _session(row, self._cipher)

    async def begin_confirm_with_cart(
        self, session_id: str, idempotency_key: str, fingerprint: str, *, unchanged_since: datetime | None = None
    ) -> tuple[Session, CartStatus | None] | None:
        stmt = _BEGIN_CONFIRM[unchanged_since is not None]
        params = {"b_session_id": session_id, "b_idempotency_key": idempotency_key, "b_fingerprint": fingerprint,
                  "b_unchanged_since": unchanged_since}  # fmt: skip
        try:
            row = (await self._c.execute(stmt, params)).first()
        except sa.exc.IntegrityError as exc:
            orig = exc.orig
            if isinstance(orig, pg_errors.UniqueViolation) and orig.diag.constraint_name == _IDEMPOTENCY_INDEX:
                raise AlreadyExists(
                    "this idempotency key was already used for another checkout session",
                    reason=Reason.IDEMPOTENCY_KEY_REUSED,
                ) from None
            raise
        if row is None:
            return None
        return _session(row, self._cipher), None if row.cart_status is None else CartStatus(row.cart_status)

    async def save_progress(self, session_id: str, step: SagaStep, state: SagaState, *, attempt: int) -> bool:
        params = _fence(session_id, attempt) | {
            "b_saga_step": step.value,
            "b_saga_state": _saga_json(state, self._cipher),
        }
        result = await self._c.execute(_SAVE_PROGRESS, params)
        return result.rowcount == 1

    async def renew(self, session_id: str, *, attempt: int) -> bool:
        result = await self._c.execute(_RENEW, _fence(session_id, attempt))
        return result.rowcount == 1

    async def reopen(self, session_id: str, last_error: str, preview: Preview | None, *, attempt: int) -> bool:
        values: dict[str, Any] = {
            "status": SessionStatus.OPEN.value,
            "saga_step": None,
            "saga_state": {},
            "confirm_started_at": None,
            "confirm_fingerprint": None,
            "last_error": last_error,
            "updated_at": _NOW,
            # Totals shown from now on are the ones just computed, or none (PreviewOrder computes them afresh).
            "preview": preview.to_dict() if preview is not None else None,
        }
        result = await self._c.execute(_FENCED.values(**values), _fence(session_id, attempt))
        return result.rowcount == 1

    async def finish(
        self,
        session_id: str,
        status: SessionStatus,
        *,
        step: SagaStep,
        state: SagaState,
        order_id: str = "",
        result: ConfirmResult | None = None,
        last_error: str = "",
        attempt: int,
        end: SessionEnd | None = None,
    ) -> bool:
        """The session's fenced end and, with ``end``, everything it carries in one statement: each write reads the
        end (or the cart's move), so none applies unless the session's fenced end did."""
        stmt = _finish_statement(_EndShape.of(end), with_result=result is not None)
        params = _fence(session_id, attempt) | {
            "b_status": status.value,
            "b_saga_step": step.value,
            "b_saga_state": _saga_json(state, self._cipher),
            "b_order_id": order_id,
            "b_last_error": last_error,
        }
        if result is not None:
            params["b_result"] = result.to_dict()
        if end is None:
            return (await self._c.execute(stmt.statement, params)).first() is not None
        row = (await self._c.execute(stmt.statement, params | stmt.end_params(end))).one()
        self._count_events(len(end.events) + (len(end.if_cart_moved) if row.moved else 0) if row.ended else 0)
        return bool(row.ended)

    async def await_payment(
        self,
        session_id: str,
        *,
        state: SagaState,
        order_id: str,
        result: ConfirmResult,
        window_seconds: int,
        attempt: int,
    ) -> bool:
        row = (
            await self._c.execute(
                _FENCED.values(
                    status=SessionStatus.AWAITING_PAYMENT.value,
                    saga_step=SagaStep.AWAIT_PAYMENT.value,
                    saga_state=_saga_json(state, self._cipher),
                    order_id=order_id,
                    result=result.to_dict(),
                    confirm_fingerprint=None,
                    expires_at=_in(window_seconds),
                    updated_at=_NOW,
                ).returning(_S.c.session_id),
                _fence(session_id, attempt),
            )
        ).first()
        return row is not None

    async def claim_awaiting(self, session_id: str, step: SagaStep, state: SagaState) -> Session | None:
        row = (
            await self._c.execute(
                _S.update()
                .where(_S.c.session_id == session_id, _S.c.status == SessionStatus.AWAITING_PAYMENT.value)
                .values(
                    status=SessionStatus.CONFIRMING.value,
                    saga_step=step.value,
                    saga_state=_saga_json(state, self._cipher),
                    confirm_started_at=_NOW,
                    saga_attempt=_NEXT_ATTEMPT,
                    updated_at=_NOW,
                )
                .returning(*_S.c)
            )
        ).first()
        return None if row is None else _session(row, self._cipher)

    async def awaiting_due(self, poll_after_seconds: int, limit: int) -> list[Session]:
        awaiting = _S.c.status == SessionStatus.AWAITING_PAYMENT.value
        unheard_of_or_over = sa.or_(_S.c.updated_at < _in(-poll_after_seconds), _S.c.expires_at <= _NOW)
        rows = await self._c.execute(
            _lease(
                _S, _S.c.session_id, [awaiting, unheard_of_or_over],
                oldest_first=_S.c.updated_at, limit=limit, values={"updated_at": _NOW}, recheck=[awaiting],
            )
        )  # fmt: skip
        return [_session(r, self._cipher) for r in rows]

    async def claim_stuck(
        self, older_than_seconds: float, limit: int, *, session_id: str | None = None
    ) -> list[Session]:
        due = [_S.c.status == SessionStatus.CONFIRMING.value, _S.c.confirm_started_at < _in(-older_than_seconds)]
        if session_id is not None:
            due.append(_S.c.session_id == session_id)
        rows = await self._c.execute(
            _lease(
                _S, _S.c.session_id, due,
                oldest_first=_S.c.confirm_started_at, limit=limit,
                values={"confirm_started_at": _NOW, "saga_attempt": _NEXT_ATTEMPT}, recheck=due,
            )
        )  # fmt: skip
        return [_session(r, self._cipher) for r in rows]

    async def list_stuck(self, older_than_seconds: float, limit: int) -> list[Session]:
        rows = await self._c.execute(
            sa.select(_S)
            .where(_S.c.status == SessionStatus.CONFIRMING.value, _S.c.confirm_started_at < _in(-older_than_seconds))
            .order_by(_S.c.confirm_started_at)
            .limit(limit)
        )
        return [_session(r, self._cipher) for r in rows]

    async def expire_due(self, limit: int, *, cart_id: str | None = None) -> list[Session]:
        is_open = _S.c.status == SessionStatus.OPEN.value
        due = [is_open, _S.c.expires_at <= _NOW] + ([_S.c.cart_id == cart_id] if cart_id is not None else [])
        rows = await self._c.execute(
            _lease(
                _S, _S.c.session_id, due, oldest_first=_S.c.expires_at, limit=limit,
                values={"status": SessionStatus.EXPIRED.value, "updated_at": _NOW}, recheck=[is_open],
            )
        )  # fmt: skip
        return [_session(r, self._cipher) for r in rows]


_F = failed_compensations


def _compensation(row: sa.Row[Any]) -> FailedCompensation:
    return FailedCompensation(
        id=row.id,
        session_id=row.session_id,
        operation=Operation(row.operation),
        payload=row.payload,
        attempts=row.attempts,
        status=row.status,
        last_error=row.last_error,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class SqlCompensationRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._c = conn

    async def add(self, item: NewCompensation) -> str:
        cid = str(uuid.uuid4())
        await self._c.execute(
            _F.insert().values(
                id=cid,
                session_id=item.session_id,
                operation=item.operation.value,
                payload=item.payload,
                last_error=item.error,
                next_attempt_at=_in(BACKOFF_SCHEDULE_SECONDS[0]),
            )
        )
        return cid

    async def claim_due(self, limit: int, lease_seconds: int) -> list[FailedCompensation]:
        rows = await self._c.execute(
            _lease(
                _F, _F.c.id, [_F.c.status == "pending", _F.c.next_attempt_at <= _NOW],
                oldest_first=_F.c.next_attempt_at, limit=limit,
                values={"next_attempt_at": _in(lease_seconds), "updated_at": _NOW},
            )
        )  # fmt: skip
        return [_compensation(r) for r in rows]

    def _held(self, item: FailedCompensation) -> sa.Update:
        """An update of a pending row, applied only while this caller's lease on it (its next_attempt_at) stands."""
        return _F.update().where(
            _F.c.id == item.id, _F.c.status == "pending", _F.c.next_attempt_at == item.next_attempt_at
        )

    async def mark_done(self, item: FailedCompensation) -> bool:
        result = await self._c.execute(self._held(item).values(status="done", updated_at=_NOW))
        return result.rowcount == 1

    async def reschedule(self, item: FailedCompensation, delay_seconds: float, error: str) -> bool:
        result = await self._c.execute(
            self._held(item).values(
                attempts=_F.c.attempts + 1, next_attempt_at=_in(delay_seconds), last_error=error, updated_at=_NOW
            )
        )
        return result.rowcount == 1

    async def mark_dead(self, item: FailedCompensation, error: str) -> bool:
        result = await self._c.execute(
            self._held(item).values(status="dead", attempts=_F.c.attempts + 1, last_error=error, updated_at=_NOW)
        )
        return result.rowcount == 1

    async def list(self, where: CompensationFilter, limit: int) -> list[FailedCompensation]:
        stmt = sa.select(_F).order_by(_F.c.created_at.desc(), _F.c.id.desc()).limit(limit)
        if where.status is not None:
            stmt = stmt.where(_F.c.status == where.status.value)
        if where.operation is not None:
            stmt = stmt.where(_F.c.operation == where.operation.value)
        if where.session_id:
            stmt = stmt.where(_F.c.session_id == where.session_id)
        if where.after is not None:
            at, last_id = where.after
            cursor = sa.tuple_(sa.literal(at, sa.DateTime(timezone=True)), sa.literal(last_id, UUID(as_uuid=False)))
            stmt = stmt.where(sa.tuple_(_F.c.created_at, _F.c.id) < cursor)
        return [_compensation(r) for r in await self._c.execute(stmt)]

    async def get(self, compensation_id: str) -> FailedCompensation | None:
        row = (await self._c.execute(sa.select(_F).where(_F.c.id == compensation_id))).first()
        return _compensation(row) if row is not None else None

    @staticmethod
    def _not_running(lease_seconds: int) -> sa.ColumnElement[bool]:
        """Not PENDING under a live lease: a claim (the drain's, or an operator's take) sets next_attempt_at to
        exactly updated_at + the lease, a backoff to a random delay; a lease that lapsed is no longer running."""
        lease: sa.ColumnClause[Any] = sa.literal_column(f"interval '{float(lease_seconds):.3f} seconds'")
        running = sa.and_(
            _F.c.status == CompensationStatus.PENDING.value,
            _F.c.next_attempt_at > _NOW,
            _F.c.next_attempt_at == _F.c.updated_at + lease,
        )
        return sa.not_(running)

    async def take(
        self, compensation_id: str, statuses: Collection[CompensationStatus], lease_seconds: int, *, restart: bool
    ) -> FailedCompensation | None:
        values: dict[str, Any] = {
            "status": CompensationStatus.PENDING.value,
            "next_attempt_at": _in(lease_seconds),
            "updated_at": _NOW,
        }
        if restart:
            values["attempts"] = 0
        where = _F.c.status.in_([s.value for s in statuses])
        return await self._operator_change(compensation_id, where, lease_seconds, values)

    async def park(self, compensation_id: str, lease_seconds: int) -> FailedCompensation | None:
        where = _F.c.status == CompensationStatus.PENDING.value
        values = {"status": CompensationStatus.PARKED.value, "updated_at": _NOW}
        return await self._operator_change(compensation_id, where, lease_seconds, values)

    async def _operator_change(
        self, compensation_id: str, where: sa.ColumnElement[bool], lease_seconds: int, values: dict[str, Any]
    ) -> FailedCompensation | None:
        """An operator's change of one entry not being run now (``where`` holds too), with its audit row; None
        if no such entry."""
        row = (
            await self._c.execute(
                _F.update()
                .where(_F.c.id == compensation_id, where, self._not_running(lease_seconds))
                .values(**values)
                .returning(*_F.c)
            )
        ).first()
        if row is None:
            return None
        await audit.record(self._c, audit_log, f"dlq/{row.id}", f"sessions/{row.session_id}")
        return _compensation(row)


class SqlFunnelRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._c = conn

    async def funnel(self, start: datetime, end: datetime) -> Funnel:
        """Four indexed range scans (carts and sessions by created_at, ended sessions by updated_at)."""
        lo, hi = sa.literal(start, sa.DateTime(timezone=True)), sa.literal(end, sa.DateTime(timezone=True))
        carts_created = sa.select(sa.func.count()).where(carts.c.created_at >= lo, carts.c.created_at < hi)
        started = sa.select(sa.func.count()).where(_S.c.created_at >= lo, _S.c.created_at < hi)
        reason = sa.func.coalesce(sa.func.nullif(_S.c.saga_state["failure"]["reason"].astext, ""), "UNKNOWN")
        ended = (
            sa.select(
                _S.c.status, sa.case((_S.c.status == "CANCELLED", reason), else_="").label("reason"), sa.func.count()
            )
            .where(
                _S.c.status.in_([SessionStatus.COMPLETED.value, SessionStatus.CANCELLED.value]),
                _S.c.updated_at >= lo,
                _S.c.updated_at < hi,
            )
            .group_by(sa.literal_column("1"), sa.literal_column("2"))
        )
        n_carts = (await self._c.execute(carts_created)).scalar_one()
        n_started = (await self._c.execute(started)).scalar_one()
        confirmed = 0
        failures: dict[str, int] = {}
        for status, why, count in await self._c.execute(ended):
            if status == SessionStatus.COMPLETED.value:
                confirmed += count
            else:
                failures[why] = failures.get(why, 0) + count
        return Funnel(start, end, n_carts, n_started, confirmed, failures)


class SqlConfirmRecordRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._c = conn

    async def get(self, customer_id: str, idempotency_key: str, max_age_seconds: int) -> ConfirmRecord | None:
        row = (
            await self._c.execute(
                sa.select(_R.c.response).where(
                    _R.c.customer_id == customer_id,
                    _R.c.idempotency_key == idempotency_key,
                    _R.c.created_at > _in(-max_age_seconds),
                )
            )
        ).first()
        return None if row is None else ConfirmRecord.from_dict(row.response)

    async def put(self, customer_id: str, idempotency_key: str, record: ConfirmRecord) -> None:
        await self._c.execute(
            insert(_R)
            .values(
                customer_id=customer_id,
                idempotency_key=idempotency_key,
                session_id=record.session_id,
                fingerprint=record.fingerprint,
                response=record.to_dict(),
            )
            .on_conflict_do_update(
                index_elements=[_R.c.customer_id, _R.c.idempotency_key],
                set_={"response": record.to_dict(), "fingerprint": record.fingerprint, "created_at": _NOW},
            )
        )


class SqlTx(OutboxTx):
    """The repositories of one transaction (one connection) and its outbox; ``events`` counts what it added."""

    def __init__(self, conn: AsyncConnection, cipher: PiiCipher) -> None:
        super().__init__(conn, outbox, service="checkout")
        self.carts = SqlCartRepo(conn)
        self.sessions = SqlSessionRepo(conn, cipher, self.count_written)
        self.compensations = SqlCompensationRepo(conn)
        self.confirm_records = SqlConfirmRecordRepo(conn)
        self.funnel = SqlFunnelRepo(conn)


class SqlUnitOfWork(StatementUnitOfWork[SqlTx]):
    """:class:`infra.db.UnitOfWork` of checkout's :class:`SqlTx`: ``transaction()``, ``read()``, ``single()`` and
    ``statement()`` (infra.outbox_cte: one statement with its outbox rows, a transaction for an admin's call);
    ``on_commit`` wakes the outbox publisher after a commit with events. ``cipher`` encrypts and decrypts the
    personal data the sessions keep."""

    def __init__(self, engine: AsyncEngine, cipher: PiiCipher, on_commit: Callable[[], None] | None = None) -> None:
        super().__init__(engine, lambda conn: SqlTx(conn, cipher), on_commit=on_commit)
