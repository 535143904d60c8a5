"""The order's personal data is encrypted at rest (issue 10 §5): its row, its events and its errors hold none
of it in plain text, and orders written before the encryption are encrypted by migration 0003."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from alembic import command
from helpers import bearer, scratch_database, unique
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.config import Settings
from infra.migrate import alembic_config
from infra.pii import PiiCipher, PiiKey, is_token
from kassa.common.v1.address_pb2 import Address
from kassa.order.v1 import order_service_pb2 as pb
from kassa.order.v1.order_service_pb2_grpc import OrderServiceStub
from tests.order.integration.test_order_service import create_request

pytestmark = pytest.mark.integration


def _personal(marker: str) -> dict[str, Any]:
    return {
        "email": f"pii-{marker}@example.com",
        "notes": f"ring {marker} twice",
        "shipping_address": Address(
            name=f"Ada {marker}", line1=f"{marker} Secret Street", city="Springfield", postal_code="12345",
            country_code="US", phone="+1 555 010 4477",
        ),
        "billing_address": Address(
            name="Ada", line1=f"{marker} Billing Lane", city="Springfield", postal_code="12345", country_code="US",
            phone="+1 555 010 9988",
        ),
    }  # fmt: skip


async def _row_text(engine: AsyncEngine, order_id: str) -> tuple[sa.Row[Any], str]:
    """The order's row, and everything order stores about it (row, lines, history, outbox) as one text."""
    oid = uuid.UUID(order_id)
    async with engine.connect() as conn:
        row = (await conn.execute(sa.text("SELECT * FROM orders.orders WHERE order_id = :o"), {"o": oid})).one()
        text = (
            await conn.execute(
                sa.text(
                    "SELECT concat_ws('|', (SELECT row_to_json(o)::text FROM orders.orders o WHERE order_id = :o),"
                    " (SELECT string_agg(row_to_json(h)::text, '|') FROM orders.order_status_history h"
                    "  WHERE order_id = :o),"
                    " (SELECT string_agg(payload::text, '|') FROM orders.outbox WHERE aggregate_id = :s))"
                ),
                {"o": oid, "s": order_id},
            )
        ).scalar_one()
    return row, text


async def test_email_addresses_phones_and_notes_are_stored_encrypted_and_read_back_plain(
    *, stub: OrderServiceStub, service_token: str, customer_token: str, customer_id: str, engine: AsyncEngine,
    settings: Settings,
) -> None:  # fmt: skip
    marker = uuid.uuid4().hex
    personal = _personal(marker)
    request = create_request(unique("sess"), customer_id, **personal)
    created = (await stub.CreateOrder(request, metadata=bearer(service_token))).order
    await stub.CancelOrder(
        pb.CancelOrderRequest(order_id=created.order_id, reason="changed my mind"), metadata=bearer(customer_token)
    )

    read = (await stub.GetOrder(pb.GetOrderRequest(order_id=created.order_id), metadata=bearer(customer_token))).order
    listed = (await stub.ListOrders(pb.ListOrdersRequest(page_size=5), metadata=bearer(customer_token))).orders
    for order in (created, read, next(o for o in listed if o.order_id == created.order_id)):
        assert order.email == personal["email"] and order.notes == personal["notes"]
        assert order.shipping_address == personal["shipping_address"]
        assert order.billing_address == personal["billing_address"]

    row, stored = await _row_text(engine, created.order_id)
    for plain in (marker, "010 4477", "010 9988", "Secret Street", "Billing Lane"):
        assert plain not in stored
    cipher = settings.pii_cipher()
    assert all(is_token(v) for v in (row.email, row.notes, row.shipping_address, row.billing_address))
    assert cipher.decrypt(row.email) == personal["email"]
    assert cipher.decrypt_json(row.shipping_address)["phone"] == "+1 555 010 4477"  # type: ignore[index]


async def test_an_invalid_email_is_refused_without_echoing_it(
    stub: OrderServiceStub, service_token: str, customer_id: str
) -> None:
    bad = f"pii-{uuid.uuid4().hex}@@example.com"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CreateOrder(create_request(unique("sess"), customer_id, email=bad), metadata=bearer(service_token))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    local = bad.partition("@")[0]
    assert local not in (refused.value.details() or "")
    assert all(local not in str(value) for _, value in refused.value.trailing_metadata() or ())


# -- migration 0003 encrypts the orders already there ---------------------------------------------------------


_OLD_ORDER = """
INSERT INTO orders.orders (order_id, checkout_session_id, customer_id, email, status, currency_code, subtotal_minor,
    discount_total_minor, shipping_total_minor, tax_total_minor, grand_total_minor, shipping_address,
    billing_address, shipping_method, payment_method, notes)
VALUES (:order_id, :session, 'cust-1', :email, 'CONFIRMED', 'USD', 100, 0, 0, 0, 100, CAST(:shipping AS jsonb),
    CAST(:billing AS jsonb), 'standard', 'tok_visa', :notes)
"""


def test_migration_0003_encrypts_existing_orders_and_its_downgrade_decrypts_them(settings: Settings) -> None:
    marker = uuid.uuid4().hex
    shipping = f'{{"name": "Ada", "line1": "{marker} Secret Street", "country_code": "GB", "phone": "+44 1 2345"}}'
    old = {
        "order_id": uuid.uuid4(), "session": "s-old", "email": f"old-{marker}@example.com", "shipping": shipping,
        "billing": None, "notes": f"gate {marker}",
    }  # fmt: skip
    empty = {**old, "order_id": uuid.uuid4(), "session": "s-empty", "email": "", "notes": ""}
    cipher = PiiCipher([PiiKey("m1", b"\x07" * 16 + bytes(range(16)))])
    with scratch_database(str(settings.database_url)) as url:
        command.upgrade(alembic_config("order", url), "0002")
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(_OLD_ORDER), [old, empty])
            command.upgrade(alembic_config("order", url, pii=cipher), "head")
            with engine.connect() as conn:
                rows = {r.order_id: r for r in conn.execute(sa.text("SELECT * FROM orders.orders"))}
                dumped = conn.execute(sa.text("SELECT string_agg(row_to_json(o)::text, '|') FROM orders.orders o"))
                assert marker not in dumped.scalar_one()
            encrypted = rows[old["order_id"]]
            assert cipher.decrypt(encrypted.email) == old["email"] and cipher.decrypt(encrypted.notes) == old["notes"]
            assert cipher.decrypt_json(encrypted.shipping_address)["line1"] == f"{marker} Secret Street"  # type: ignore[index]
            assert encrypted.billing_address is None
            assert (rows[empty["order_id"]].email, rows[empty["order_id"]].notes) == ("", "")

            command.downgrade(alembic_config("order", url, pii=cipher), "0002")
            with engine.connect() as conn:
                back = conn.execute(
                    sa.text("SELECT email, notes, shipping_address FROM orders.orders WHERE order_id = :o"),
                    {"o": old["order_id"]},
                ).one()
            assert (back.email, back.notes) == (old["email"], old["notes"])
            assert back.shipping_address["line1"] == f"{marker} Secret Street"
        finally:
            engine.dispose()
