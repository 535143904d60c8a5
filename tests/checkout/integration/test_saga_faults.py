"""ConfirmCheckout stopped at every named step (infra.faults), on real Postgres/Redis with fake neighbours.

An ``error`` at a point is any failure there: the saga must end in a state that keeps DESIGN.md §4 —
no order without a payment, no authorization left open for an order that wasn't placed, a session the
customer or the recovery worker can go on from. A ``crash`` at a point (here: the process "exits" by
an exception nothing in the saga catches, leaving what it persisted) must leave a session the recovery
worker finishes, and whoever finishes it keeps the request's answer: a repeat of the request learns how
it ended (DESIGN.md §3's replay rule), never SESSION_NOT_OPEN.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import AsyncExitStack
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from helpers import unique

from checkout.biz.checkout.confirm import authorize_key
from checkout.biz.checkout.steps import STEPS
from checkout.biz.checkout.update_state import StateUpdate
from checkout.biz.retry import RetryPolicy
from checkout.bootstrap import Container, build
from checkout.data.tables import checkout_sessions
from checkout.model.cart import CartStatus
from checkout.model.catalog import Address, OrderStatus, PaymentStatus
from checkout.model.session import ConfirmRecord, ConfirmResult, Session, SessionStatus
from infra import faults
from infra.config import Settings
from infra.db import create_engine
from infra.runner import running_service
from kernel.caller import Caller
from kernel.errors import Aborted, FailedPrecondition, Reason
from tests.checkout.fakes import fake_gateways

pytestmark = pytest.mark.integration

ADDRESS = Address("Ada Lovelace", "12 Analytical St", "", "London", "", "N1 9GU", "GB", "")
POINTS = [f"checkout.confirm.{when}_{name}" for name in STEPS for when in ("before", "after")]
# Where an error leaves the session: steps 2-3 reopen it; before the order exists everything is undone;
# once it exists the session waits for recovery to finish it (or is finished already).
_REOPENED = {"validate", "recalculate"}
_UNDONE = {"reserve_promotion", "extend_reservations", "authorize", "create_order"}


class SimulatedCrash(BaseException):
    """What ``os._exit`` becomes in these tests: no ``except Exception`` in the saga stops it."""


class _CrashingOs:
    """infra.faults' view of ``os``: everything real but ``_exit``."""

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)

    @staticmethod
    def _exit(code: int) -> None:
        raise SimulatedCrash(code)


@pytest.fixture(autouse=True)
def no_faults_after() -> Iterator[None]:
    yield
    faults.configure(None)


@pytest.fixture
def crashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults, "os", _CrashingOs())


def _step(point: str) -> str:
    return point.rsplit(".", maxsplit=1)[-1].split("_", 1)[1]


async def _ready(served, caller: Caller, payment_method: str = "tok_visa") -> Session:
    """A cart of one line with a 10 % coupon, started and filled in: every step has work to do."""
    c = served.container
    sku, code = unique("SKU"), unique("SAVE").upper()
    served.pricing.add(sku, 1000)
    served.inventory.stock[sku] = 2
    served.promotion.add(code, 10)
    cart = await c.carts.create(caller, "USD")
    await c.carts.add_item(caller, cart.cart_id, sku, 2)
    session, _ = await c.start(caller, cart.cart_id)
    update = StateUpdate(
        email="ada@example.com", shipping_address=ADDRESS, shipping_method="standard", payment_method=payment_method,
        promotion_codes=[code],
    )  # fmt: skip
    return await c.state.update(caller, session.session_id, update)


async def _confirm(served, caller: Caller, session: Session, key: str) -> ConfirmResult:
    assert session.preview is not None
    return await served.container.confirm(caller, session.session_id, key, session.preview.grand_total)


async def _stored(served, session_id: str) -> Session:
    async with served.container.uow.read() as tx:
        stored = await tx.sessions.get(session_id)
    assert stored is not None
    return stored


async def _kept(served, caller: Caller, key: str) -> ConfirmRecord | None:
    """The answer Postgres keeps for the customer's key (what a repeat gets when Redis has none)."""
    async with served.container.uow.read() as tx:
        return await tx.confirm_records.get(caller.subject, key, 86_400)


def _calls(served) -> tuple[int, ...]:
    """How many calls checkout made to each neighbour so far."""
    return tuple(len(fake.calls) for fake in (served.pricing, served.inventory, served.promotion, served.payment,
                                               served.order))  # fmt: skip


async def _age(served, session_id: str) -> None:
    """As if the replica driving this session had stopped writing progress an hour ago."""
    async with served.container.engine.begin() as conn:
        await conn.execute(
            checkout_sessions.update()
            .where(checkout_sessions.c.session_id == session_id)
            .values(confirm_started_at=sa.func.now() - sa.text("interval '1 hour'"))
        )


def _payment(served, session_id: str) -> dict | None:
    pid = served.payment.by_key.get(authorize_key(session_id))
    return None if pid is None else served.payment.payments[pid]


