"""UpdateCheckoutState: every field validated by name before anything is stored; a preview commits nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import field_mask_pb2

from checkout.biz.checkout.update_state import StateUpdate
from checkout.model.catalog import Address
from checkout.service.checkout_service import state_update
from checkout.service.validation import check_state_update
from kassa.checkout.v1 import checkout_service_pb2 as pb
from kassa.common.v1 import address_pb2
from kernel.caller import Caller
from kernel.errors import FailedPrecondition, InvalidArgument, NotFound, Reason

pytestmark = pytest.mark.unit

GOOD = Address("Ada", "1 Main St", "", "Springfield", "", "12345", "US", "")


@pytest.mark.parametrize(
    ("update", "field"),
    [
        (StateUpdate(payment_method="4242 4242 4242 4242"), "payment_method"),
        (StateUpdate(payment_method="4242424242424242"), "payment_method"),
        (StateUpdate(payment_method="visa"), "payment_method"),
        (StateUpdate(email="not-an-email"), "email"),
        (
            StateUpdate(shipping_address=Address("Ada", "1 Main", "", "X", "", "1", "usa", "")),
            "shipping_address.country_code",
        ),
        (StateUpdate(shipping_address=Address("", "1 Main", "", "X", "", "1", "US", "")), "shipping_address.name"),
        (StateUpdate(billing_address=Address("Ada", "", "", "X", "", "1", "US", "")), "billing_address.line1"),
        (StateUpdate(shipping_method="drone"), "shipping_method"),
        (StateUpdate(promotion_codes=["A", "B", "C", "D", "E", "F"]), "promotion_codes"),
        (StateUpdate(promotion_codes=["OK", "bad code!"]), "promotion_codes[1]"),
        (StateUpdate(notes="x" * 501), "notes"),
        # What Postgres can't store (NUL) or a field must not hold (control characters, a line break).
        (StateUpdate(email="ada\x00@example.com"), "email"),
        (
            StateUpdate(shipping_address=Address("Ada\x00", "1 Main", "", "X", "", "1", "US", "")),
            "shipping_address.name",
        ),
        (
            StateUpdate(shipping_address=Address("Ada", "1 Main", "", "X", "", "1", "US\n", "")),
            "shipping_address.country_code",
        ),
        (
            StateUpdate(billing_address=Address("Ada", "1 Main", "\x1b[2J", "X", "", "1", "US", "")),
            "billing_address.line2",
        ),
        (
            StateUpdate(billing_address=Address("Ada", "1 Main", "", "X", "", "1", "US", "+1\u2028555")),
            "billing_address.phone",
        ),
        (StateUpdate(notes="ring\x00twice"), "notes"),
        (StateUpdate(promotion_codes=["OK", "²³"]), "promotion_codes[1]"),
        (StateUpdate(payment_method="tok_" + "a" * 300), "payment_method"),
    ],
)
async def test_bad_fields_are_named_and_nothing_is_stored(world, update: StateUpdate, field: str) -> None:
    session = await world.ready_session()
    with pytest.raises(InvalidArgument) as err:  # as CheckoutServiceServicer runs it: the checks, then the use case
        await world.state.update(world.customer, session.session_id, check_state_update(update))
    assert err.value.field == field
    stored = await world.state.get(world.customer, session.session_id)
    assert (stored.payment_method, stored.email, stored.shipping_method) == ("tok_visa", "ada@example.com", "standard")


async def test_notes_may_span_lines(world) -> None:
    session = await world.ready_session()
    updated = await world.state.update(
        world.customer, session.session_id, StateUpdate(notes="ring twice\r\n\tthen knock")
    )
    assert updated.notes == "ring twice\r\n\tthen knock"


async def test_card_numbers_are_refused_with_the_token_hint(world) -> None:
    session = await world.ready_session()
    with pytest.raises(InvalidArgument) as err:
        await world.state.update(
            world.customer, session.session_id, check_state_update(StateUpdate(payment_method="4111111111111111"))
        )
    assert "never a card number" in err.value.message


async def test_update_stores_and_returns_a_preview(world) -> None:
    world.promotion.add("SAVE10", 10)
    session = await world.ready_session((("SKU-1", 2),), codes=("save10", "BOGUS"))
    assert session.promotion_codes == ["SAVE10", "BOGUS"]
    preview = session.preview
    assert preview is not None
    assert preview.subtotal_minor == 2000
    assert preview.discount_minor == 200
    assert preview.shipping_minor == 500
    assert preview.tax_minor == (2000 - 200 + 500) // 10
    assert preview.grand_total_minor == 2000 - 200 + 500 + preview.tax_minor
    assert [d.code for d in preview.discounts] == ["SAVE10"]
    assert [r[0] for r in preview.rejected] == ["BOGUS"]
    assert world.promotion.count("reserve_usage") == 0
    assert world.inventory.count("extend_reservations") == 0


async def test_only_the_owner_may_read_or_change_a_session(world) -> None:
    session = await world.ready_session()
    mallory = Caller("cust-mallory")
    with pytest.raises(NotFound):
        await world.state.get(mallory, session.session_id)
    with pytest.raises(NotFound):
        await world.state.update(mallory, session.session_id, StateUpdate(notes="hi"))
    with pytest.raises(NotFound):
        await world.state.preview(mallory, session.session_id)


async def test_an_expired_session_cannot_change(world) -> None:
    session = await world.ready_session()
    world.uow.state.sessions[session.session_id].expires_at = datetime.now(UTC) - timedelta(seconds=1)
    with pytest.raises(FailedPrecondition) as err:
        await world.state.update(world.customer, session.session_id, StateUpdate(notes="late"))
    assert err.value.reason == Reason.SESSION_EXPIRED


def test_without_a_mask_only_set_fields_replace() -> None:
    update = state_update(pb.UpdateCheckoutStateRequest(session_id="s", email="a@b.co", notes=""))
    assert update.email == "a@b.co"
    assert update.notes is None
    assert update.shipping_address is None
    assert not update.clear_shipping_address


def test_with_a_mask_listed_fields_replace_even_when_empty() -> None:
    request = pb.UpdateCheckoutStateRequest(
        session_id="s",
        email="a@b.co",
        shipping_address=address_pb2.Address(name="Ada"),
        update_mask=field_mask_pb2.FieldMask(paths=["notes", "billing_address"]),
    )
    update = state_update(request)
    assert update.notes == ""
    assert update.clear_billing_address
    assert update.email is None
    assert update.shipping_address is None
    with pytest.raises(InvalidArgument) as err:
        state_update(pb.UpdateCheckoutStateRequest(update_mask=field_mask_pb2.FieldMask(paths=["customer_id"])))
    assert err.value.field == "update_mask.paths[0]"
