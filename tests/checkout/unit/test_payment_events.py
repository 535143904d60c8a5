"""PaymentCompletion.on_payment, each branch (issue 11: no redelivery for an event the running saga holds).

A saga is paused right before one of its calls to a neighbour (a gate on the fake), so an event arrives while
the session is CONFIRMING with exactly the state the saga persisted by then; the saga is then let go and the
event's outcome is checked against how the checkout ended (DESIGN.md §4.2, §4.3).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import pytest

from checkout.biz.checkout.complete_payment import NotYet, PaymentCompletion, saga_holds
from checkout.biz.checkout.settle import Settlement
from checkout.biz.ports import Gateways, SessionPayment
from checkout.model.catalog import AuthorizeRequest, OrderStatus, PaymentStatus
from checkout.model.session import ConfirmResult, SagaStep, Session, SessionStatus
from kernel.errors import FailedPrecondition, Reason
from tests.checkout.sessions import hold_before

pytestmark = pytest.mark.unit

S = PaymentStatus


@dataclass
class Paused:
    """A ConfirmCheckout held right before ``gateway.method``: let it go with :meth:`resume`."""

    task: asyncio.Task[ConfirmResult]
    release: asyncio.Event

    async def resume(self) -> ConfirmResult:
        self.release.set()
        return await self.task

    async def resume_failing(self) -> BaseException:
        self.release.set()
        with pytest.raises(Exception) as err:
            await self.task
        return err.value


async def _paused(world: Any, session: Session, gateway: Any, method: str) -> Paused:
    reached, release = hold_before(gateway, method)
    task = asyncio.ensure_future(world.confirm_session(session))
    await asyncio.wait_for(reached.wait(), 5)
    return Paused(task, release)


def _stored(world: Any, sid: str) -> Session:
    return world.uow.state.sessions[sid]


async def _raises_not_yet(call: Awaitable[str]) -> None:
    with pytest.raises(NotYet):
        await call


# --- the decision, on its own ---------------------------------------------------------------


def _seen(payment_id: str = "p-1", status: S | None = S.AUTHORIZED, step: SagaStep = SagaStep.CREATE_ORDER):
    return SessionPayment(SessionStatus.CONFIRMING, step, payment_id, status)


@pytest.mark.parametrize(
    ("seen", "event", "order_id", "holds"),
    [
        (_seen(), S.AUTHORIZED, "", True),  # the authorization the saga got itself
        (_seen(), S.CAPTURED, "o-1", True),  # step 8's own capture, for its order
        (_seen(), S.VOIDED, "", True),  # no success: nothing to do after any end the saga can reach
        (_seen(), S.CAPTURED, "", False),  # captured at the provider behind the saga's back
        (_seen(""), S.AUTHORIZED, "", False),  # the authorize call's answer not persisted yet
        (_seen("p-2"), S.AUTHORIZED, "", False),  # another payment
        (_seen(status=S.REQUIRES_ACTION), S.AUTHORIZED, "", False),  # 3-D Secure waits for this very event
        (_seen(status=S.PENDING), S.AUTHORIZED, "", False),  # the authorize call went unanswered
        (_seen(status=S.DECLINED), S.AUTHORIZED, "", False),
        (_seen(status=None), S.AUTHORIZED, "", False),
        (_seen(step=SagaStep.COMPENSATING), S.AUTHORIZED, "", False),  # an undo under way
        (_seen(step=SagaStep.COMPENSATING), S.CAPTURED, "o-1", False),
    ],
)
def test_what_the_running_saga_holds(seen: SessionPayment, event: S, order_id: str, holds: bool) -> None:
    assert saga_holds(seen, "p-1", event, order_id=order_id) is holds
    assert not saga_holds(seen, "", event, order_id=order_id)  # an event naming no payment never


# --- CONFIRMING ---------------------------------------------------------------------------


async def test_a_plain_card_checkouts_own_events_are_acknowledged_at_once_on_a_narrow_read(world) -> None:
    """Both events of a card checkout arrive while its saga runs: neither waits for it, neither reads the session."""
    session = await world.ready_session()
    sid = session.session_id
    paused = await _paused(world, session, world.order, "record_payment")  # captured, telling the order
    pid = _stored(world, sid).saga_state.payment_id
    order_id = world.order.orders[sid]["order_id"]
    world.uow.state.session_reads.clear()

    assert await world.completion.on_payment(sid, pid, S.AUTHORIZED) == "the saga holds it"
    assert await world.completion.on_payment(sid, pid, S.CAPTURED, order_id=order_id) == "the saga holds it"
    assert world.uow.state.session_reads == {"get_payment": 2}

    result = await paused.resume()
    assert (result.order_status, result.payment_status) == (OrderStatus.CONFIRMED, S.CAPTURED)
    assert world.payment.payments[pid]["captures"] == 1
    assert (world.payment.count("void"), world.payment.count("refund")) == (0, 0)
    # Heard again after the end (what the redelivery did before), they change nothing either.
    assert await world.completion.on_payment(sid, pid, S.AUTHORIZED) == "nothing to do"
    assert await world.completion.on_payment(sid, pid, S.CAPTURED, order_id=order_id) == "nothing to do"


async def test_an_acknowledged_authorization_is_voided_by_the_saga_when_it_fails(world) -> None:
    """DESIGN.md §4.3: the event the saga held is dropped, and the saga's own failure path lets the money go."""
    session = await world.ready_session()
    sid = session.session_id
    world.order.fail["create_order"] = FailedPrecondition("the order refused", reason=Reason.PAYMENT_AMOUNT_MISMATCH)
    paused = await _paused(world, session, world.order, "create_order")
    pid = _stored(world, sid).saga_state.payment_id

    assert await world.completion.on_payment(sid, pid, S.AUTHORIZED) == "the saga holds it"

    await paused.resume_failing()
    assert _stored(world, sid).status is SessionStatus.CANCELLED
    assert [args[0] for name, args in world.payment.calls if name == "void"] == [pid]
    assert world.payment.payments[pid]["status"] is S.VOIDED


