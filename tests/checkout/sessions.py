"""Sessions written the way the service writes them, for the tests of checkout's repositories, and a saga held
at one of its calls (``hold_before``)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from helpers import unique

from checkout.model.cart import Cart, CartItem, CartStatus
from checkout.model.session import Address, Session, SessionLine

__all__ = ["begin_confirm", "create_session", "hold_before", "new_session"]


async def new_session(tx: Any, origin: Address, *, minutes: int = 15) -> Session:
    """A new customer's cart of one line (2 x SKU-1 at 5.00 from ``origin``) and an open session for it, ending
    ``minutes`` from now (a negative number: already overdue)."""
    cart = await tx.carts.create(Cart(str(uuid.uuid4()), unique("cust"), "USD"))
    await tx.carts.upsert_item(cart.cart_id, CartItem("SKU-1", "One", 2, 500))
    session = Session(
        session_id=str(uuid.uuid4()),
        cart_id=cart.cart_id,
        customer_id=cart.customer_id,
        currency_code="USD",
        lines=[SessionLine("SKU-1", "One", 2, 500, "wh-1", origin)],
        expires_at=datetime.now(UTC) + timedelta(minutes=minutes),
    )
    await create_session(tx, session)
    return session


async def create_session(tx: Any, session: Session) -> Session | None:
    """The session, created as StartCheckout creates it: with its cart's move to CHECKOUT (None: a live one)."""
    cart = await tx.carts.get_head(session.cart_id)
    _moved, created = await tx.sessions.create_holding_cart(
        session, {CartStatus.ACTIVE, CartStatus.CHECKOUT}, version=cart.version
    )
    return created


async def begin_confirm(tx: Any, session_id: str, key: str, fingerprint: str) -> Session | None:
    """ConfirmCheckout's durable guard (OPEN -> CONFIRMING), as the service takes it; None if it did not apply."""
    begun = await tx.sessions.begin_confirm_with_cart(session_id, key, fingerprint)
    return None if begun is None else begun[0]


def hold_before(gateway: Any, method: str) -> tuple[asyncio.Event, asyncio.Event]:
    """Make ``gateway.method`` wait when called: the first event is set once a call reached it, which goes on
    to the real method once the second is set."""
    reached, release = asyncio.Event(), asyncio.Event()
    real = getattr(gateway, method)

    async def held(*args: Any, **kwargs: Any) -> Any:
        reached.set()
        await release.wait()
        return await real(*args, **kwargs)

    setattr(gateway, method, held)
    return reached, release
