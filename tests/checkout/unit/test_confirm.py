"""The ConfirmCheckout saga with fake neighbours: happy paths, refusals, compensations, idempotency."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from checkout.biz.checkout.confirm import authorize_key
from checkout.biz.checkout.replay import Replays
from checkout.model.cart import CartStatus
from checkout.model.catalog import OrderStatus, PaymentStatus
from checkout.model.compensation import Operation
from checkout.model.session import SagaStep, SessionStatus
from checkout.service.validation import check_confirm_checkout
from infra.pb import money_to_pb
from kassa.checkout.v1 import checkout_service_pb2 as pb
from kernel.caller import Caller
from kernel.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Reason,
    Unavailable,
)
from kernel.money import Money

pytestmark = pytest.mark.unit


def _session(world, sid):
    return world.uow.state.sessions[sid]


def _cart_status(world, session):
    return world.uow.state.carts[session.cart_id].status


async def test_card_happy_path_captures_once_confirms_everything_and_converts_the_cart(world) -> None:
    world.promotion.add("SAVE10", 10)
    session = await world.ready_session(codes=("SAVE10",))
    result = await world.confirm_session(session)

    assert result.order_status == OrderStatus.CONFIRMED
    assert result.payment_status == PaymentStatus.CAPTURED
    assert result.grand_total_minor == session.preview.grand_total_minor
    assert result.next_action_url == ""
    (authorize,) = [args[0] for name, args in world.payment.calls if name == "authorize"]
    assert authorize.idempotency_key == authorize_key(session.session_id)
    assert authorize.amount == session.preview.grand_total
    assert authorize.order_ref == session.session_id
    assert world.payment.count("capture") == 1
    assert world.inventory.held[session.session_id].status == "CONFIRMED"
    assert world.inventory.stock["SKU-1"] == 0
    assert world.promotion.reserved_for(session.session_id) == {"SAVE10": "CONFIRMED"}
    (draft,) = [args[0] for name, args in world.order.calls if name == "create_order"]
    assert draft.checkout_session_id == session.session_id
    assert draft.discounts == [("SAVE10", 200)]
    assert [(ln.sku, ln.quantity, ln.warehouse_id) for ln in draft.lines] == [("SKU-1", 2, "wh-1")]
    stored = _session(world, session.session_id)
    assert stored.status is SessionStatus.COMPLETED
    assert stored.order_id == result.order_id
    assert stored.result == result
    assert _cart_status(world, session) is CartStatus.CONVERTED
    assert world.uow.event_types() == ["CartConverted", "CheckoutCompleted"]
    assert json.loads(world.store.results[f"{world.customer.subject}:key-1"])["result"]["order_id"] == result.order_id
    assert world.store.locks == {}
    assert world.uow.compensations() == []


async def test_a_confirm_is_two_round_trips_to_redis_and_a_replay_one(world) -> None:
    """Redis is asked once for a cached answer or else the lock, and told once to cache the answer and release
    the lock; a replay finds the answer in its one call and takes no lock."""
    session = await world.ready_session()
    world.store.calls = 0
    first = await world.confirm_session(session)
    assert world.store.calls == 2
    assert world.store.locks == {} and f"{world.customer.subject}:key-1" in world.store.results

    world.store.calls = 0
    assert await world.confirm_session(session) == first
    assert world.store.calls == 1 and world.store.locks == {}

    # Refused at steps 2-3 (a changed price): nothing is kept or cached, the lock is released in the second call.
    again = await world.ready_session()
    world.pricing.add("SKU-1", 1100)
    world.store.calls = 0
    with pytest.raises(Aborted):
        await world.confirm_session(again, key="key-2")
    assert world.store.calls == 2
    assert world.store.locks == {} and f"{world.customer.subject}:key-2" not in world.store.results


async def test_cash_on_delivery_confirms_the_order_without_a_capture(world) -> None:
    session = await world.ready_session(payment_method="cod")
    result = await world.confirm_session(session)
    assert result.order_status == OrderStatus.AWAITING_SHIPMENT
    assert result.payment_status == PaymentStatus.CASH_ON_DELIVERY
    assert world.payment.count("capture") == 0
    assert world.inventory.held[session.session_id].status == "CONFIRMED"
    assert _cart_status(world, session) is CartStatus.CONVERTED


async def test_three_d_secure_stops_at_pending_payment_with_the_action_url(world) -> None:
    session = await world.ready_session(payment_method="tok_threeDSecure")
    result = await world.confirm_session(session)
    assert result.order_status == OrderStatus.PENDING_PAYMENT
    assert result.payment_status == PaymentStatus.REQUIRES_ACTION
    assert result.next_action_url.startswith("https://sandbox.test/3ds/")
    assert world.payment.count("capture") == 0
    stored = _session(world, session.session_id)
    assert stored.status is SessionStatus.AWAITING_PAYMENT
    assert stored.result == result
    # stock held over the payment window, coupon reserved but not used up, cart still held
    assert ("extend_reservations", (session.session_id, world.policy.payment_window_seconds)) in world.inventory.calls
    assert world.inventory.held[session.session_id].status == "ACTIVE"
    assert world.promotion.count("confirm_usage") == 0
    assert _cart_status(world, session) is CartStatus.CHECKOUT


async def test_a_three_d_secure_request_keeps_its_first_answer_after_the_payment_completes(world) -> None:
    """The key's answer is the one ConfirmCheckout gave (pending, with the action URL), as payment APIs replay
    theirs; the completion that ends the session later keeps nothing over it."""
    session = await world.ready_session(payment_method="tok_threeDSecure")
    first = await world.confirm_session(session)
    stored = _session(world, session.session_id)
    assert stored.confirm_fingerprint is None  # answered: the await-payment write kept the answer
    world.payment.payments[stored.saga_state.payment_id]["status"] = PaymentStatus.AUTHORIZED
    await world.completion.on_payment(session.session_id, stored.saga_state.payment_id, PaymentStatus.AUTHORIZED)
    assert _session(world, session.session_id).status is SessionStatus.COMPLETED

    kept = world.uow.state.confirm_records[(world.customer.subject, "key-1")]
    assert kept.result == first
    world.store.results.clear()
    assert await world.confirm_session(session) == first


async def test_a_decline_releases_stock_and_coupon_and_leaves_the_cart_usable(world) -> None:
    world.promotion.add("SAVE10", 10)
    session = await world.ready_session(payment_method="tok_chargeDeclined", codes=("SAVE10",))
    with pytest.raises(FailedPrecondition) as err:
        await world.confirm_session(session)
    assert err.value.reason == Reason.PAYMENT_DECLINED
    assert world.inventory.held[session.session_id].status == "RELEASED"
    assert world.promotion.reserved_for(session.session_id) == {}
    assert world.promotion.count("release_usage") == 1
    assert world.payment.count("void") == 0  # nothing was held
    assert world.order.orders == {}
    stored = _session(world, session.session_id)
    assert stored.status is SessionStatus.CANCELLED
    assert "declined" in stored.last_error
    assert _cart_status(world, session) is CartStatus.ACTIVE
    assert world.store.locks == {}
    # the customer can start again at once
    again, _ = await world.start(world.customer, session.cart_id)
    assert again.session_id != session.session_id


async def test_price_changed_touches_nothing_and_reopens_the_session(world) -> None:
    session = await world.ready_session()
    assert world.recent_sessions.recall(world.customer, session.session_id) is not None
    world.pricing.add("SKU-1", 1100)
    with pytest.raises(Aborted) as err:
        await world.confirm_session(session)
    # The saga wrote the session (reopened it): the copy UpdateCheckoutState kept is dropped, so the next call
    # reads the session rather than try a write that can no longer match.
    assert world.recent_sessions.recall(world.customer, session.session_id) is None
    assert err.value.reason == Reason.PRICE_CHANGED
    assert err.value.metadata["expected"] == str(session.preview.grand_total_minor)
    assert int(err.value.metadata["actual"]) > session.preview.grand_total_minor
    for gateway, method in (
        (world.promotion, "reserve_usage"),
        (world.inventory, "extend_reservations"),
        (world.payment, "authorize"),
        (world.order, "create_order"),
    ):
        assert gateway.count(method) == 0, method
    stored = _session(world, session.session_id)
    assert stored.status is SessionStatus.OPEN
    assert stored.preview.grand_total_minor == int(err.value.metadata["actual"])
    assert world.inventory.held[session.session_id].status == "ACTIVE"
    # confirming with the new total (and the same key) now works
    result = await world.confirm(world.customer, session.session_id, "key-1", stored.preview.grand_total)
    assert result.order_status == OrderStatus.CONFIRMED


async def test_a_promotion_changed_while_confirming_stays_the_answer_to_its_key(world) -> None:
    """The coupon's discount moved between step 3 and its reservation: the session reopens and the key's answer,
    PRICE_CHANGED, is kept with it. A repeat gets it again even when Redis lost it — the reopened session
    doesn't let the durable guard start a second saga under a key that has its answer (it did)."""
    world.promotion.add("SAVE10", 10)
    session = await world.ready_session(codes=("SAVE10",))
    reserve = world.promotion.reserve_usage

    async def moved(*args, **kwargs):  # type: ignore[no-untyped-def]
        world.promotion.percent["SAVE10"] = 20
        return await reserve(*args, **kwargs)

    world.promotion.reserve_usage = moved
    with pytest.raises(Aborted) as first:
        await world.confirm_session(session)
    assert first.value.reason == Reason.PRICE_CHANGED
    stored = _session(world, session.session_id)
    assert stored.status is SessionStatus.OPEN and stored.confirm_fingerprint is None
    assert world.promotion.reserved_for(session.session_id) == {}
    world.promotion.reserve_usage = reserve
    world.promotion.percent["SAVE10"] = 10

    world.store.results.clear()
    with pytest.raises(Aborted) as again:
        await world.confirm_session(session)
    assert (again.value.reason, again.value.metadata) == (Reason.PRICE_CHANGED, first.value.metadata)
    assert world.payment.count("authorize") == 0
    # A new key is a new request, and goes through.
    assert (await world.confirm_session(session, key="key-2")).order_status == OrderStatus.CONFIRMED


