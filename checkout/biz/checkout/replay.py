"""Idempotent replay of ConfirmCheckout, as the best payment APIs do it.

Protects DESIGN.md §4.2: a repeat of a finished request with the same Idempotency-Key returns the
same answer for 24 h — a decline replays PAYMENT_DECLINED — and never runs the saga again. The
request is fingerprinted (session, expected total, payment method); the same key with another
fingerprint is IDEMPOTENCY_KEY_REUSED. Redis answers fast; Postgres (``confirm_requests``) is the
record that survives Redis losing it: it is written in the transaction of the saga's last write
(:func:`keep_answer`) — whoever makes it, the request's own saga or the recovery worker — so a
session that ended always has its request's answer kept, and a crash can't split the two.
"""

from __future__ import annotations

import hashlib
import json

from checkout.biz.ports import KeptAnswer, Tx, UnitOfWork
from checkout.model.session import ConfirmError, ConfirmRecord, ConfirmResult, Session
from kernel.errors import (
    Aborted,
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
    ResourceExhausted,
    Unavailable,
)
from kernel.money import Money

__all__ = ["Replays", "answer", "answer_owed", "error_record", "fingerprint", "is_final", "keep_answer", "undone"]

_KINDS: dict[str, type[DomainError]] = {
    cls.__name__: cls
    for cls in (Aborted, AlreadyExists, FailedPrecondition, NotFound, PermissionDenied, ResourceExhausted, Unavailable)
}


def fingerprint(session_id: str, expected: Money, payment_method: str) -> str:
    raw = f"{session_id}|{expected.currency_code}|{expected.amount_minor}|{payment_method}"
    return hashlib.sha256(raw.encode()).hexdigest()


def is_final(error: DomainError) -> bool:
    """A refusal that stands as the answer; not a transient failure a retry may turn out differently (once
    the saga undid everything after one, the answer is :func:`undone`'s)."""
    if isinstance(error, Unavailable):
        return False
    return not (isinstance(error, Aborted) and error.reason == Reason.CHECKOUT_IN_PROGRESS)


def undone(failure: BaseException | None) -> DomainError:
    """The answer of a request whose saga failed (``failure``; None: its process died) and undid everything.

    A refusal stands as it is. Anything else — a transient failure (an authorization that went unanswered,
    voided by its key), a bug — is ABORTED, gRPC's "retry at a higher level": the session is cancelled, so
    the same request can never succeed, and a client that retries UNAVAILABLE with the same key would only
    hear it again until it gave up. Nothing was charged, and a new checkout may go through. A transient
    failure's reason (PAYMENT_PROVIDER_UNAVAILABLE) says why.
    """
    if isinstance(failure, DomainError) and is_final(failure):
        return failure
    if isinstance(failure, Unavailable):
        return Aborted(
            f"{failure.message}; this checkout has been undone and nothing was charged. Start checkout again",
            reason=failure.reason,
        )
    return Aborted(
        "this checkout could not be completed and has been undone; nothing was charged. Start checkout again",
        reason=Reason.UNAVAILABLE,
    )


def error_record(error: DomainError) -> ConfirmError:
    return ConfirmError(type(error).__name__, error.reason, error.message, dict(error.metadata))


async def keep_answer(tx: Tx, session: Session, outcome: ConfirmResult | ConfirmError) -> None:
    """Keep, in ``tx`` — the one of the saga's last write, which clears the request it answers from the
    session — the answer owed to the request that drove the saga; nothing when none is owed (the request
    was answered already, as an asynchronous payment's end finds it)."""
    if (owed := answer_owed(session, outcome)) is not None:
        await tx.confirm_records.put(owed.customer_id, owed.idempotency_key, owed.record)


def answer_owed(session: Session, outcome: ConfirmResult | ConfirmError) -> KeptAnswer | None:
    """What :func:`keep_answer` keeps, for a last write that keeps it in its own statement; None when no answer is
    owed."""
    if not session.idempotency_key or not session.confirm_fingerprint:
        return None
    if isinstance(outcome, ConfirmResult):
        record = ConfirmRecord(session.session_id, session.confirm_fingerprint, result=outcome)
    else:
        record = ConfirmRecord(session.session_id, session.confirm_fingerprint, error=outcome)
    return KeptAnswer(session.customer_id, session.idempotency_key, record)


def _rebuild(error: ConfirmError) -> DomainError:
    if error.kind == InvalidArgument.__name__:
        field = error.metadata.get("field", "")
        return InvalidArgument(field, error.message.removeprefix(f"{field}: "), reason=error.reason)
    return _KINDS.get(error.kind, FailedPrecondition)(error.message, reason=error.reason, metadata=error.metadata)


class Replays:
    def __init__(self, uow: UnitOfWork, max_age_seconds: int) -> None:
        self._uow = uow
        self._max_age = max_age_seconds

    @staticmethod
    def replayed(raw: bytes, session_id: str, print_: str) -> ConfirmResult:
        """The answer Redis had cached (:meth:`encode`'s bytes), raised when it was a refusal."""
        data = json.loads(raw)
        record = ConfirmRecord.from_dict(data) if "fingerprint" in data else _legacy(data)
        return answer(record, session_id, print_)

    async def durable(self, customer_id: str, key: str, session_id: str, print_: str) -> ConfirmResult | None:
        """The stored answer from Postgres, for when Redis lost it."""
        record = await self.kept(customer_id, key)
        return None if record is None else answer(record, session_id, print_)

    async def kept(self, customer_id: str, key: str) -> ConfirmRecord | None:
        async with self._uow.read() as tx:
            return await tx.confirm_records.get(customer_id, key, self._max_age)

    @staticmethod
    def encode(record: ConfirmRecord) -> bytes:
        """An answer Postgres keeps, as Redis caches it too for the fast path of repeats."""
        return json.dumps(record.to_dict()).encode()

    @staticmethod
    def record(session_id: str, print_: str, outcome: ConfirmResult | DomainError) -> ConfirmRecord:
        if isinstance(outcome, ConfirmResult):
            return ConfirmRecord(session_id, print_, result=outcome)
        return ConfirmRecord(session_id, print_, error=error_record(outcome))


def answer(record: ConfirmRecord, session_id: str, print_: str) -> ConfirmResult:
    if record.session_id != session_id or (record.fingerprint and record.fingerprint != print_):
        raise AlreadyExists(
            "this idempotency key was already used for another request (another session, total or payment "
            "method); use a new key for a new request",
            reason=Reason.IDEMPOTENCY_KEY_REUSED,
        )
    if record.error is not None:
        raise _rebuild(record.error)
    assert record.result is not None
    return record.result


def _legacy(data: dict[str, object]) -> ConfirmRecord:
    """A cached result written before requests were fingerprinted."""
    result = ConfirmResult.from_dict(data)
    return ConfirmRecord(result.session_id, "", result=result)
