"""The payment poll worker: asks the provider about sessions awaiting payment that no webhook completed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from checkout.biz.checkout.complete_payment import PaymentCompletion
from infra.worker import every

__all__ = ["payment_poll_worker"]


def payment_poll_worker(completion: PaymentCompletion, interval_seconds: float = 10.0) -> Callable[[], Awaitable[None]]:
    return every("payment-poll", interval_seconds, completion.poll_once)
