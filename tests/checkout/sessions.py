"""Sessions written the way the service writes them, for the integration tests of checkout's repositories."""

from __future__ import annotations

from typing import Any

from checkout.model.cart import CartStatus
from checkout.model.session import Session

__all__ = ["begin_confirm", "create_session"]


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
