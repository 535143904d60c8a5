"""Loading a checkout session for a caller: a customer reaches only their own sessions."""

from __future__ import annotations

from checkout.biz.ports import UnitOfWork
from checkout.model.session import Session
from kernel.caller import Caller
from kernel.errors import NotFound

__all__ = ["load_owned_session"]


async def load_owned_session(uow: UnitOfWork, caller: Caller, session_id: str) -> Session:
    """Another customer's session is reported as missing, so ids can't be probed. ``session_id`` is a UUID in
    its canonical form (the servicer checked it: checkout.service.validation)."""
    async with uow.read() as tx:
        session = await tx.sessions.get(session_id)
    if session is None or not caller.owns(session.customer_id):
        raise NotFound(f"checkout session {session_id} not found", metadata={"session_id": session_id})
    return session