async def test_before_the_authorization_is_persisted_the_event_waits(world) -> None:
    session = await world.ready_session()
    sid = session.session_id
    paused = await _paused(world, session, world.payment, "authorize")
    assert _stored(world, sid).saga_step is SagaStep.AUTHORIZE_PAYMENT

    await _raises_not_yet(world.completion.on_payment(sid, "p-unknown", S.AUTHORIZED))

    await paused.resume()
    pid = _stored(world, sid).saga_state.payment_id
    assert await world.completion.on_payment(sid, pid, S.AUTHORIZED) == "nothing to do"


async def test_another_payments_event_waits_for_the_saga_and_is_given_back_after_it(world) -> None:
    session = await world.ready_session()
    sid = session.session_id
    world.order.fail["create_order"] = FailedPrecondition("the order refused", reason=Reason.PAYMENT_AMOUNT_MISMATCH)
    paused = await _paused(world, session, world.order, "create_order")
    another = AuthorizeRequest("another-key", sid, session.preview.grand_total, "tok_visa", session.customer_id, "")
    stray = (await world.payment.authorize(another)).payment_id

    await _raises_not_yet(world.completion.on_payment(sid, stray, S.AUTHORIZED))

    await paused.resume_failing()
    assert await world.completion.on_payment(sid, stray, S.AUTHORIZED) == "late authorization voided"
    assert world.payment.payments[stray]["status"] is S.VOIDED


