"""The configured payment providers: which one takes a new authorization, and which one holds an intent."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from kernel.errors import Reason, Unavailable
from payment.biz.ports import PaymentProvider

__all__ = ["Providers", "provider_unavailable"]


def provider_unavailable(name: str, why: str) -> Unavailable:
    return Unavailable(
        f"payment provider {name} unavailable ({why}); retry later",
        reason=Reason.PAYMENT_PROVIDER_UNAVAILABLE,
        metadata={"provider": name},
    )


class Providers(Mapping[str, PaymentProvider]):
    """Providers by name, the primary first.

    New authorizations go to the first provider whose circuit breaker is closed (the primary
    unless it is failing); everything after that (capture, void, refund, refresh, webhooks) goes
    to the provider the payment row records, since only it holds the intent.
    """

    def __init__(self, providers: Sequence[PaymentProvider]) -> None:
        if not providers:
            raise ValueError("at least one payment provider is needed")
        self._ordered = list(providers)
        self._by_name = {p.name: p for p in providers}
        if len(self._by_name) != len(self._ordered):
            raise ValueError("payment provider names must be distinct")

    @property
    def primary(self) -> PaymentProvider:
        return self._ordered[0]

    def __getitem__(self, name: str) -> PaymentProvider:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._ordered)

    def for_authorization(self) -> PaymentProvider | None:
        """The first provider that is not failing fast, or None when every breaker is open."""
        return next((p for p in self._ordered if p.available()), None)

    def holding(self, name: str) -> PaymentProvider:
        """The provider a payment's intent lives at (UNAVAILABLE if it is no longer configured)."""
        provider = self._by_name.get(name)
        if provider is None:
            raise provider_unavailable(name, "not configured")
        return provider
