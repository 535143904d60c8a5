"""infra.server with metrics over real gRPC and a real /metrics port: each call's latency and status code by
method (a domain error is its own code), and a call refused by admission control counted by why."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from helpers import bearer
from metrics_support import Scrape, scrape

from infra.admission import Admission, AdmissionPolicy
from infra.auth import JwtVerifier, mint_token
from infra.config import Settings
from infra.server import Registration, Server, start_server
from kassa.common.v1 import money_pb2
from kassa.pricing.v1 import pricing_service_pb2 as pb
from kassa.pricing.v1 import pricing_service_pb2_grpc as pb_grpc
from kernel import errors

pytestmark = pytest.mark.integration

NEW_WORK = "/kassa.pricing.v1.PricingService/GetProducts"
SERVICE = "kassa.pricing.v1.PricingService"


class _Held(pb_grpc.PricingServiceServicer):
    """GetProducts waits until released; CalculateTax answers, or refuses a negative-looking request."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.running = 0

    async def GetProducts(self, request: Any, context: Any) -> pb.GetProductsResponse:
        self.running += 1
        await self.release.wait()
        return pb.GetProductsResponse(missing_skus=list(request.skus))

    async def CalculateTax(self, request: Any, context: Any) -> pb.CalculateTaxResponse:
        if request.currency_code == "XXX":
            raise errors.InvalidArgument("currency_code", "is not a currency")
        return pb.CalculateTaxResponse(tax_total=money_pb2.Money(currency_code="USD", amount_minor=7))


@pytest_asyncio.fixture
async def served(settings: Settings) -> AsyncIterator[tuple[pb_grpc.PricingServiceStub, _Held, Server]]:
    held = _Held()
    policy = AdmissionPolicy(
        limit=1, new_work=frozenset({NEW_WORK}), hard_limit=1, target_s=5.0, interval_s=5.0, max_wait_s=10.0,
        latency_target_s=0,
    )  # fmt: skip
    server = await start_server(
        "127.0.0.1:0",
        [Registration(pb_grpc.add_PricingServiceServicer_to_server, held, SERVICE)],
        JwtVerifier(settings.jwt_secret),
        Admission(policy),
        metrics_addr="127.0.0.1:0",
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield pb_grpc.PricingServiceStub(channel), held, server
    finally:
        held.release.set()
        await channel.close()
        await server.stop(grace=1)


async def _scrape(server: Server) -> Scrape:
    assert server.metrics_port
    return await scrape([f"http://127.0.0.1:{server.metrics_port}/metrics"])


async def test_calls_are_counted_by_method_and_code_and_a_refusal_by_why(served, settings) -> None:
    stub, held, server = served
    md = bearer(mint_token(settings.jwt_secret, "cust-metrics"))
    before = await _scrape(server)
    handled = {"grpc_service": SERVICE, "grpc_method": "CalculateTax"}

    assert (await stub.CalculateTax(pb.CalculateTaxRequest(), metadata=md, timeout=10)).tax_total.amount_minor == 7
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.CalculateTax(pb.CalculateTaxRequest(currency_code="XXX"), metadata=md, timeout=10)
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await stub.CalculateTax(pb.CalculateTaxRequest(), timeout=10)
    assert anonymous.value.code() is grpc.StatusCode.UNAUTHENTICATED

    # New work holds the only slot (hard limit 1): a call of work under way is refused at once, for load.
    first = asyncio.ensure_future(stub.GetProducts(pb.GetProductsRequest(skus=["A"]), metadata=md, timeout=10))
    for _ in range(1000):
        if held.running:
            break
        await asyncio.sleep(0.01)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CalculateTax(pb.CalculateTaxRequest(), metadata=md, timeout=10)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    held.release.set()
    await first

    after = await _scrape(server)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("grpc_server_handled_total", **handled, grpc_code="OK") == 1
    assert delta("grpc_server_handled_total", **handled, grpc_code="INVALID_ARGUMENT") == 1
    assert delta("grpc_server_handled_total", **handled, grpc_code="UNAUTHENTICATED") == 1
    assert delta("grpc_server_handled_total", **handled, grpc_code="UNAVAILABLE") == 1
    assert delta("grpc_server_handling_seconds_count", **handled) == 4
    products = {"grpc_service": SERVICE, "grpc_method": "GetProducts"}
    assert delta("grpc_server_handled_total", **products, grpc_code="OK") == 1
    assert delta("kassa_admission_refusals_total", why="hard_limit") == 1
    # Health checks and reflection are plumbing, not the service's RPCs.
    assert not after.label_values("grpc_server_handled_total", "grpc_service") & {"grpc.health.v1.Health"}


async def test_the_metrics_port_serves_only_metrics_and_closes_with_the_server(settings) -> None:
    server = await start_server("127.0.0.1:0", [], JwtVerifier(settings.jwt_secret), metrics_addr="127.0.0.1:0")
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    assert (await scrape([url])).value("process_cpu_seconds_total") > 0
    # Only /metrics: a port handed out twice must not pass for another server's health route.
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        other = await http.get(f"http://127.0.0.1:{server.metrics_port}/healthz")
    assert other.status_code == 404
    await server.stop(grace=0)
    with pytest.raises(httpx.ConnectError):
        await scrape([url])