async def test_order_creation_failure_voids_and_releases_everything(world) -> None:
    world.promotion.add("SAVE10", 10)
    session = await world.ready_session(codes=("SAVE10",))
    world.order.fail["create_order"] = InvalidArgument("totals", "do not add up")
    with pytest.raises(InvalidArgument):
        await world.confirm_session(session)
    assert [p for p in world.payment.statuses()] == [PaymentStatus.VOIDED]
    assert world.inventory.held[session.session_id].status == "RELEASED"
    assert world.promotion.reserved_for(session.session_id) == {}
    assert _session(world, session.session_id).status is SessionStatus.CANCELLED
    assert _cart_status(world, session) is CartStatus.ACTIVE
    assert world.uow.compensations() == []


async def test_a_failing_compensation_is_queued_never_dropped(world) -> None:
    session = await world.ready_session()
    world.order.fail["create_order"] = InvalidArgument("totals", "do not add up")
    world.inventory.fail["release_reservations"] = Unavailable("warehouse down")
    with pytest.raises(InvalidArgument):
        await world.confirm_session(session)
    (queued,) = world.uow.compensations()
    assert queued.operation is Operation.RELEASE_RESERVATIONS
    assert queued.payload["reservation_ref"] == session.session_id
    assert queued.session_id == session.session_id
    assert world.payment.statuses() == [PaymentStatus.VOIDED]
    assert _session(world, session.session_id).status is SessionStatus.CANCELLED


