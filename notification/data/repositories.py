"""Notification's storage ports on Postgres (SQLAlchemy Core): SqlMessageRepo and SqlInbox bound to one connection,
SqlTx holding them, and SqlUnitOfWork, the only place a transaction begins.

The recipient is sealed with ``infra.pii`` on its way in and only ever leaves masked (``a***@example.com``):
operators see whom a message went to without the table holding addresses in plain text.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from infra import audit
from infra.db import UnitOfWork
from infra.outbox import claim_inbox
from infra.pii import PiiCipher, PiiError, mask_email
from kernel.money import Money
from notification.biz.ports import Claim, InboxEntry, NewMessage, Revived
from notification.data.tables import audit_log, dead_letters, inbox, messages
from notification.model.message import Kind, MessageStatus, Notice, SentMessage

__all__ = ["SqlInbox", "SqlMessageRepo", "SqlTx", "SqlUnitOfWork"]

m = messages.c

_INSERT = (
    insert(messages)
    .values(
        message_id=sa.bindparam("b_message_id"),
        event_id=sa.bindparam("b_event_id"),
        event_type=sa.bindparam("b_event_type"),
        kind=sa.bindparam("b_kind"),
        order_id=sa.bindparam("b_order_id"),
        channel=sa.bindparam("b_channel"),
        recipient=sa.bindparam("b_recipient"),
        subject=sa.bindparam("b_subject"),
        cause=sa.bindparam("b_cause"),
        amount_currency=sa.bindparam("b_amount_currency"),
        amount_minor=sa.bindparam("b_amount_minor"),
        payment_outcome=sa.bindparam("b_payment_outcome"),
        status=MessageStatus.SENDING.value,
        claim_token=sa.bindparam("b_token"),
        claimed_at=sa.func.now(),
        lease_until=sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, sa.bindparam("b_lease", type_=sa.Float)),
    )
    .on_conflict_do_nothing()
    .returning(m.status, m.attempts)
)
_THIS_NOTICE = (m.event_id == sa.bindparam("b_event_id"), m.kind == sa.bindparam("b_kind"))
# A SENDING row whose lease lapsed (or that predates leases) is taken over: its holder died or gave up.
_RECLAIM = (
    messages.update()
    .where(
        *_THIS_NOTICE,
        m.status == MessageStatus.SENDING.value,
        sa.or_(m.lease_until.is_(None), m.lease_until <= sa.func.now()),
    )
    .values(
        claim_token=sa.bindparam("b_token"),
        claimed_at=sa.func.now(),
        lease_until=sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, sa.bindparam("b_lease", type_=sa.Float)),
        updated_at=sa.func.now(),
    )
    .returning(m.status, m.attempts)
)
_CURRENT = sa.select(
    m.status,
    m.attempts,
    sa.func.coalesce(sa.extract("epoch", m.lease_until - sa.func.now()), 0.0).label("lease_left"),
).where(*_THIS_NOTICE)
# Settling a message ends its lease.
_RELEASED = {"claim_token": "", "lease_until": None}
# The inbox row of an event, written by the statement that settles its message (if it settled it).
_CLAIM_COLUMNS = (sa.bindparam("b_consumer", type_=sa.Text), sa.bindparam("b_event", type_=sa.Text))


def _inbox_from(settled: sa.CTE) -> sa.CTE:
    """``INSERT INTO inbox`` the event (``:b_consumer``, ``:b_event``) if ``settled`` has a row; a repeat is a no-op."""
    return (
        insert(inbox)
        .from_select(["consumer", "event_id"], sa.select(*_CLAIM_COLUMNS).where(sa.exists(sa.select(settled))))
        .on_conflict_do_nothing()
        .cte("inbox_row")
    )


# SENT (the lease ends) and the event's inbox row, in one statement. The inbox row is written whether or not the
# UPDATE found the message SENDING, as the transaction of the two statements it replaces did.
_MARK_SENT_WITH_INBOX = sa.select(sa.literal(1)).add_cte(
    insert(inbox)
    .values(consumer=sa.bindparam("b_consumer", type_=sa.Text), event_id=sa.bindparam("b_event", type_=sa.Text))
    .on_conflict_do_nothing()
    .cte("inbox_row"),
    messages.update()
    .where(m.message_id == sa.bindparam("b_message_id", type_=sa.Text), m.status == MessageStatus.SENDING.value)
    .values(status=MessageStatus.SENT.value, sent_at=sa.func.now(), updated_at=sa.func.now(), **_RELEASED)
    .cte("sent"),
)


def _bury_stmt(*, with_inbox: bool) -> sa.Select[Any]:
    """DEAD under the holder's lease, its dead-letter row (and the event's inbox row) only if it became DEAD, in one
    statement; the attempts come back (no row: another sender holds it)."""
    dead = (
        messages.update()
        .where(m.message_id == sa.bindparam("b_message_id", type_=sa.Text), m.status == MessageStatus.SENDING.value)
        .where(sa.or_(m.claim_token == sa.bindparam("b_token", type_=sa.Text), m.claim_token == ""))
        .values(
            status=MessageStatus.DEAD.value,
            attempts=m.attempts + sa.bindparam("b_count", type_=sa.Integer),
            last_error=sa.bindparam("b_error", type_=sa.Text),
            updated_at=sa.func.now(),
            **_RELEASED,
        )
        .returning(m.message_id, m.attempts, m.last_error)
        .cte("dead")
    )
    letter = (
        insert(dead_letters)
        .from_select(
            ["message_id", "error", "attempts"], sa.select(dead.c.message_id, dead.c.last_error, dead.c.attempts)
        )
        .on_conflict_do_nothing()
        .cte("letter")
    )
    ctes = [letter, _inbox_from(dead)] if with_inbox else [letter]
    return sa.select(dead.c.attempts).add_cte(*ctes)


_BURY = {with_inbox: _bury_stmt(with_inbox=with_inbox) for with_inbox in (False, True)}
_SEEN = sa.select(sa.literal(1)).where(
    inbox.c.consumer == sa.bindparam("b_consumer"), inbox.c.event_id == sa.bindparam("b_event")
)


class SqlInbox:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def seen(self, consumer: str, event_id: str) -> bool:
        return (await self._conn.execute(_SEEN, {"b_consumer": consumer, "b_event": event_id})).first() is not None

    async def claim(self, consumer: str, event_id: str) -> bool:
        return await claim_inbox(self._conn, inbox, consumer, event_id)


class SqlMessageRepo:
    """The messages and their dead letters, on the connection it is given: one transaction's, or an autocommit
    connection's, where each statement commits by itself (the sender's writes: one statement each, and claim's
    fallbacks each conditional on their own, so none needs the one before it in its transaction)."""

    def __init__(self, conn: AsyncConnection, cipher: PiiCipher) -> None:
        self._conn = conn
        self._cipher = cipher

    async def claim(self, message: NewMessage, token: str, lease_seconds: float) -> Claim:
        n = message.notice
        params = {
            "b_message_id": message.message_id,
            "b_event_id": n.event_id,
            "b_event_type": n.event_type,
            "b_kind": n.kind.value,
            "b_order_id": n.order_id,
            "b_channel": message.channel,
            "b_recipient": self._cipher.encrypt(message.recipient),
            "b_subject": message.subject,
            "b_cause": n.cause,
            "b_amount_currency": n.amount.currency_code if n.amount else None,
            "b_amount_minor": n.amount.amount_minor if n.amount else None,
            "b_payment_outcome": n.payment_outcome,
            "b_token": token,
            "b_lease": lease_seconds,
        }
        row = (await self._conn.execute(_INSERT, params)).first()
        if row is not None:
            return Claim(MessageStatus(row.status), row.attempts, fresh=True, held=True)
        row = (await self._conn.execute(_RECLAIM, params)).first()
        if row is not None:
            return Claim(MessageStatus(row.status), row.attempts, fresh=False, held=True)
        current = (await self._conn.execute(_CURRENT, params)).one()
        return Claim(
            MessageStatus(current.status),
            current.attempts,
            fresh=False,
            held=False,
            lease_left_seconds=max(float(current.lease_left), 0.0),
        )

    async def record_failure(self, message_id: str, token: str, error: str) -> int:
        held = m.claim_token == token
        attempts = (
            await self._conn.execute(
                messages.update()
                .where(m.message_id == message_id)
                .values(
                    attempts=m.attempts + 1,
                    last_error=error,
                    updated_at=sa.func.now(),
                    # The holder lets go, so the event's next delivery may claim it at once.
                    claim_token=sa.case((held, ""), else_=m.claim_token),
                    lease_until=sa.case((held, None), else_=m.lease_until),
                )
                .returning(m.attempts)
            )
        ).scalar_one()
        return int(attempts)

    async def mark_sent_with_inbox(self, message_id: str, consumer: str, event_id: str) -> None:
        params = {"b_message_id": message_id, "b_consumer": consumer, "b_event": event_id}
        await self._conn.execute(_MARK_SENT_WITH_INBOX, params)

    async def bury(
        self,
        message_id: str,
        token: str,
        error: str,
        *,
        count_attempt: bool = False,
        inbox: InboxEntry | None = None,
    ) -> bool:
        params: dict[str, Any] = {
            "b_message_id": message_id,
            "b_token": token,
            "b_error": error,
            "b_count": int(count_attempt),
        }
        if inbox is not None:
            params["b_consumer"], params["b_event"] = inbox.consumer, inbox.event_id
        attempts = (await self._conn.execute(_BURY[inbox is not None], params)).scalar()
        # None: another sender holds it now, and settles the message (nothing written).
        return attempts is not None

    async def revive(self, message_id: str, token: str, lease_seconds: float) -> Revived | None:
        lease = sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, sa.bindparam("b_lease", type_=sa.Float))
        row = (
            await self._conn.execute(
                messages.update()
                .where(m.message_id == message_id, m.status == MessageStatus.DEAD.value)
                .values(
                    status=MessageStatus.SENDING.value,
                    claim_token=token,
                    claimed_at=sa.func.now(),
                    lease_until=lease,
                    updated_at=sa.func.now(),
                )
                .returning(*messages.c),
                {"b_lease": lease_seconds},
            )
        ).first()
        if row is None:
            current = (await self._conn.execute(sa.select(messages).where(m.message_id == message_id))).first()
            return None if current is None else Revived(self._message(current), None)
        # It leaves the dead letters; a replay that fails again buries it anew.
        await self._conn.execute(dead_letters.delete().where(dead_letters.c.message_id == message_id))
        await audit.record(self._conn, audit_log, f"messages/{message_id}", f"orders/{row.order_id}")
        amount = Money(row.amount_currency, row.amount_minor) if row.amount_currency is not None else None
        notice = Notice(
            row.event_id, row.event_type, Kind(row.kind), row.order_id, row.cause, amount, row.payment_outcome
        )
        return Revived(self._message(row), notice)

    async def get_message(self, message_id: str) -> SentMessage | None:
        row = (await self._conn.execute(sa.select(messages).where(m.message_id == message_id))).first()
        return None if row is None else self._message(row)

    async def list_messages(self, limit: int, order_id: str = "") -> list[SentMessage]:
        stmt = sa.select(messages).order_by(m.created_at.desc(), m.message_id).limit(limit)
        if order_id:
            stmt = stmt.where(m.order_id == order_id)
        rows = (await self._conn.execute(stmt)).all()
        return [self._message(r) for r in rows]

    async def list_dead(self, limit: int) -> list[SentMessage]:
        d = dead_letters.c
        stmt = (
            sa.select(messages)
            .join(dead_letters, d.message_id == m.message_id)
            .order_by(d.dead_at.desc(), m.message_id)
            .limit(limit)
        )
        rows = (await self._conn.execute(stmt)).all()
        return [self._message(r) for r in rows]

    def _message(self, row: Any) -> SentMessage:
        try:
            recipient = mask_email(self._cipher.decrypt(row.recipient))
        except PiiError:
            recipient = "(sealed under a key not configured)"
        return SentMessage(
            message_id=row.message_id,
            event_id=row.event_id,
            event_type=row.event_type,
            order_id=row.order_id,
            kind=row.kind,
            channel=row.channel,
            recipient_masked=recipient,
            subject=row.subject,
            status=MessageStatus(row.status),
            attempts=row.attempts,
            last_error=row.last_error,
            created_at=row.created_at,
            sent_at=row.sent_at,
        )


class SqlTx:
    """The repositories of one transaction (or of one autocommit read). Notification writes no outbox events."""

    def __init__(self, conn: AsyncConnection, cipher: PiiCipher) -> None:
        self.messages = SqlMessageRepo(conn, cipher)
        self.inbox = SqlInbox(conn)


class SqlUnitOfWork(UnitOfWork[SqlTx]):
    """:class:`infra.db.UnitOfWork` of notification's :class:`SqlTx`: commits when the block exits cleanly, rolls
    back on an exception; ``single()`` for a step that is one write statement (autocommit). ``cipher`` seals the
    recipients."""

    def __init__(self, engine: AsyncEngine, cipher: PiiCipher) -> None:
        super().__init__(engine, lambda conn: SqlTx(conn, cipher))