def assert_money_invariants(served, session_id: str) -> None:
    """DESIGN.md §4.2/§4.3 as far as this session goes, at any moment."""
    order = served.order.orders.get(session_id)
    payment = _payment(served, session_id)
    assert payment is None or payment["captures"] <= 1
    if order is not None and order["status"] is not OrderStatus.PAYMENT_FAILED:
        # no order without a payment behind it
        assert payment is not None and payment["status"] in (PaymentStatus.AUTHORIZED, PaymentStatus.CAPTURED)
    if payment is not None and payment["status"] is PaymentStatus.CAPTURED:
        # no captured payment without a confirmed order
        assert order is not None and order["status"] is OrderStatus.CONFIRMED


async def assert_settled(served, session: Session) -> Session:
    """The end a saga must reach, whoever drove it: completed with everything taken, or cancelled with
    everything given back (or, refused in steps 2-3, open again with nothing taken)."""
    sid = session.session_id
    assert_money_invariants(served, sid)
    stored = await _stored(served, sid)
    order, payment, held = served.order.orders.get(sid), _payment(served, sid), served.inventory.held[sid]
    async with served.container.uow.read() as tx:
        cart = await tx.carts.get_head(session.cart_id)
    assert cart is not None
    usage = served.promotion.reserved_for(sid)
    if stored.status is SessionStatus.COMPLETED:
        assert order is not None and order["status"] is OrderStatus.CONFIRMED
        assert payment is not None and payment["status"] is PaymentStatus.CAPTURED and payment["captures"] == 1
        assert held.status == "CONFIRMED"
        assert set(usage.values()) == {"CONFIRMED"}
        assert cart.status is CartStatus.CONVERTED
        assert stored.result is not None and stored.result.order_id == order["order_id"]
    elif stored.status is SessionStatus.CANCELLED:
        assert order is None or order["status"] is OrderStatus.PAYMENT_FAILED
        assert payment is None or payment["status"] is PaymentStatus.VOIDED
        assert held.status == "RELEASED"
        assert usage == {}
        assert cart.status is CartStatus.ACTIVE
    else:
        assert stored.status is SessionStatus.OPEN, stored.status
        assert order is None and payment is None
        assert held.status == "ACTIVE" and usage == {}
        assert cart.status is CartStatus.CHECKOUT
    return stored


@pytest.mark.parametrize("point", POINTS)
async def test_an_error_at_any_step_keeps_the_invariants_and_the_session_goes_on(served, customer_id, point) -> None:
    caller = Caller(customer_id)
    session = await _ready(served, caller)
    faults.configure(f"{point}=error#1")
    key = unique("key")
    step = _step(point)

    undone: Aborted | None = None
    if point == "checkout.confirm.after_finalize":
        # The order is placed and the session says so: that is the answer, not the failure after it.
        result = await _confirm(served, caller, session, key)
        assert result.order_status == OrderStatus.CONFIRMED
    elif step in _UNDONE:
        # Everything was undone before answering: the request is over, and says so (not an INTERNAL).
        with pytest.raises(Aborted) as aborted:
            await _confirm(served, caller, session, key)
        undone = aborted.value
        assert undone.reason == Reason.UNAVAILABLE and "nothing was charged" in undone.message
    else:
        with pytest.raises(faults.InjectedFault):
            await _confirm(served, caller, session, key)
    assert_money_invariants(served, session.session_id)
    stored = await _stored(served, session.session_id)

    if step in _REOPENED:
        assert stored.status is SessionStatus.OPEN
        await assert_settled(served, session)
        # nothing was taken: the same request goes through now
        assert (await _confirm(served, caller, session, key)).order_status == OrderStatus.CONFIRMED
    elif step in _UNDONE:
        assert stored.status is SessionStatus.CANCELLED
        assert undone is not None
        with pytest.raises(Aborted) as again:  # and a repeat says so again
            await _confirm(served, caller, session, key)
        assert (again.value.reason, again.value.message) == (undone.reason, undone.message)
    elif point != "checkout.confirm.after_finalize":
        # The order exists: nothing is undone, the recovery worker finishes it.
        assert stored.status is SessionStatus.CONFIRMING
        assert session.session_id in served.order.orders
        await _age(served, session.session_id)
        assert await served.container.recovery.recover_one(session.session_id)
    settled = await assert_settled(served, session)
    if step not in _REOPENED and step not in _UNDONE:
        assert settled.status is SessionStatus.COMPLETED