async def test_an_unanswered_create_order_is_finished_by_recovery_not_compensated(world) -> None:
    session = await world.ready_session()
    world.order.fail["create_order"] = Unavailable("order service timed out")
    with pytest.raises(Unavailable):
        await world.confirm_session(session)
    stuck = _session(world, session.session_id)
    # Nothing undone while the order may exist: payment still authorized, stock still held.
    assert stuck.status is SessionStatus.CONFIRMING
    assert world.payment.statuses() == [PaymentStatus.AUTHORIZED]
    assert world.inventory.held[session.session_id].status == "ACTIVE"
    assert world.uow.compensations() == []
    with pytest.raises(Aborted) as err:
        await world.confirm_session(session)
    assert err.value.reason == "CHECKOUT_IN_PROGRESS"

    del world.order.fail["create_order"]
    stuck.confirm_started_at = datetime.now(UTC) - timedelta(minutes=5)
    world.uow.state.sessions[session.session_id].confirm_started_at = stuck.confirm_started_at
    assert await world.recovery.recover_one(session.session_id)
    done = _session(world, session.session_id)
    assert done.status is SessionStatus.COMPLETED
    assert len(world.order.orders) == 1
    assert world.payment.statuses() == [PaymentStatus.CAPTURED]
    assert world.inventory.held[session.session_id].status == "CONFIRMED"
    assert _cart_status(world, session) is CartStatus.CONVERTED