async def test_three_d_secure_events_wait_for_the_saga_then_complete_the_checkout(world) -> None:
    session = await world.ready_session(payment_method="tok_threeDSecure")
    sid = session.session_id
    paused = await _paused(world, session, world.inventory, "extend_reservations")  # step 8, awaiting payment
    pid = _stored(world, sid).saga_state.payment_id
    assert _stored(world, sid).saga_state.payment_status is S.REQUIRES_ACTION
    world.payment.complete_action(pid)  # the customer authenticated before the saga answered

    await _raises_not_yet(world.completion.on_payment(sid, pid, S.AUTHORIZED))

    assert (await paused.resume()).order_status == OrderStatus.PENDING_PAYMENT
    world.uow.state.session_reads.clear()
    assert await world.completion.on_payment(sid, pid, S.AUTHORIZED) == f"order {OrderStatus.CONFIRMED}"
    assert world.uow.state.session_reads == {"get_payment": 1, "get": 1}
    assert _stored(world, sid).status is SessionStatus.COMPLETED
    assert world.payment.payments[pid]["captures"] == 1


async def test_a_capture_behind_the_sagas_back_waits_and_is_refunded_when_the_saga_fails(world) -> None:
    """Why a capture must name its order to be acknowledged: the saga's failure voids, and a captured payment
    needs the refund the redelivery makes after the end (DESIGN.md §4.3)."""
    session = await world.ready_session()
    sid = session.session_id
    world.inventory.fail["confirm_reservations"] = FailedPrecondition("lapsed", reason=Reason.SESSION_EXPIRED)
    paused = await _paused(world, session, world.inventory, "confirm_reservations")
    pid = _stored(world, sid).saga_state.payment_id
    world.payment.payments[pid]["status"] = S.CAPTURED  # the provider captured it on its own

    await _raises_not_yet(world.completion.on_payment(sid, pid, S.CAPTURED))

    result = await paused.resume()
    assert result.order_status == OrderStatus.PAYMENT_FAILED
    assert _stored(world, sid).status is SessionStatus.CANCELLED
    assert world.payment.payments[pid]["status"] is S.CAPTURED  # the saga's void could not give it back
    assert await world.completion.on_payment(sid, pid, S.CAPTURED) == "late capture refunded"
    assert world.payment.payments[pid]["status"] is S.REFUNDED


async def test_while_an_undo_is_under_way_every_event_waits(world) -> None:
    session = await world.ready_session()
    sid = session.session_id
    world.order.fail["create_order"] = FailedPrecondition("the order refused", reason=Reason.PAYMENT_AMOUNT_MISMATCH)
    paused = await _paused(world, session, world.inventory, "release_reservations")  # voided, releasing
    assert _stored(world, sid).saga_step is SagaStep.COMPENSATING
    pid = _stored(world, sid).saga_state.payment_id

    await _raises_not_yet(world.completion.on_payment(sid, pid, S.AUTHORIZED))
    await _raises_not_yet(world.completion.on_payment(sid, pid, S.CAPTURED, order_id="o-1"))

    await paused.resume_failing()


# --- after the saga ---------------------------------------------------------------------


async def _awaiting(world: Any) -> tuple[str, str]:
    session = await world.ready_session(payment_method="tok_threeDSecure")
    await world.confirm_session(session)
    stored = _stored(world, session.session_id)
    assert stored.status is SessionStatus.AWAITING_PAYMENT
    return session.session_id, stored.saga_state.payment_id


async def test_awaiting_payment_a_success_completes_the_checkout(world) -> None:
    sid, pid = await _awaiting(world)
    world.payment.complete_action(pid)
    assert await world.completion.on_payment(sid, pid, S.AUTHORIZED) == f"order {OrderStatus.CONFIRMED}"
    assert _stored(world, sid).status is SessionStatus.COMPLETED
    assert world.payment.payments[pid]["status"] is S.CAPTURED
    # A second delivery of it finds the checkout done.
    assert await world.completion.on_payment(sid, pid, S.AUTHORIZED) == "nothing to do"
    assert world.payment.payments[pid]["captures"] == 1


async def test_awaiting_payment_a_failure_fails_the_checkout(world) -> None:
    sid, pid = await _awaiting(world)
    world.payment.complete_action(pid, succeeded=False)
    outcome = await world.completion.on_payment(sid, pid, S.FAILED)
    assert outcome == "payment failed: order failed, stock and coupons released"
    assert _stored(world, sid).status is SessionStatus.CANCELLED
    assert world.inventory.held[sid].status == "RELEASED"


