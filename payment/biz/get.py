"""GetPayment."""

from __future__ import annotations

import uuid

from payment.biz.common import load
from payment.biz.ports import PaymentRepo
from payment.model.payment import Payment

__all__ = ["get_payment"]


async def get_payment(repo: PaymentRepo, payment_id: uuid.UUID) -> Payment:
    """Read one payment (privileged callers only, enforced by the servicer): no invariant at stake."""
    return await load(repo, payment_id)
