"""What every adapter shares: deadline, credentials, error translation, one transport retry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import duration_pb2

from checkout.biz.retry import RetryPolicy, retrying
from checkout.model.catalog import Address
from infra.channels import ServiceCredentials, call_metadata
from infra.errors import Unavailable
from infra.grpc_errors import to_domain_error
from infra.money import Money
from kassa.common.v1 import address_pb2, money_pb2

__all__ = ["GrpcClient", "address_from_pb", "address_to_pb", "duration", "money_from_pb", "money_to_pb"]

R = TypeVar("R")

# Only a refused connection is retried here (the request never reached the server); business
# level retries of idempotent steps are the saga's.
_TRANSPORT_RETRY = RetryPolicy(attempts=2, initial_seconds=0.05, max_seconds=0.2)


class _NotDelivered(Unavailable):
    pass


class GrpcClient:
    def __init__(self, creds: ServiceCredentials, timeout_seconds: float) -> None:
        self._creds = creds
        self._timeout = timeout_seconds

    async def _call(self, rpc: Callable[..., Awaitable[R]], request: Any) -> R:
        async def once() -> R:
            try:
                return await rpc(request, timeout=self._timeout, metadata=call_metadata(self._creds))
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.UNAVAILABLE and not exc.trailing_metadata():
                    raise _NotDelivered(f"dependency unavailable: {exc.details()}") from exc
                raise to_domain_error(exc) from exc

        try:
            return await retrying(_TRANSPORT_RETRY, once, retry_on=_NotDelivered)
        except _NotDelivered as exc:
            raise Unavailable(exc.message) from None


def money_to_pb(money: Money) -> money_pb2.Money:
    return money_pb2.Money(currency_code=money.currency_code, amount_minor=money.amount_minor)


def money_from_pb(pb: money_pb2.Money, default_currency: str = "") -> Money:
    return Money(pb.currency_code or default_currency, pb.amount_minor)


def address_to_pb(address: Address) -> address_pb2.Address:
    return address_pb2.Address(**address.to_dict())


def address_from_pb(pb: address_pb2.Address) -> Address:
    return Address(
        name=pb.name, line1=pb.line1, line2=pb.line2, city=pb.city, region=pb.region,
        postal_code=pb.postal_code, country_code=pb.country_code, phone=pb.phone,
    )  # fmt: skip


def duration(seconds: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds)