async def test_a_repeat_returns_the_same_order_and_authorizes_once(world) -> None:
    session = await world.ready_session()
    first = await world.confirm_session(session)
    second = await world.confirm_session(session)
    assert second == first
    world.store.results.clear()  # Redis lost its cache: the durable copy answers
    third = await world.confirm_session(session)
    assert third == first
    assert world.payment.count("authorize") == 1
    assert world.order.count("create_order") == 1
    assert world.payment.count("capture") == 1


async def test_a_double_click_makes_one_order(world) -> None:
    session = await world.ready_session()
    outcomes = await asyncio.gather(
        world.confirm_session(session), world.confirm_session(session), return_exceptions=True
    )
    results = [o for o in outcomes if not isinstance(o, BaseException)]
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert results
    assert all(isinstance(e, Aborted) and e.reason == Reason.CHECKOUT_IN_PROGRESS for e in errors)
    assert len({r.order_id for r in results}) == 1
    assert world.payment.count("authorize") == 1
    assert len(world.order.orders) == 1


async def test_a_key_reused_for_another_session_is_refused(world) -> None:
    first = await world.ready_session((("SKU-1", 1),))
    await world.confirm_session(first, key="shared")
    second = await world.ready_session((("SKU-2", 1),))
    with pytest.raises(AlreadyExists) as err:
        await world.confirm_session(second, key="shared")
    assert err.value.reason == Reason.IDEMPOTENCY_KEY_REUSED
    world.store.results.clear()  # the durable guard refuses it too
    with pytest.raises(AlreadyExists) as err:
        await world.confirm_session(second, key="shared")
    assert err.value.reason == Reason.IDEMPOTENCY_KEY_REUSED
    assert _session(world, second.session_id).status is SessionStatus.OPEN
    assert world.payment.count("authorize") == 1


async def test_a_completed_session_refuses_a_new_key_with_its_order_id(world) -> None:
    session = await world.ready_session()
    result = await world.confirm_session(session, key="k1")
    with pytest.raises(FailedPrecondition) as err:
        await world.confirm_session(session, key="k2")
    assert err.value.reason == Reason.SESSION_NOT_OPEN
    assert err.value.metadata["order_id"] == result.order_id


async def test_input_is_validated_before_anything_happens(world) -> None:
    session = await world.ready_session()
    cases = [
        (dict(key=""), "idempotency_key"),
        (dict(key="k" * 256), "idempotency_key"),
        (dict(expected=None), "expected_grand_total"),
        (dict(expected=Money("EUR", 1)), "expected_grand_total.currency_code"),
        (dict(session_id="nope"), "session_id"),
    ]
    for overrides, field in cases:
        args = {"session_id": session.session_id, "key": "k", "expected": session.preview.grand_total, **overrides}
        request = pb.ConfirmCheckoutRequest(session_id=args["session_id"], idempotency_key=args["key"])
        if args["expected"] is not None:
            request.expected_grand_total.CopyFrom(money_to_pb(args["expected"]))
        with pytest.raises(InvalidArgument) as err:  # as CheckoutServiceServicer runs it: the checks, then the use case
            session_id = check_confirm_checkout(request)
            await world.confirm(world.customer, session_id, request.idempotency_key, args["expected"])
        assert err.value.field == field
    with pytest.raises(InvalidArgument) as err:
        await world.confirm(world.customer, session.session_id, "k", Money("EUR", 1))
    assert err.value.reason == Reason.CURRENCY_MISMATCH
    with pytest.raises(NotFound):
        await world.confirm(Caller("cust-mallory"), session.session_id, "k", session.preview.grand_total)
    assert world.payment.calls == []
    assert _session(world, session.session_id).status is SessionStatus.OPEN


async def test_missing_session_fields_are_named_and_the_session_reopens(world) -> None:
    from checkout.biz.checkout.update_state import StateUpdate

    session = await world.ready_session()
    session = await world.state.update(
        world.customer,
        session.session_id,
        StateUpdate(payment_method=""),
    )
    with pytest.raises(InvalidArgument) as err:
        await world.confirm_session(session)
    assert err.value.field == "payment_method"
    assert _session(world, session.session_id).status is SessionStatus.OPEN
    assert _session(world, session.session_id).idempotency_key is None  # refused before the guard wrote anything


async def test_below_the_minimum_order_is_refused(world_with) -> None:
    world = world_with(min_order_minor=10_000)
    session = await world.ready_session()
    with pytest.raises(FailedPrecondition) as err:
        await world.confirm_session(session)
    assert err.value.reason == Reason.BELOW_MINIMUM_ORDER
    assert _session(world, session.session_id).status is SessionStatus.OPEN
    assert world.payment.calls == []


