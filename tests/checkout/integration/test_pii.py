"""A checkout session's personal data is encrypted at rest (issue 10 §5): its email, notes and addresses, and the
copies its saga state keeps, are tokens in the table and plain values to the use cases; sessions written
before the encryption are encrypted by migration 0005."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from helpers import scratch_database, unique

from checkout.model.cart import Cart, CartItem
from checkout.model.catalog import Address, AuthorizeRequest, OrderDraft, OrderLine
from checkout.model.session import SagaState, SagaStep, Session, SessionLine
from infra.config import Settings
from infra.migrate import alembic_config
from infra.pii import PiiCipher, PiiKey, is_token
from kernel.money import Money
from tests.checkout.sessions import begin_confirm, create_session

pytestmark = pytest.mark.integration

WAREHOUSE = Address("WH", "1 Depot Rd", "", "Reno", "NV", "89501", "US", "")  # a business's, not a person's


class Personal:
    def __init__(self) -> None:
        self.marker = uuid.uuid4().hex
        self.email = f"pii-{self.marker}@example.com"
        self.notes = f"gate {self.marker}"
        self.shipping = Address(f"Ada {self.marker}", f"{self.marker} Secret St", "", "Reno", "NV", "89501", "US",
                                "+1 775 010 4477")  # fmt: skip
        self.billing = Address("Ada", f"{self.marker} Billing Rd", "", "Reno", "NV", "89501", "US", "+1 775 010 9988")

    def needles(self) -> tuple[str, ...]:
        return (self.marker, "010 4477", "010 9988")


def _draft(session: Session, who: Personal) -> OrderDraft:
    return OrderDraft(
        checkout_session_id=session.session_id, customer_id=session.customer_id, email=who.email,
        currency_code="USD", lines=[OrderLine("SKU-1", "One", 2, 500, "wh-1", "standard")], discounts=[],
        subtotal_minor=1000, discount_minor=0, shipping_minor=0, tax_minor=0, grand_total_minor=1000,
        shipping_address=who.shipping, billing_address=who.billing, shipping_method="standard", payment_id="pay-1",
        payment_method="tok_visa", notes=who.notes, authorized_minor=1000,
    )  # fmt: skip


_ROW = sa.text("SELECT * FROM checkout.checkout_sessions WHERE session_id = :s")
_OLD_SESSION = sa.text(
    "INSERT INTO checkout.checkout_sessions (session_id, cart_id, customer_id, status, currency_code, email,"
    " shipping_address, billing_address, notes, lines, expires_at, saga_state) VALUES (:s, :c, 'cust-1', :status,"
    " 'USD', :email, CAST(:ship AS jsonb), NULL, :notes, '[]', now(), CAST(:saga AS jsonb))"
)
_ALL_AS_TEXT = sa.text("SELECT string_agg(row_to_json(s)::text, '|') FROM checkout.checkout_sessions s")


async def _stored(engine: Any, session_id: str) -> tuple[sa.Row[Any], str]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.text("SELECT * FROM checkout.checkout_sessions WHERE session_id = :s"), {"s": session_id}
            )
        ).one()
        text = (
            await conn.execute(
                sa.text("SELECT row_to_json(s)::text FROM checkout.checkout_sessions s WHERE session_id = :s"),
                {"s": session_id},
            )
        ).scalar_one()
    return row, text


async def test_session_and_saga_state_keep_personal_data_as_tokens_and_hand_it_back_plain(
    served: Any, settings: Settings
) -> None:
    uow, who = served.container.uow, Personal()
    async with uow.transaction() as tx:
        cart = await tx.carts.create(Cart(str(uuid.uuid4()), unique("cust"), "USD"))
        await tx.carts.upsert_item(cart.cart_id, CartItem("SKU-1", "One", 2, 500))
        session = await create_session(
            tx,
            Session(
                session_id=str(uuid.uuid4()), cart_id=cart.cart_id, customer_id=cart.customer_id, currency_code="USD",
                lines=[SessionLine("SKU-1", "One", 2, 500, "wh-1", WAREHOUSE)],
                expires_at=datetime.now(UTC) + timedelta(minutes=15),
            )
        )  # fmt: skip
    assert session is not None
    changes = {"email": who.email, "notes": who.notes, "shipping_address": who.shipping.to_dict(),
               "billing_address": who.billing.to_dict(), "shipping_method": "standard"}  # fmt: skip
    async with uow.transaction() as tx:
        updated = await tx.sessions.update_state(session.session_id, changes, None)
        started = await begin_confirm(tx, session.session_id, unique("key"), "fp")
    assert updated is not None and started is not None
    assert (updated.email, updated.notes) == (who.email, who.notes)
    assert (updated.shipping_address, updated.billing_address) == (who.shipping, who.billing)

    authorize = AuthorizeRequest("key", session.session_id, Money("USD", 1000), "tok_visa", cart.customer_id, who.email)
    state = SagaState(authorize=authorize, order_draft=_draft(session, who))
    async with uow.transaction() as tx:
        assert await tx.sessions.save_progress(
            session.session_id, SagaStep.CREATE_ORDER, state, attempt=started.saga_attempt
        )
    async with uow.read() as tx:
        read = await tx.sessions.get(session.session_id)
    assert read is not None
    assert (read.email, read.notes, read.shipping_address, read.billing_address) == (
        who.email, who.notes, who.shipping, who.billing,
    )  # fmt: skip
    assert read.saga_state.order_draft == state.order_draft and read.saga_state.authorize == authorize

    row, stored = await _stored(served.container.engine, session.session_id)
    assert not [needle for needle in who.needles() if needle in stored], stored
    assert all(is_token(v) for v in (row.email, row.notes, row.shipping_address, row.billing_address))
    draft = row.saga_state["order_draft"]
    assert all(is_token(draft[name]) for name in ("email", "notes", "shipping_address", "billing_address"))
    assert is_token(row.saga_state["authorize"]["customer_email"])
    assert settings.pii_cipher().decrypt_json(draft["shipping_address"])["phone"] == "+1 775 010 4477"  # type: ignore[index]

    async with uow.transaction() as tx:  # clearing an address stores nothing
        cleared = await tx.sessions.update_state(session.session_id, {"billing_address": None, "notes": ""}, None)
    assert cleared is None  # CONFIRMING: no longer open to changes, and nothing was written


# -- migration 0005 encrypts the sessions already there -------------------------------------------------------


def test_migration_0005_encrypts_existing_sessions_and_their_saga_state(settings: Settings) -> None:
    who = Personal()
    cipher = PiiCipher([PiiKey("m1", bytes(range(100, 132)))])
    draft = _draft(
        Session("00000000-0000-0000-0000-000000000001", "c", "cust-1", "USD", [], datetime.now(UTC)), who
    ).to_dict()
    saga = {"authorize": {"customer_email": who.email, "idempotency_key": "k"}, "order_draft": draft, "payment_id": "p"}
    cart_id, session_id, empty_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with scratch_database(str(settings.database_url)) as url:
        command.upgrade(alembic_config("checkout", url), "0004")
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("INSERT INTO checkout.carts (cart_id, customer_id, currency_code) "
                                     "VALUES (:c, 'cust-1', 'USD')"), {"c": cart_id})  # fmt: skip
                conn.execute(
                    _OLD_SESSION,
                    [
                        {"s": session_id, "c": cart_id, "status": "AWAITING_PAYMENT", "email": who.email,
                         "ship": json.dumps(who.shipping.to_dict()), "notes": who.notes, "saga": json.dumps(saga)},
                        {"s": empty_id, "c": cart_id, "status": "EXPIRED", "email": "", "ship": None, "notes": "",
                         "saga": "{}"},
                    ],
                )  # fmt: skip
            command.upgrade(alembic_config("checkout", url, pii=cipher), "0005")
            with engine.connect() as conn:
                rows = {str(r.session_id): r for r in conn.execute(sa.text("SELECT * FROM checkout.checkout_sessions"))}
                dumped = conn.execute(_ALL_AS_TEXT).scalar_one()
            assert not [n for n in who.needles() if n in dumped]
            sealed = rows[str(session_id)]
            assert cipher.decrypt(sealed.email) == who.email and cipher.decrypt(sealed.notes) == who.notes
            assert cipher.decrypt_json(sealed.shipping_address) == who.shipping.to_dict()
            assert cipher.decrypt(sealed.saga_state["authorize"]["customer_email"]) == who.email
            assert cipher.decrypt_json(sealed.saga_state["order_draft"]["billing_address"]) == who.billing.to_dict()
            assert sealed.saga_state["payment_id"] == "p"
            empty = rows[str(empty_id)]
            assert (empty.email, empty.notes, empty.shipping_address, empty.saga_state) == ("", "", None, {})

            command.downgrade(alembic_config("checkout", url, pii=cipher), "0004")
            with engine.connect() as conn:
                back = conn.execute(
                    sa.text("SELECT email, notes, shipping_address, saga_state FROM checkout.checkout_sessions "
                            "WHERE session_id = :s"), {"s": session_id},
                ).one()  # fmt: skip
            assert (back.email, back.notes, back.shipping_address) == (who.email, who.notes, who.shipping.to_dict())
            assert back.saga_state == saga
        finally:
            engine.dispose()
