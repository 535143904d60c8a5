"""What the audit log tests of every service share (import as ``from audit_support import ...``)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from helpers import bearer, unique
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.auth import ROLE_ADMIN, mint_token
from infra.config import Settings
from kassa.audit.v1 import audit_service_pb2 as audit_pb
from kassa.audit.v1.audit_service_pb2_grpc import AuditServiceStub

SUCCEEDED = audit_pb.AuditEntry.OUTCOME_SUCCEEDED
REFUSED = audit_pb.AuditEntry.OUTCOME_REFUSED
FAILED = audit_pb.AuditEntry.OUTCOME_FAILED


def new_admin(settings: Settings) -> tuple[str, str]:
    """A fresh admin (subject, token): a test finds its own entries by their actor."""
    subject = unique("ops")
    return subject, mint_token(settings.jwt_secret, subject, role=ROLE_ADMIN)


async def entries_of(channel: grpc.aio.Channel, token: str, actor: str, **filters: Any) -> list[audit_pb.AuditEntry]:
    """Every entry of ``actor`` the service's AuditService lists (newest first), read as the admin ``token``."""
    stub = AuditServiceStub(channel)
    out: list[audit_pb.AuditEntry] = []
    page_token = ""
    while True:
        reply = await stub.ListAuditEntries(
            audit_pb.ListAuditEntriesRequest(actor=actor, page_token=page_token, **filters), metadata=bearer(token)
        )
        out.extend(reply.entries)
        page_token = reply.next_page_token
        if not page_token:
            return out


async def list_status(channel: grpc.aio.Channel, token: str) -> grpc.StatusCode:
    try:
        await AuditServiceStub(channel).ListAuditEntries(audit_pb.ListAuditEntriesRequest(), metadata=bearer(token))
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def assert_append_only(engine: AsyncEngine, schema: str) -> None:
    """The database itself refuses to change or remove an entry (UPDATE, DELETE, TRUNCATE), or to number one."""
    statements = [
        f"UPDATE {schema}.audit_log SET actor = 'someone-else'",
        f"DELETE FROM {schema}.audit_log",
        f"DELETE FROM {schema}.audit_log WHERE false",
        f"TRUNCATE {schema}.audit_log",
        f"INSERT INTO {schema}.audit_log (id, actor, actor_role, action, outcome)"
        " VALUES (-1, 'x', 'admin', 'x', 'succeeded')",
    ]
    first = f"SELECT id, actor, action, outcome, at FROM {schema}.audit_log ORDER BY id LIMIT 1"
    async with engine.connect() as conn:
        before = (await conn.execute(sa.text(first))).one_or_none()
        await conn.rollback()
    assert before is not None, "the test needs an entry to try to change"
    for statement in statements:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as refused:
                await conn.execute(sa.text(statement))
            await conn.rollback()
        message = str(refused.value.orig)
        assert "append-only" in message or "GENERATED ALWAYS" in message or "generated always" in message.lower()
    async with engine.connect() as conn:
        after = (await conn.execute(sa.text(first))).one_or_none()
    assert after == before
