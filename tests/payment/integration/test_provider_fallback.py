"""Provider resilience against two real sandbox instances: the primary's breaker opens after repeated
failures, new authorizations go to the backup meanwhile, and the breaker closes once the primary is back."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time

import grpc
import pytest
from helpers import bearer, unique

from devstack.localstack import free_port
from devstack.sandbox import SandboxConfig, running_sandbox
from infra.config import Settings
from infra.grpc_errors import error_info
from infra.runner import running_service
from kassa.common.v1 import money_pb2
from kassa.payment.v1 import payment_pb2, payment_service_pb2
from kassa.payment.v1.payment_service_pb2_grpc import PaymentServiceStub
from payment.adapter.breaker import BreakerPolicy
from payment.bootstrap import bootstrap

pytestmark = pytest.mark.integration

PS = payment_pb2.PaymentStatus
pb = payment_service_pb2
THRESHOLD = 2


def _authorize() -> pb.AuthorizePaymentRequest:
    return pb.AuthorizePaymentRequest(
        idempotency_key=unique("pay"),
        order_ref=unique("sess"),
        amount=money_pb2.Money(currency_code="USD", amount_minor=1500),
        payment_method="tok_visa",
        customer_id="cust-1",
    )


async def test_authorizations_fall_back_while_the_primary_is_down_and_return_when_it_is_back(
    settings: Settings, service_token: str
) -> None:
    md = bearer(service_token)
    primary_port = free_port()
    async with running_sandbox(settings, SandboxConfig()) as backup:
        config = dataclasses.replace(
            settings,
            payment_providers=f"sandbox=http://127.0.0.1:{primary_port},backup={backup.url}",
            rpc_timeout_seconds=2.0,
        )
        boot = functools.partial(bootstrap, breaker=BreakerPolicy(threshold=THRESHOLD, reset_seconds=0.5))
        async with (
            running_service(boot, config, "127.0.0.1:0") as server,
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
        ):
            stub = PaymentServiceStub(channel)

            async def authorize() -> payment_pb2.Payment:
                return (await stub.AuthorizePayment(_authorize(), metadata=md, timeout=10)).payment

            async with running_sandbox(settings, SandboxConfig(), port=primary_port) as primary:
                first = await authorize()
                assert first.provider == "sandbox"
                assert first.provider_payment_id in primary.api.state.intents

            # The primary is down: each attempt fails (UNAVAILABLE) until the breaker opens.
            for _ in range(THRESHOLD):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await authorize()
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
                info = error_info(err.value)
                assert info is not None and info.reason == "PAYMENT_PROVIDER_UNAVAILABLE"

            moved = await authorize()
            assert moved.provider == "backup"
            assert moved.status == PS.PAYMENT_STATUS_AUTHORIZED
            assert backup.api.state.intents[moved.provider_payment_id].status == "requires_capture"
            # Everything after the authorization goes to the provider holding the intent.
            captured = await stub.CapturePayment(
                pb.CapturePaymentRequest(payment_id=moved.payment_id, order_id=unique("order")), metadata=md, timeout=10
            )
            assert captured.payment.status == PS.PAYMENT_STATUS_CAPTURED
            assert backup.api.state.intents[moved.provider_payment_id].status == "succeeded"

            async with running_sandbox(settings, SandboxConfig(), port=primary_port) as primary:
                # Once the reset period is over, the next authorization probes the primary and closes its breaker.
                deadline = time.monotonic() + 15
                back = await authorize()
                while back.provider != "sandbox":
                    assert time.monotonic() < deadline, "the primary's breaker never closed"
                    await asyncio.sleep(0.1)
                    back = await authorize()
                assert back.provider_payment_id in primary.api.state.intents
                assert (await authorize()).provider == "sandbox"
