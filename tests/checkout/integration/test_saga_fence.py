"""The persisted saga progress is a fence: a stalled live saga and the recovery worker never both drive
one session (real Postgres, fake neighbours).

The live saga is stalled at a step by a fault delay longer than its lease; recovery, finding the session
without progress for longer than the lease, claims it and settles it. When the live saga wakes up it
must find it no longer owns the session and stop without touching anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from helpers import unique

from checkout.biz.checkout.compensations import Compensator
from checkout.biz.checkout.confirm import ConfirmCheckout
from checkout.biz.checkout.pricing_engine import PricingEngine
from checkout.biz.checkout.recovery import SagaRecovery
from checkout.biz.checkout.settle import Settlement
from checkout.biz.checkout.update_state import StateUpdate
from checkout.biz.policy import CheckoutPolicy
from checkout.biz.retry import RetryPolicy
from checkout.model.catalog import Address, OrderStatus, PaymentStatus
from checkout.model.session import ConfirmResult, Session, SessionStatus
from infra import faults
from kernel.caller import Caller
from kernel.errors import DomainError
from tests.checkout.fakes import FakeIdempotencyStore

pytestmark = pytest.mark.integration

ADDRESS = Address("Ada Lovelace", "12 Analytical St", "", "London", "", "N1 9GU", "GB", "")
LEASE_SECONDS = 1
STALL_SECONDS = 2.0


@dataclass
class Short:
    """ConfirmCheckout and recovery on the served container's database and fakes, with a one-second lease."""

    confirm: ConfirmCheckout
    recovery: SagaRecovery


@pytest.fixture
def short(served) -> Iterator[Short]:
    c, g = served.container, served.container.gateways
    policy = CheckoutPolicy(
        retry=RetryPolicy(attempts=2, initial_seconds=0.001, max_seconds=0.002),
        recovery_after_seconds=LEASE_SECONDS,
        rpc_timeout_seconds=0.05,
    )
    compensator = Compensator(c.uow, g, policy.retry)
    settlement = Settlement(c.uow, g, compensator, policy)
    store = FakeIdempotencyStore()
    engine = PricingEngine(g.pricing, g.promotion, 2.0)
    yield Short(
        confirm=ConfirmCheckout(c.uow, g, engine, store, compensator, settlement=settlement, policy=policy),
        recovery=SagaRecovery(c.uow, g, settlement, policy),
    )
    faults.configure(None)


async def _ready(served, caller: Caller) -> Session:
    c = served.container
    sku = unique("SKU")
    served.pricing.add(sku, 1000)
    served.inventory.stock[sku] = 1
    cart = await c.carts.create(caller, "USD")
    await c.carts.add_item(caller, cart.cart_id, sku, 1)
    session, _ = await c.start(caller, cart.cart_id)
    update = StateUpdate(
        email="ada@example.com", shipping_address=ADDRESS, shipping_method="standard", payment_method="tok_visa"
    )
    return await c.state.update(caller, session.session_id, update)


def _calls(fake, method: str, session_id: str) -> int:
    return sum(1 for name, args in fake.calls if name == method and session_id in repr(args))


async def _stall_then_recover(served, short: Short, point: str) -> tuple[Session, ConfirmResult | BaseException]:
    caller = Caller(unique("cust"))
    session = await _ready(served, caller)
    assert session.preview is not None
    faults.configure(f"{point}=delay:{STALL_SECONDS}#1")
    live = asyncio.ensure_future(short.confirm(caller, session.session_id, unique("key"), session.preview.grand_total))
    await asyncio.sleep(LEASE_SECONDS + 0.4)
    assert not live.done()
    assert await short.recovery.recover_one(session.session_id)  # the live saga's lease ran out: taken over
    outcome: ConfirmResult | BaseException
    try:
        outcome = await live
    except DomainError as exc:
        outcome = exc
    return session, outcome


async def test_a_saga_stalled_before_its_order_is_undone_by_recovery_and_never_places_it(served, short) -> None:
    session, outcome = await _stall_then_recover(served, short, "checkout.confirm.before_create_order")
    sid = session.session_id
    async with served.container.uow.read() as tx:
        stored = await tx.sessions.get(sid)
    assert stored is not None and stored.status is SessionStatus.CANCELLED  # recovery undid it
    # The live saga woke up to a session it no longer owned: no order, no capture, nothing more.
    assert _calls(served.order, "create_order", sid) == 0
    assert sid not in served.order.orders
    pid = served.payment.by_key[f"checkout:{sid}:authorize"]
    assert served.payment.payments[pid]["status"] is PaymentStatus.VOIDED
    assert _calls(served.payment, "capture", pid) == 0
    assert served.inventory.held[sid].status == "RELEASED"
    assert isinstance(outcome, DomainError)  # told how it ended, not a result it didn't produce


async def test_a_saga_stalled_after_its_order_is_finished_once_by_recovery(served, short) -> None:
    session, outcome = await _stall_then_recover(served, short, "checkout.confirm.before_capture")
    sid = session.session_id
    async with served.container.uow.read() as tx:
        stored = await tx.sessions.get(sid)
    assert stored is not None and stored.status is SessionStatus.COMPLETED
    pid = served.payment.by_key[f"checkout:{sid}:authorize"]
    # Exactly one of them took the money and told the order; the other stopped before its next step.
    assert _calls(served.payment, "capture", pid) == 1
    assert _calls(served.order, "record_payment", pid) == 1
    assert served.payment.payments[pid]["captures"] == 1
    assert served.order.orders[sid]["status"] is OrderStatus.CONFIRMED
    # The live request answers with the order recovery placed for it.
    assert outcome == stored.result
