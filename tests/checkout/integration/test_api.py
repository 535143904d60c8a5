"""CartService and CheckoutService over gRPC, on real Postgres/Redis/NATS, with fake neighbours."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import sqlalchemy as sa
from helpers import bearer, unique

from checkout.data.tables import outbox
from infra.auth import mint_token
from infra.grpc_errors import error_info, retry_delay
from kassa.checkout.v1 import cart_pb2, cart_service_pb2, cart_service_pb2_grpc, checkout_pb2
from kassa.checkout.v1 import checkout_service_pb2 as co
from kassa.checkout.v1 import checkout_service_pb2_grpc as co_grpc
from kassa.common.v1 import address_pb2, money_pb2
from kassa.order.v1 import order_pb2
from kassa.payment.v1 import payment_pb2
from kernel.errors import Reason, Unavailable

_CREATE_CART = "/kassa.checkout.v1.CartService/CreateCart"

pytestmark = pytest.mark.integration

ADDRESS = address_pb2.Address(
    name="Ada Lovelace", line1="12 Analytical St", city="London", postal_code="N1 9GU", country_code="GB"
)


async def _fail(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


def _stubs(served):
    return cart_service_pb2_grpc.CartServiceStub(served.channel), co_grpc.CheckoutServiceStub(served.channel)


async def _cart(served, md, items: dict[str, int], price: int = 1000) -> cart_pb2.Cart:
    carts, _ = _stubs(served)
    cart = (await carts.CreateCart(cart_service_pb2.CreateCartRequest(currency_code="USD"), metadata=md)).cart
    for sku, quantity in items.items():
        served.pricing.add(sku, price)
        served.inventory.stock[sku] = served.inventory.stock.get(sku, 0) + quantity
        req = cart_service_pb2.AddCartItemRequest(cart_id=cart.cart_id, sku=sku, quantity=quantity)
        cart = (await carts.AddCartItem(req, metadata=md)).cart
    return cart


async def _ready_session(served, md, payment_method: str = "tok_visa") -> checkout_pb2.CheckoutSession:
    _, checkout = _stubs(served)
    cart = await _cart(served, md, {unique("SKU"): 2})
    started = await checkout.StartCheckout(co.StartCheckoutRequest(cart_id=cart.cart_id), metadata=md)
    update = co.UpdateCheckoutStateRequest(
        session_id=started.session.session_id,
        email="ada@example.com",
        shipping_address=ADDRESS,
        shipping_method="standard",
        payment_method=payment_method,
    )
    return (await checkout.UpdateCheckoutState(update, metadata=md)).session


def _confirm(session: checkout_pb2.CheckoutSession, key: str) -> co.ConfirmCheckoutRequest:
    return co.ConfirmCheckoutRequest(
        session_id=session.session_id, idempotency_key=key, expected_grand_total=session.preview.grand_total
    )


async def test_cart_crud_validation_and_ownership(served, customer_token, settings, admin_token) -> None:
    carts, _ = _stubs(served)
    md = bearer(customer_token)
    sku = unique("SKU")
    cart = await _cart(served, md, {sku: 2}, price=1999)
    assert cart.status == cart_pb2.CART_STATUS_ACTIVE
    assert [(i.sku, i.quantity, i.line_total.amount_minor) for i in cart.items] == [(sku, 2, 3998)]
    assert cart.subtotal == money_pb2.Money(currency_code="USD", amount_minor=3998)

    for quantity in (0, 10**9):
        err = await _fail(
            carts.AddCartItem(
                cart_service_pb2.AddCartItemRequest(cart_id=cart.cart_id, sku=sku, quantity=quantity), metadata=md
            )
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(err).metadata["field"] == "quantity"
    err = await _fail(
        carts.AddCartItem(
            cart_service_pb2.AddCartItemRequest(cart_id=cart.cart_id, sku="NOPE", quantity=1), metadata=md
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err).metadata["field"] == "sku"

    updated = await carts.UpdateCartItem(
        cart_service_pb2.UpdateCartItemRequest(cart_id=cart.cart_id, sku=sku, quantity=5), metadata=md
    )
    assert updated.cart.items[0].quantity == 5
    got = await carts.GetCart(cart_service_pb2.GetCartRequest(cart_id=cart.cart_id), metadata=md)
    assert got.cart.subtotal.amount_minor == 5 * 1999

    other = bearer(mint_token(settings.jwt_secret, unique("cust")))
    err = await _fail(carts.GetCart(cart_service_pb2.GetCartRequest(cart_id=cart.cart_id), metadata=other))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = await _fail(
        carts.RemoveCartItem(cart_service_pb2.RemoveCartItemRequest(cart_id=cart.cart_id, sku=sku), metadata=other)
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    admin = await carts.GetCart(cart_service_pb2.GetCartRequest(cart_id=cart.cart_id), metadata=bearer(admin_token))
    assert admin.cart.cart_id == cart.cart_id
    removed = await carts.RemoveCartItem(
        cart_service_pb2.RemoveCartItemRequest(cart_id=cart.cart_id, sku=sku), metadata=md
    )
    assert list(removed.cart.items) == []
    err = await _fail(carts.GetCart(cart_service_pb2.GetCartRequest(cart_id=cart.cart_id)))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_checkout_happy_path_and_idempotent_repeat(served, customer_token, settings) -> None:
    _, checkout = _stubs(served)
    md = bearer(customer_token)
    session = await _ready_session(served, md)
    assert session.status == checkout_pb2.SESSION_STATUS_OPEN
    assert session.lines[0].warehouse_id == "wh-1"
    preview = await checkout.PreviewOrder(co.PreviewOrderRequest(session_id=session.session_id), metadata=md)
    assert preview.preview == session.preview
    assert preview.preview.grand_total.amount_minor == 2000 + 500 + 250

    key = unique("key")
    first = await checkout.ConfirmCheckout(_confirm(session, key), metadata=md)
    assert first.order_status == order_pb2.ORDER_STATUS_CONFIRMED
    assert first.payment_status == payment_pb2.PAYMENT_STATUS_CAPTURED
    assert first.grand_total == session.preview.grand_total
    again = await checkout.ConfirmCheckout(_confirm(session, key), metadata=md)
    assert again == first
    assert served.payment.by_key[f"checkout:{session.session_id}:authorize"]
    assert sum(1 for n, a in served.payment.calls if n == "authorize" and a[0].order_ref == session.session_id) == 1

    got = await checkout.GetCheckoutSession(co.GetCheckoutSessionRequest(session_id=session.session_id), metadata=md)
    assert got.session.status == checkout_pb2.SESSION_STATUS_COMPLETED
    assert got.session.order_id == first.order_id
    async with served.container.engine.connect() as conn:
        events = (
            (
                await conn.execute(
                    sa.select(outbox.c.subject).where(outbox.c.aggregate_id.in_([session.session_id, session.cart_id]))
                )
            )
            .scalars()
            .all()
        )
    assert sorted(events) == ["kassa.checkout.CartConverted", "kassa.checkout.CheckoutCompleted"]

    other = bearer(mint_token(settings.jwt_secret, unique("cust")))
    err = await _fail(
        checkout.GetCheckoutSession(co.GetCheckoutSessionRequest(session_id=session.session_id), metadata=other)
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = await _fail(checkout.ConfirmCheckout(_confirm(session, key), metadata=other))
    assert err.code() == grpc.StatusCode.NOT_FOUND


async def test_a_card_number_is_refused_and_not_stored(served, customer_token) -> None:
    _, checkout = _stubs(served)
    md = bearer(customer_token)
    session = await _ready_session(served, md)
    err = await _fail(
        checkout.UpdateCheckoutState(
            co.UpdateCheckoutStateRequest(session_id=session.session_id, payment_method="4111 1111 1111 1111"),
            metadata=md,
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err).metadata["field"] == "payment_method"
    assert "never a card number" in err.details()
    got = await checkout.GetCheckoutSession(co.GetCheckoutSessionRequest(session_id=session.session_id), metadata=md)
    assert got.session.payment_method == "tok_visa"


async def test_a_double_click_places_one_order(served, customer_token) -> None:
    _, checkout = _stubs(served)
    md = bearer(customer_token)
    session = await _ready_session(served, md)
    key = unique("key")
    outcomes = await asyncio.gather(
        checkout.ConfirmCheckout(_confirm(session, key), metadata=md),
        checkout.ConfirmCheckout(_confirm(session, key), metadata=md),
        return_exceptions=True,
    )
    orders = {o.order_id for o in outcomes if isinstance(o, co.ConfirmCheckoutResponse)}
    assert len(orders) == 1
    for o in outcomes:
        if isinstance(o, grpc.aio.AioRpcError):
            assert o.code() == grpc.StatusCode.ABORTED
            assert error_info(o).reason == "CHECKOUT_IN_PROGRESS"
    assert (
        sum(1 for n, a in served.order.calls if n == "create_order" and a[0].checkout_session_id == session.session_id)
        == 1
    )


async def test_key_reuse_decline_and_price_change(served, customer_token) -> None:
    _, checkout = _stubs(served)
    md = bearer(customer_token)
    key = unique("key")
    first = await _ready_session(served, md)
    await checkout.ConfirmCheckout(_confirm(first, key), metadata=md)
    second = await _ready_session(served, md)
    err = await _fail(checkout.ConfirmCheckout(_confirm(second, key), metadata=md))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(err).reason == "IDEMPOTENCY_KEY_REUSED"

    served.pricing.add(second.lines[0].sku, 1234)
    err = await _fail(checkout.ConfirmCheckout(_confirm(second, unique("key")), metadata=md))
    assert err.code() == grpc.StatusCode.ABORTED
    assert error_info(err).reason == "PRICE_CHANGED"
    got = await checkout.GetCheckoutSession(co.GetCheckoutSessionRequest(session_id=second.session_id), metadata=md)
    assert got.session.status == checkout_pb2.SESSION_STATUS_OPEN

    declined = await _ready_session(served, md, payment_method="tok_chargeDeclined")
    err = await _fail(checkout.ConfirmCheckout(_confirm(declined, unique("key")), metadata=md))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(err).reason == "PAYMENT_DECLINED"
    carts, _ = _stubs(served)
    cart = await carts.GetCart(cart_service_pb2.GetCartRequest(cart_id=declined.cart_id), metadata=md)
    assert cart.cart.status == cart_pb2.CART_STATUS_ACTIVE
    assert served.inventory.held[declined.session_id].status == "RELEASED"


async def test_an_outage_checkout_undid_is_aborted_start_again_for_every_repeat(served, customer_token) -> None:
    """The provider didn't answer the authorization; checkout voided it by its key and cancelled the session
    before answering. UNAVAILABLE would send a well-behaved client round the same key until it gave up; ABORTED
    says: this request is over, nothing was charged, start checkout again (REST: 409)."""
    _, checkout = _stubs(served)
    md = bearer(customer_token)
    session = await _ready_session(served, md)
    key = unique("key")
    served.payment.fail["authorize"] = Unavailable(
        "the payment provider is unavailable", reason=Reason.PAYMENT_PROVIDER_UNAVAILABLE
    )
    try:
        first = await _fail(checkout.ConfirmCheckout(_confirm(session, key), metadata=md))
    finally:
        served.reset_failures()
    assert first.code() == grpc.StatusCode.ABORTED, first.details()
    assert error_info(first).reason == "PAYMENT_PROVIDER_UNAVAILABLE"
    assert "nothing was charged" in first.details() and "Start checkout again" in first.details()
    again = await _fail(checkout.ConfirmCheckout(_confirm(session, key), metadata=md))
    assert (again.code(), again.details(), error_info(again).reason) == (
        first.code(),
        first.details(),
        "PAYMENT_PROVIDER_UNAVAILABLE",
    )
    got = await checkout.GetCheckoutSession(co.GetCheckoutSessionRequest(session_id=session.session_id), metadata=md)
    assert got.session.status == checkout_pb2.SESSION_STATUS_CANCELLED

    # Starting again on the same cart is what goes through.
    started = await checkout.StartCheckout(co.StartCheckoutRequest(cart_id=session.cart_id), metadata=md)
    update = co.UpdateCheckoutStateRequest(
        session_id=started.session.session_id, email="ada@example.com", shipping_address=ADDRESS,
        shipping_method="standard", payment_method="tok_visa",
    )  # fmt: skip
    restarted = (await checkout.UpdateCheckoutState(update, metadata=md)).session
    placed = await checkout.ConfirmCheckout(_confirm(restarted, unique("key")), metadata=md)
    assert placed.order_status == order_pb2.ORDER_STATUS_CONFIRMED


async def test_cart_changes_answer_what_a_fresh_read_returns(served, customer_token) -> None:
    """Add/update/remove build their answer without reading the cart back; it must match a read."""
    carts, _ = _stubs(served)
    md = bearer(customer_token)
    a, b, c = (unique(f"SKU-{x}") for x in "ZAM")  # names out of alphabetical order: order is by time added
    cart = await _cart(served, md, {a: 1, b: 2})
    served.pricing.add(c, 500)
    served.inventory.stock[c] = 5

    async def read() -> cart_pb2.Cart:
        return (await carts.GetCart(cart_service_pb2.GetCartRequest(cart_id=cart.cart_id), metadata=md)).cart

    add, update, remove = (
        cart_service_pb2.AddCartItemRequest, cart_service_pb2.UpdateCartItemRequest,
        cart_service_pb2.RemoveCartItemRequest,
    )  # fmt: skip
    steps = [
        (carts.AddCartItem, add(cart_id=cart.cart_id, sku=c, quantity=3), [(a, 1), (b, 2), (c, 3)]),
        (carts.AddCartItem, add(cart_id=cart.cart_id, sku=a, quantity=2), [(a, 3), (b, 2), (c, 3)]),
        (carts.UpdateCartItem, update(cart_id=cart.cart_id, sku=b, quantity=7), [(a, 3), (b, 7), (c, 3)]),
        (carts.RemoveCartItem, remove(cart_id=cart.cart_id, sku=a), [(b, 7), (c, 3)]),
    ]
    for call, request, lines in steps:
        answered = (await call(request, metadata=md)).cart
        assert [(i.sku, i.quantity) for i in answered.items] == lines
        assert answered == await read()


async def test_at_capacity_a_new_cart_waits_is_refused_when_the_queue_stands_and_work_under_way_goes_on(
    served, customer_token
) -> None:
    """The mesh's edge holds new checkouts in a queue when full and turns them away (UNAVAILABLE with a
    retry delay) only once waits stayed above the target for an interval while the queue grew; the ones
    under way pass."""
    carts, _ = _stubs(served)
    md = bearer(customer_token)
    cart = await _cart(served, md, {unique("SKU"): 1})
    gate = served.container.app.admission
    assert gate is not None and gate.policy.limit > 0
    policy = gate.policy
    gate.in_flight += policy.limit  # as if that many calls were running
    waiting: list[asyncio.Task[None]] = []
    try:
        waiting.append(asyncio.create_task(gate.acquire(_CREATE_CART)))  # a new cart waiting for a slot
        await asyncio.sleep(policy.target_s + 0.05)  # it waits past the target: the next arrival starts the interval
        waiting.append(asyncio.create_task(gate.acquire(_CREATE_CART)))
        waiting.append(asyncio.create_task(gate.acquire(_CREATE_CART)))  # the queue grows
        await asyncio.sleep(policy.interval_s + 0.05)  # still waiting a whole interval later: arrivals outrun it
        assert gate.waiting == 3
        err = await _fail(carts.CreateCart(cart_service_pb2.CreateCartRequest(currency_code="USD"), metadata=md))
        assert err.code() is grpc.StatusCode.UNAVAILABLE
        info = error_info(err)
        assert info.reason == "UNAVAILABLE" and info.metadata["why"] == "queue_delay"
        delay = retry_delay(err)
        assert delay is not None and delay >= 1
        got = await carts.GetCart(cart_service_pb2.GetCartRequest(cart_id=cart.cart_id), metadata=md)
        assert got.cart.cart_id == cart.cart_id
    finally:
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        gate.in_flight -= policy.limit
    assert gate.waiting == 0
    assert (await carts.CreateCart(cart_service_pb2.CreateCartRequest(currency_code="USD"), metadata=md)).cart.cart_id


@pytest.mark.parametrize(
    ("key", "total", "field"),
    [
        ("key\x00one", None, "idempotency_key"),
        ("key\x1bone", None, "idempotency_key"),
        ("k" * 256, None, "idempotency_key"),
        ("key-ok", money_pb2.Money(currency_code="USD", amount_minor=-1), "expected_grand_total.amount_minor"),
        ("key-ok", money_pb2.Money(currency_code="USD", amount_minor=2**63 - 1), "expected_grand_total.amount_minor"),
        ("key-ok", money_pb2.Money(currency_code="US\x00", amount_minor=100), "expected_grand_total.currency_code"),
    ],
)
async def test_confirm_refuses_a_hostile_key_or_total_by_name_before_anything(
    served, customer_token, key, total, field
) -> None:
    _, checkout = _stubs(served)
    md = bearer(customer_token)
    session = await _ready_session(served, md)
    request = _confirm(session, key)
    if total is not None:
        request.expected_grand_total.CopyFrom(total)
    payments = len(served.payment.payments)
    err = await _fail(checkout.ConfirmCheckout(request, metadata=md))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert error_info(err).metadata["field"] == field
    got = await checkout.GetCheckoutSession(co.GetCheckoutSessionRequest(session_id=session.session_id), metadata=md)
    assert got.session.status == checkout_pb2.SESSION_STATUS_OPEN
    assert len(served.payment.payments) == payments