@pytest.mark.parametrize("point", POINTS)
async def test_recovery_finishes_a_saga_whose_process_died_at_any_step(served, customer_id, crashing, point) -> None:
    caller = Caller(customer_id)
    session = await _ready(served, caller)
    faults.configure(f"{point}=crash#1")
    key = unique("key")

    with pytest.raises(SimulatedCrash):
        await _confirm(served, caller, session, key)
    assert_money_invariants(served, session.session_id)
    stored = await _stored(served, session.session_id)
    if point == "checkout.confirm.after_finalize":
        assert stored.status is SessionStatus.COMPLETED  # nothing left to recover
    else:
        assert stored.status is SessionStatus.CONFIRMING
        assert not await served.container.recovery.recover_one(session.session_id)  # not stuck yet: live
        await _age(served, session.session_id)
        assert await served.container.recovery.recover_one(session.session_id)
    settled = await assert_settled(served, session)
    # Forward once the order may exist, undone before that.
    order_may_exist = _step(point) in {"confirm_stock", "capture", "finalize"} or point.endswith("after_create_order")
    assert settled.status is (SessionStatus.COMPLETED if order_may_exist else SessionStatus.CANCELLED)

    # Whoever finished the session kept the request's answer with it, in Postgres: the dead process cached
    # nothing in Redis. The customer's retry of the same request learns how it ended.
    kept = await _kept(served, caller, key)
    assert kept is not None and kept.session_id == session.session_id
    calls = _calls(served)
    if settled.status is SessionStatus.COMPLETED:
        assert kept.result == settled.result
        assert await _confirm(served, caller, session, key) == settled.result
    else:
        assert kept.error is not None and kept.result is None
        with pytest.raises(Aborted) as undone:
            await _confirm(served, caller, session, key)
        assert undone.value.reason == Reason.UNAVAILABLE, undone.value.reason
        assert "undone" in undone.value.message and "nothing was charged" in undone.value.message
    assert _calls(served) == calls  # replayed: nothing ran again


@pytest.mark.parametrize(
    ("point", "kind"),
    [
        ("checkout.confirm.before_finalize", "crash"),  # mid-undo: recovery finishes the undo
        ("checkout.confirm.after_finalize", "crash"),  # the session's last write done, the answer not sent
        ("checkout.confirm.after_finalize", "error"),
    ],
)
async def test_a_declined_card_stays_declined_for_a_repeat_after_a_crash_at_its_end(
    served, customer_id, crashing, point, kind
) -> None:
    """Chaos seed 4242: a declined card, checkout killed while ending the saga, and the customer's retries of
    the same request got SESSION_NOT_OPEN instead of PAYMENT_DECLINED. The decline is kept in the
    transaction that cancels the session (and, mid-undo, persisted before it for recovery to keep)."""
    caller = Caller(customer_id)
    session = await _ready(served, caller, payment_method="tok_chargeDeclined")
    faults.configure(f"{point}={kind}#1")
    key = unique("key")

    if kind == "crash":
        with pytest.raises(SimulatedCrash):
            await _confirm(served, caller, session, key)
    else:
        with pytest.raises(FailedPrecondition) as first:
            await _confirm(served, caller, session, key)
        assert first.value.reason == Reason.PAYMENT_DECLINED
    stored = await _stored(served, session.session_id)
    if point.endswith("before_finalize"):
        assert stored.status is SessionStatus.CONFIRMING
        await _age(served, session.session_id)
        assert await served.container.recovery.recover_one(session.session_id)
    assert (await assert_settled(served, session)).status is SessionStatus.CANCELLED

    calls = _calls(served)
    for _ in range(2):
        with pytest.raises(FailedPrecondition) as declined:
            await _confirm(served, caller, session, key)
        assert declined.value.reason == Reason.PAYMENT_DECLINED, declined.value.reason
        assert declined.value.metadata.get("failure_code") == "card_declined"
    assert _calls(served) == calls  # replayed, never tried again


async def test_a_replica_that_stops_finishes_the_sagas_it_started_before_closing_its_connections(
    settings, customer_id
) -> None:
    """A graceful stop (a deploy) must not leave sagas half-way for recovery to find minutes later: the
    detached sagas outlive their callers, so the stop waits for them before closing the pools."""
    gateways = fake_gateways()
    holder: dict[str, Container] = {}

    async def boot(s: Settings, stack: AsyncExitStack):  # type: ignore[no-untyped-def]
        holder["c"] = await build(s, stack, gateways, retry=RetryPolicy(attempts=2, initial_seconds=0.001))
        return holder["c"].app

    served = SimpleNamespace(
        container=None, pricing=gateways.pricing, inventory=gateways.inventory, promotion=gateways.promotion,
        payment=gateways.payment, order=gateways.order,
    )  # fmt: skip
    async with running_service(boot, settings, "127.0.0.1:0", run_workers=False):
        served.container = holder["c"]
        caller = Caller(customer_id)
        session = await _ready(served, caller)
        faults.configure("checkout.confirm.before_capture=delay:1#1")
        saga = asyncio.ensure_future(_confirm(served, caller, session, unique("key")))
        await asyncio.sleep(0.3)
        assert not saga.done()
    # The replica has stopped: the saga it had started is over, not waiting for recovery.
    assert saga.done()
    assert saga.result().order_status == OrderStatus.CONFIRMED
    engine = create_engine(settings.database_url, pool_size=1, application_name="kassa-checkout-test")
    try:
        async with engine.connect() as conn:
            status = (
                await conn.execute(
                    sa.select(checkout_sessions.c.status).where(checkout_sessions.c.session_id == session.session_id)
                )
            ).scalar()
    finally:
        await engine.dispose()
    assert status == SessionStatus.COMPLETED.value