async def test_awaiting_payment_another_payments_event_is_ignored_without_reading_the_session(world) -> None:
    sid, _pid = await _awaiting(world)
    world.uow.state.session_reads.clear()
    assert await world.completion.on_payment(sid, "p-other", S.AUTHORIZED) == "another payment"
    assert await world.completion.on_payment(sid, "", S.REQUIRES_ACTION) == "still waiting"
    assert world.uow.state.session_reads == {"get_payment": 2}
    assert _stored(world, sid).status is SessionStatus.AWAITING_PAYMENT


async def test_an_ended_session_gives_back_any_success_of_another_payment(world) -> None:
    session = await world.ready_session(payment_method="tok_chargeDeclined")
    sid = session.session_id
    with pytest.raises(FailedPrecondition):
        await world.confirm_session(session)
    assert _stored(world, sid).status is SessionStatus.CANCELLED
    other = world.payment.payments
    other["p-late-auth"] = {
        "status": S.AUTHORIZED,
        "amount": session.preview.grand_total,
        "order_id": "",
        "captures": 0,
    }
    other["p-late-cap"] = {"status": S.CAPTURED, "amount": session.preview.grand_total, "order_id": "", "captures": 1}
    world.uow.state.session_reads.clear()

    # Heard by the process whose saga ended the session: decided on what it remembers, without a read.
    assert await world.completion.on_payment(sid, "p-late-auth", S.AUTHORIZED) == "late authorization voided"
    assert await world.completion.on_payment(sid, "p-late-cap", S.CAPTURED) == "late capture refunded"
    assert await world.completion.on_payment(sid, "p-late-auth", S.VOIDED) == "nothing to do"
    assert world.uow.state.session_reads == {}
    assert (other["p-late-auth"]["status"], other["p-late-cap"]["status"]) == (S.VOIDED, S.REFUNDED)

    # Heard by another replica, which reads the session: the same answers (the void and the refund are idempotent).
    replica = _replica(world)
    assert await replica.on_payment(sid, "p-late-auth", S.AUTHORIZED) == "late authorization voided"
    assert await replica.on_payment(sid, "p-late-cap", S.CAPTURED) == "late capture refunded"
    assert await replica.on_payment(sid, "p-late-auth", S.VOIDED) == "nothing to do"
    assert world.uow.state.session_reads == {"get_payment": 3}


def _replica(world) -> PaymentCompletion:
    """The payment-event handler of another replica: it remembers no session ended."""
    gateways = Gateways(world.pricing, world.inventory, world.promotion, world.payment, world.order)
    settlement = Settlement(world.uow, gateways, world.compensator, world.policy)
    return PaymentCompletion(world.uow, gateways, settlement, world.compensator, world.policy)


async def test_events_after_the_end_of_a_saga_this_process_ran_read_nothing(world) -> None:
    """A card checkout's two events usually come after its saga ended COMPLETED (a status no session leaves): the
    process that ended it acknowledges them without reading the session; another replica reads it, as before."""
    session = await world.ready_session()
    sid = session.session_id
    result = await world.confirm_session(session)
    pid = _stored(world, sid).saga_state.payment_id
    world.uow.state.session_reads.clear()

    for completion in (world.completion, _replica(world)):
        assert await completion.on_payment(sid, pid, S.AUTHORIZED) == "nothing to do"
        assert await completion.on_payment(sid, pid, S.CAPTURED, order_id=result.order_id) == "nothing to do"
    assert world.uow.state.session_reads == {"get_payment": 2}  # the replica's two narrow reads only
    assert world.payment.payments[pid]["captures"] == 1
    assert (world.payment.count("void"), world.payment.count("refund")) == (0, 0)
    assert _stored(world, sid).status is SessionStatus.COMPLETED


async def test_an_unknown_session(world) -> None:
    assert await world.completion.on_payment("no-such-session", "p-1", S.AUTHORIZED) == "no such session"
