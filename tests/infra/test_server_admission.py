"""A server with admission control, over real gRPC: new work beyond the limit waits in the queue and runs
when a call finishes, in arrival order; calls of work under way pass the waiting ones; a refusal is
UNAVAILABLE at once, with ErrorInfo and a google.rpc.RetryInfo the client can read."""

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
from infra.grpc_errors import error_info, retry_delay, to_domain_error
from infra.server import Registration, start_server
from kassa.common.v1 import money_pb2
from kassa.pricing.v1 import pricing_service_pb2 as pb
from kassa.pricing.v1 import pricing_service_pb2_grpc as pb_grpc
from kernel import errors

pytestmark = pytest.mark.integration

NEW_WORK = "/kassa.pricing.v1.PricingService/GetProducts"


class _Held(pb_grpc.PricingServiceServicer):
    """GetProducts waits until its sku is released (and records the order it started in); CalculateTax answers."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release: dict[str, asyncio.Event] = {}

    def event(self, sku: str) -> asyncio.Event:
        return self.release.setdefault(sku, asyncio.Event())

    async def GetProducts(self, request, context):
        sku = request.skus[0]
        self.started.append(sku)
        await self.event(sku).wait()
        return pb.GetProductsResponse(missing_skus=list(request.skus))

    async def CalculateTax(self, request, context):
        return pb.CalculateTaxResponse(tax_total=money_pb2.Money(currency_code="USD", amount_minor=7))


@pytest_asyncio.fixture
async def served(request, settings: Settings) -> AsyncIterator[tuple[pb_grpc.PricingServiceStub, _Held, Admission]]:
    policy = getattr(request, "param", None) or AdmissionPolicy(
        limit=1, new_work=frozenset({NEW_WORK}), hard_limit=4, target_s=5.0, interval_s=5.0, max_wait_s=10.0
    )
    held = _Held()
    gate = Admission(policy)
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
        for event in held.release.values():
            event.set()
        await channel.close()
        await server.stop(grace=1)


async def _until(condition, what: str) -> None:
    """Wait (bounded) for something the server does in its own time; not a timing assertion."""
    for _ in range(int(10 / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not reached within 10 s")


async def test_new_work_waits_for_a_slot_in_arrival_order_while_work_under_way_passes(served, settings) -> None:
    stub, held, gate = served
    md = bearer(mint_token(settings.jwt_secret, "cust-admission"))
    first = asyncio.ensure_future(stub.GetProducts(pb.GetProductsRequest(skus=["A"]), metadata=md, timeout=10))
    await _until(lambda: held.started == ["A"], "A running")
    second = asyncio.ensure_future(stub.GetProducts(pb.GetProductsRequest(skus=["B"]), metadata=md, timeout=10))
    await _until(lambda: gate.waiting == 1, "B queued")
    third = asyncio.ensure_future(stub.GetProducts(pb.GetProductsRequest(skus=["C"]), metadata=md, timeout=10))
    await _until(lambda: gate.waiting == 2, "C queued")

    # Work under way is admitted at once, past the two waiting.
    tax = await stub.CalculateTax(pb.CalculateTaxRequest(), metadata=md, timeout=10)
    assert tax.tax_total.amount_minor == 7
    assert held.started == ["A"] and (gate.in_flight, gate.waiting) == (1, 2)

    held.event("A").set()  # A finishes: B (queued first) gets the slot, C still waits
    assert list((await first).missing_skus) == ["A"]
    await _until(lambda: held.started == ["A", "B"], "B running")
    assert gate.waiting == 1
    held.event("B").set()
    held.event("C").set()
    assert list((await second).missing_skus) == ["B"]
    assert list((await third).missing_skus) == ["C"]
    assert held.started == ["A", "B", "C"]
    assert (gate.in_flight, gate.waiting, gate.refused) == (0, 0, 0)


@pytest.mark.parametrize(
    "served",
    [AdmissionPolicy(limit=1, new_work=frozenset({NEW_WORK}), target_s=0.001, interval_s=0.2, max_wait_s=10.0)],
    indirect=True,
)
async def test_a_queue_grown_above_target_refuses_new_work_at_once_with_a_retry_delay(served, settings) -> None:
    stub, held, gate = served
    md = bearer(mint_token(settings.jwt_secret, "cust-admission"))
    first = asyncio.ensure_future(stub.GetProducts(pb.GetProductsRequest(skus=["A"]), metadata=md, timeout=10))
    await _until(lambda: held.started == ["A"], "A running")
    waiting = asyncio.ensure_future(stub.GetProducts(pb.GetProductsRequest(skus=["B"]), metadata=md, timeout=10))
    await _until(lambda: gate.waiting == 1, "B queued")
    # B waits past the 1 ms target: the next arrival starts CoDel's interval (and queues), another joins, ...
    await asyncio.sleep(0.01)
    queued = asyncio.ensure_future(stub.GetProducts(pb.GetProductsRequest(skus=["C"]), metadata=md, timeout=10))
    await _until(lambda: gate.waiting == 2, "C queued")
    also = asyncio.ensure_future(stub.GetProducts(pb.GetProductsRequest(skus=["D"]), metadata=md, timeout=10))
    await _until(lambda: gate.waiting == 3, "D queued")
    # ... and one arriving after the interval, with waits above the target and the queue grown, is refused.
    await asyncio.sleep(0.25)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetProducts(pb.GetProductsRequest(skus=["X"]), metadata=md, timeout=10)
    refused = caught.value
    assert gate.dropping
    assert refused.code() is grpc.StatusCode.UNAVAILABLE
    info = error_info(refused)
    assert info is not None and info.reason == "UNAVAILABLE"
    assert info.metadata["why"] == "queue_delay" and info.metadata["waiting"] == "3"
    delay = retry_delay(refused)
    assert delay is not None and delay >= 1
    assert info.metadata["retry_after_seconds"] == str(int(-(-delay // 1)))
    rebuilt = to_domain_error(refused)
    assert isinstance(rebuilt, errors.Unavailable) and rebuilt.retry_after_s == delay
    assert "X" not in held.started  # refused before it ran

    # Work under way is still served.
    assert (await stub.CalculateTax(pb.CalculateTaxRequest(), metadata=md, timeout=10)).tax_total.amount_minor == 7
    for sku in "ABCD":
        held.event(sku).set()
    await first
    # The ones already queued were not dropped.
    assert [list((await w).missing_skus) for w in (waiting, queued, also)] == [["B"], ["C"], ["D"]]


@pytest.mark.parametrize(
    "served",
    [AdmissionPolicy(limit=1, new_work=frozenset({NEW_WORK}), hard_limit=2, max_wait_s=10.0)],
    indirect=True,
)
async def test_work_under_way_is_refused_only_at_the_hard_limit(served, settings) -> None:
    stub, held, gate = served
    md = bearer(mint_token(settings.jwt_secret, "cust-admission"))
    first = asyncio.ensure_future(stub.GetProducts(pb.GetProductsRequest(skus=["A"]), metadata=md, timeout=10))
    await _until(lambda: held.started == ["A"], "A running")
    gate.in_flight += 1  # as if a call under way were running beside it: 2 in flight, the hard limit
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CalculateTax(pb.CalculateTaxRequest(), metadata=md, timeout=10)
    finally:
        gate.in_flight -= 1
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    assert error_info(refused.value).metadata["why"] == "hard_limit"
    assert retry_delay(refused.value) is not None
    assert (await stub.CalculateTax(pb.CalculateTaxRequest(), metadata=md, timeout=10)).tax_total.amount_minor == 7
    held.event("A").set()
    await first