async def test_a_refused_capture_fails_the_order_and_lets_everything_go(world) -> None:
    session = await world.ready_session()
    world.payment.fail["capture"] = FailedPrecondition("authorization expired", reason=Reason.PAYMENT_DECLINED)
    result = await world.confirm_session(session)
    assert result.order_status == OrderStatus.PAYMENT_FAILED
    assert result.payment_status == PaymentStatus.VOIDED
    (order,) = world.order.orders.values()
    assert order["status"] is OrderStatus.PAYMENT_FAILED  # its OrderPaymentFailed event restocks the units
    assert world.payment.statuses() == [PaymentStatus.VOIDED]
    assert _cart_status(world, session) is CartStatus.ACTIVE
    assert _session(world, session.session_id).status is SessionStatus.CANCELLED


async def test_stock_is_secured_before_money_is_taken(world) -> None:
    session = await world.ready_session()
    stock_at_capture: list[str] = []
    capture = world.payment.capture

    async def watched_capture(payment_id: str, order_id: str):  # type: ignore[no-untyped-def]
        stock_at_capture.append(world.inventory.held[session.session_id].status)
        return await capture(payment_id, order_id)

    world.payment.capture = watched_capture
    await world.confirm_session(session)
    assert stock_at_capture == ["CONFIRMED"]


async def test_units_no_longer_held_are_never_captured(world) -> None:
    world.promotion.add("SAVE10", 10)
    session = await world.ready_session(codes=("SAVE10",))
    # the reservations lapsed (an outage longer than their TTL): the warehouse refuses to confirm them
    world.inventory.fail["confirm_reservations"] = FailedPrecondition("reservations expired")
    result = await world.confirm_session(session)
    assert world.payment.count("capture") == 0
    assert world.payment.statuses() == [PaymentStatus.VOIDED]
    assert result.order_status == OrderStatus.PAYMENT_FAILED
    (order,) = world.order.orders.values()
    assert order["status"] is OrderStatus.PAYMENT_FAILED
    assert world.promotion.reserved_for(session.session_id) == {}
    assert _session(world, session.session_id).status is SessionStatus.CANCELLED
    assert _cart_status(world, session) is CartStatus.ACTIVE


async def test_a_warehouse_outage_at_settlement_takes_no_money_and_recovery_finishes_later(world) -> None:
    session = await world.ready_session()
    world.inventory.fail["confirm_reservations"] = Unavailable("warehouse down")
    with pytest.raises(Unavailable):
        await world.confirm_session(session)
    assert world.payment.count("capture") == 0
    stored = _session(world, session.session_id)
    assert stored.status is SessionStatus.CONFIRMING and stored.saga_step is SagaStep.SETTLE_PAYMENT
    world.inventory.fail.clear()
    stored.confirm_started_at = datetime.now(UTC) - timedelta(minutes=5)
    assert await world.recovery.run_once() == 1
    assert world.payment.statuses() == [PaymentStatus.CAPTURED]
    assert _session(world, session.session_id).status is SessionStatus.COMPLETED
    # the client's repeat of its request now gets the result, not CHECKOUT_IN_PROGRESS
    again = await world.confirm_session(session)
    assert again.order_status == OrderStatus.CONFIRMED


async def test_post_order_steps_that_keep_failing_go_to_the_dlq_and_the_order_stands(world) -> None:
    world.promotion.add("SAVE10", 10)
    session = await world.ready_session(codes=("SAVE10",))
    world.payment.fail["capture"] = Unavailable("payment down")
    world.promotion.fail["confirm_usage"] = Unavailable("promotion down")
    result = await world.confirm_session(session)
    assert result.order_status == OrderStatus.PENDING_PAYMENT
    assert result.payment_status == PaymentStatus.AUTHORIZED
    assert {c.operation for c in world.uow.compensations()} == {Operation.CAPTURE_PAYMENT, Operation.CONFIRM_PROMOTION}
    assert world.inventory.held[session.session_id].status == "CONFIRMED"
    assert _session(world, session.session_id).status is SessionStatus.COMPLETED
    assert _cart_status(world, session) is CartStatus.CONVERTED
    # the DLQ worker finishes the job once the neighbours are back
    world.payment.fail.clear()
    world.promotion.fail.clear()
    for c in world.uow.compensations():
        world.uow.state.compensations[c.id] = replace(c, next_attempt_at=datetime.now(UTC))
    assert await world.drain.run_once() == 2
    assert world.uow.compensations() == []
    assert world.payment.statuses() == [PaymentStatus.CAPTURED]
    (order,) = world.order.orders.values()
    assert order["status"] is OrderStatus.CONFIRMED
    assert world.promotion.reserved_for(session.session_id) == {"SAVE10": "CONFIRMED"}


