"""Payment's consumer of order events records the event in its inbox by the same commit as the effect, so a
crash right after the effect cannot leave it applied but unrecorded; and a cancellation whose money is
already being given back by another refund is done, not retried forever."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from helpers import bearer, unique
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from devstack.sandbox.server import RunningSandbox
from infra import faults
from infra.config import Settings
from kassa.common.v1 import money_pb2
from kassa.payment.v1 import payment_pb2, payment_service_pb2
from kassa.payment.v1.payment_service_pb2_grpc import PaymentServiceStub
from payment.adapter.sandbox_provider import SandboxProvider, provider_session
from payment.biz.order_events import CONSUMER, ReleaseEndedOrder
from payment.biz.providers import Providers
from payment.data.repositories import SqlPaymentRepo, SqlTx, SqlUnitOfWork
from payment.model.payment import PaymentStatus, Transition

pytestmark = pytest.mark.integration

pb = payment_service_pb2
PS = payment_pb2.PaymentStatus
TIMEOUT = 20


class Crashed(Exception):
    """Stands for the process dying at that moment."""


class CrashBeforeClaim(SqlUnitOfWork):
    """Dies right after the effect, where the consumer would record the event on its own (a statement of its own,
    outside the effect's transaction)."""

    @contextlib.asynccontextmanager
    async def single(self) -> AsyncIterator[SqlTx]:
        async with super().single() as tx:
            tx.inbox.claim = self._crash  # type: ignore[method-assign]
            yield tx

    async def _crash(self, consumer: str, event_id: str) -> bool:
        raise Crashed("died before the inbox claim")


class _CrashingPayments(SqlPaymentRepo):
    def __init__(self, tx: SqlTx, crash_on: uuid.UUID) -> None:
        super().__init__(tx.conn, tx.counted, tx.count_written)
        self.crash_on = crash_on

    async def apply(self, payment_id: uuid.UUID, transition: Transition) -> object:  # type: ignore[override]
        if payment_id == self.crash_on and transition.to == PaymentStatus.VOIDING:
            raise Crashed("died before voiding the second payment")
        return await super().apply(payment_id, transition)


class CrashOnVoiding(SqlUnitOfWork):
    """Dies as it starts to void one given payment (after the effects on the payments before it)."""

    def __init__(self, engine: AsyncEngine, payment_id: uuid.UUID) -> None:
        super().__init__(engine)
        self._payment_id = payment_id

    def _tx(self, conn: AsyncConnection) -> SqlTx:
        tx = super()._tx(conn)
        tx.payments = _CrashingPayments(tx, self._payment_id)
        return tx


@pytest_asyncio.fixture(loop_scope="session")
async def providers(sandbox: RunningSandbox, settings: Settings) -> AsyncIterator[Providers]:
    async with provider_session(sandbox.url, 5) as client:
        yield Providers([SandboxProvider(client, settings.webhook_secret)])


async def _authorize(stub: PaymentServiceStub, token: str, order_ref: str | None = None) -> payment_pb2.Payment:
    request = pb.AuthorizePaymentRequest(
        idempotency_key=unique("pay"),
        order_ref=order_ref or unique("sess"),
        amount=money_pb2.Money(currency_code="USD", amount_minor=900),
        payment_method="tok_visa",
        customer_id="cust-1",
    )
    return (await stub.AuthorizePayment(request, metadata=bearer(token), timeout=TIMEOUT)).payment


async def _capture(stub: PaymentServiceStub, token: str, payment_id: str, order_id: str) -> None:
    request = pb.CapturePaymentRequest(payment_id=payment_id, order_id=order_id)
    await stub.CapturePayment(request, metadata=bearer(token), timeout=TIMEOUT)


async def _status(uow: SqlUnitOfWork, payment_id: str) -> PaymentStatus:
    async with uow.read() as tx:
        payment = await tx.payments.get(uuid.UUID(payment_id))
    assert payment is not None
    return payment.status


async def _seen(uow: SqlUnitOfWork, event_id: str) -> bool:
    async with uow.read() as tx:
        return await tx.inbox.seen(CONSUMER, event_id)


async def test_a_void_and_the_inbox_claim_are_one_commit(
    payment_stub: PaymentServiceStub, service_token: str, payment_db: AsyncEngine, providers: Providers,
    sandbox: RunningSandbox,
) -> None:  # fmt: skip
    payment = await _authorize(payment_stub, service_token)
    event_id = str(uuid.uuid4())
    data = {"order_id": unique("order"), "payment_id": payment.payment_id}
    with pytest.raises(Crashed):
        await ReleaseEndedOrder(CrashBeforeClaim(payment_db), providers)(event_id, "OrderCancelled", data)

    uow = SqlUnitOfWork(payment_db)
    assert await _status(uow, payment.payment_id) == PaymentStatus.VOIDED
    assert await _seen(uow, event_id)
    assert await ReleaseEndedOrder(uow, providers)(event_id, "OrderCancelled", data) == "duplicate"
    assert sandbox.api.state.count("cancel", payment.provider_payment_id) == 1


async def test_a_refund_and_the_inbox_claim_are_one_commit(
    payment_stub: PaymentServiceStub, service_token: str, payment_db: AsyncEngine, providers: Providers,
    sandbox: RunningSandbox,
) -> None:  # fmt: skip
    payment = await _authorize(payment_stub, service_token)
    order_id = unique("order")
    await _capture(payment_stub, service_token, payment.payment_id, order_id)
    event_id = str(uuid.uuid4())
    data = {"order_id": order_id, "payment_id": payment.payment_id}
    with pytest.raises(Crashed):
        await ReleaseEndedOrder(CrashBeforeClaim(payment_db), providers)(event_id, "OrderCancelled", data)

    uow = SqlUnitOfWork(payment_db)
    assert await _status(uow, payment.payment_id) == PaymentStatus.REFUNDED
    assert await _seen(uow, event_id)
    assert sandbox.api.state.count("refund", payment.provider_payment_id) == 1


async def test_a_crash_between_two_payments_of_a_session_leaves_the_event_to_redo(
    payment_stub: PaymentServiceStub, service_token: str, payment_db: AsyncEngine, providers: Providers,
    sandbox: RunningSandbox,
) -> None:  # fmt: skip
    session_id = unique("sess")
    first = await _authorize(payment_stub, service_token, session_id)
    second = await _authorize(payment_stub, service_token, session_id)
    event_id = str(uuid.uuid4())
    data = {"order_id": unique("order"), "checkout_session_id": session_id}
    crashing = CrashOnVoiding(payment_db, uuid.UUID(second.payment_id))
    with pytest.raises(Crashed):
        await ReleaseEndedOrder(crashing, providers)(event_id, "OrderPaymentFailed", data)

    uow = SqlUnitOfWork(payment_db)
    assert await _status(uow, first.payment_id) == PaymentStatus.VOIDED
    assert not await _seen(uow, event_id)
    outcome = await ReleaseEndedOrder(uow, providers)(event_id, "OrderPaymentFailed", data)
    assert outcome == f"{first.payment_id} unchanged (VOIDED), {second.payment_id} VOIDED"
    assert await _seen(uow, event_id)
    assert sandbox.api.state.count("cancel", first.provider_payment_id) == 1


async def test_a_cancellation_already_covered_by_a_pending_refund_is_done(
    payment_stub: PaymentServiceStub, service_token: str, payment_db: AsyncEngine, providers: Providers,
    sandbox: RunningSandbox,
) -> None:  # fmt: skip
    payment = await _authorize(payment_stub, service_token)
    order_id = unique("order")
    await _capture(payment_stub, service_token, payment.payment_id, order_id)
    # An admin's full refund reached the provider; payment died before recording it (it stays pending).
    faults.configure("payment.refund.after_provider=error#1")
    refund = pb.RefundPaymentRequest(payment_id=payment.payment_id, idempotency_key=unique("refund"))
    with pytest.raises(Exception, match="UNAVAILABLE"):
        await payment_stub.RefundPayment(refund, metadata=bearer(service_token), timeout=TIMEOUT)

    uow = SqlUnitOfWork(payment_db)
    event_id = str(uuid.uuid4())
    data = {"order_id": order_id, "payment_id": payment.payment_id}
    outcome = await ReleaseEndedOrder(uow, providers)(event_id, "OrderCancelled", data)
    assert outcome == f"{payment.payment_id} nothing left to refund"
    assert await _seen(uow, event_id)
    assert sandbox.api.state.count("refund", payment.provider_payment_id) == 1
    assert sandbox.api.state.intents[payment.provider_payment_id].amount_refunded == 900
