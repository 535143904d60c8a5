"""A server with admission control refuses new work at its limit at once (UNAVAILABLE), keeps serving
calls of work under way, and admits again when a call finishes. Over real gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from helpers import bearer

from infra.admission import Admission, AdmissionPolicy
from infra.auth import JwtVerifier, mint_token
from infra.config import Settings
from infra.grpc_errors import error_info
from infra.server import Registration, start_server
from kassa.common.v1 import money_pb2
from kassa.pricing.v1 import pricing_service_pb2 as pb
from kassa.pricing.v1 import pricing_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

NEW_WORK = "/kassa.pricing.v1.PricingService/GetProducts"


class _Held(pb_grpc.PricingServiceServicer):
    """GetProducts waits until released; CalculateTax answers at once."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def GetProducts(self, request, context):
        self.entered.set()
        await self.release.wait()
        return pb.GetProductsResponse(missing_skus=list(request.skus))

    async def CalculateTax(self, request, context):
        return pb.CalculateTaxResponse(tax_total=money_pb2.Money(currency_code="USD", amount_minor=7))


@pytest_asyncio.fixture
async def served(settings: Settings) -> AsyncIterator[tuple[pb_grpc.PricingServiceStub, _Held, Admission]]:
    held = _Held()
    gate = Admission(AdmissionPolicy(limit=1, new_work=frozenset({NEW_WORK}), hard_factor=2))
    server = await start_server(
        "127.0.0.1:0",
        [Registration(pb_grpc.add_PricingServiceServicer_to_server, held, "p")],
        JwtVerifier(settings.jwt_secret),
        gate,
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield pb_grpc.PricingServiceStub(channel), held, gate
    finally:
        held.release.set()
        await channel.close()
        await server.stop(grace=1)


async def test_new_work_is_refused_at_the_limit_while_work_under_way_is_served(served, settings: Settings) -> None:
    stub, held, gate = served
    md = bearer(mint_token(settings.jwt_secret, "cust-admission"))
    first = asyncio.ensure_future(stub.GetProducts(pb.GetProductsRequest(skus=["A"]), metadata=md))
    await asyncio.wait_for(held.entered.wait(), 5)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetProducts(pb.GetProductsRequest(skus=["B"]), metadata=md, timeout=5)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    info = error_info(refused.value)
    assert info is not None and info.reason == "UNAVAILABLE" and info.metadata["in_flight"] == "1"

    tax = await stub.CalculateTax(pb.CalculateTaxRequest(), metadata=md, timeout=5)  # under the hard limit
    assert tax.tax_total.amount_minor == 7
    assert (gate.in_flight, gate.refused) == (1, 1)

    held.release.set()
    assert list((await first).missing_skus) == ["A"]
    again = await stub.GetProducts(pb.GetProductsRequest(skus=["C"]), metadata=md, timeout=5)
    assert list(again.missing_skus) == ["C"]
    assert (gate.in_flight, gate.refused) == (0, 1)