async def test_an_expired_session_cannot_be_confirmed_and_start_reserves_again(world) -> None:
    session = await world.ready_session()
    _session(world, session.session_id).expires_at = datetime.now(UTC) - timedelta(seconds=1)
    with pytest.raises(FailedPrecondition) as err:
        await world.confirm_session(session)
    assert err.value.reason == "SESSION_EXPIRED"
    assert world.payment.count("authorize") == 0
    assert world.order.orders == {}

    again, _ = await world.start(world.customer, session.cart_id)
    assert again.session_id != session.session_id
    assert again.status is SessionStatus.OPEN
    assert _session(world, session.session_id).status is SessionStatus.EXPIRED
    assert world.inventory.held[again.session_id].status == "ACTIVE"
    assert world.inventory.held[session.session_id].status != "ACTIVE"


async def test_a_repeat_after_an_outage_was_compensated_gets_the_same_answer(world) -> None:
    """An unanswered authorization was voided and the session cancelled before answering: that request can never
    succeed, so it is told ABORTED (start checkout again: nothing was charged), not UNAVAILABLE, which a client
    would retry with the same key until it gave up. A repeat with its key gets that answer again (same status,
    reason and message), not SESSION_NOT_OPEN."""
    session = await world.ready_session()
    world.payment.fail["authorize"] = Unavailable(
        "the payment provider is unavailable", reason=Reason.PAYMENT_PROVIDER_UNAVAILABLE
    )
    with pytest.raises(Aborted) as first:
        await world.confirm_session(session)
    assert first.value.reason == Reason.PAYMENT_PROVIDER_UNAVAILABLE
    assert "nothing was charged" in first.value.message and "start checkout again" in first.value.message.lower()
    assert _session(world, session.session_id).status is SessionStatus.CANCELLED
    assert _cart_status(world, session) is CartStatus.ACTIVE
    assert world.payment.count("void_by_key") == 1  # undone before answering
    world.payment.fail.clear()
    for forget_cache in (False, True):
        if forget_cache:
            world.store.results.clear()  # the durable copy answers
        with pytest.raises(Aborted) as again:
            await world.confirm_session(session)
        assert (again.value.reason, again.value.message) == (Reason.PAYMENT_PROVIDER_UNAVAILABLE, first.value.message)
    assert world.payment.count("authorize") == 2  # the first request's two attempts; no repeat authorized again


async def test_reservations_taken_moments_ago_are_not_extended_but_ones_near_their_end_are(world) -> None:
    """Step 5 costs a warehouse call only when the stock might not be held for the rest of the saga."""
    fresh = await world.ready_session()
    assert (await world.confirm_session(fresh)).order_status == OrderStatus.CONFIRMED
    assert world.inventory.count("extend_reservations") == 0

    late = await world.ready_session()
    # Started long ago: less than half of confirm_ttl_seconds is left on its reservations.
    left = world.policy.confirm_ttl_seconds / 2 - 1
    _session(world, late.session_id).expires_at = datetime.now(UTC) + timedelta(seconds=left)
    assert (await world.confirm_session(late, key="key-2")).order_status == OrderStatus.CONFIRMED
    assert (
        world.inventory.calls.count(("extend_reservations", (late.session_id, world.policy.confirm_ttl_seconds))) == 1
    )


async def test_an_answer_that_cannot_be_encoded_still_releases_the_lock(world, monkeypatch) -> None:
    """Caching the answer in Redis is best effort; releasing the lock is not: a failed encoding ends the request
    with no answer cached, and the lock released (a repeat then finds the answer Postgres keeps)."""

    def broken(record: object) -> bytes:
        raise ValueError("cannot encode")

    monkeypatch.setattr(Replays, "encode", staticmethod(broken))
    session = await world.ready_session()
    result = await world.confirm_session(session)
    assert world.store.locks == {}
    assert world.store.results == {}
    monkeypatch.undo()
    assert await world.confirm_session(session) == result  # replayed from Postgres
