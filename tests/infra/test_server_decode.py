"""Bytes that are no request message are INVALID_ARGUMENT naming "request", never UNKNOWN. Over real gRPC.

grpc answers UNKNOWN, with the Python exception's text, when a method's request deserializer raises; any
client can send such bytes (a corrupt wire format, a string field that is not UTF-8, nested groups).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from helpers import bearer

from infra.auth import mint_token
from infra.config import Settings
from infra.grpc_errors import error_info
from infra.runner import verifier_for
from infra.server import REQUEST_FIELD, Registration, start_server
from kassa.pricing.v1 import pricing_service_pb2 as pb
from kassa.pricing.v1 import pricing_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

METHOD = "/kassa.pricing.v1.PricingService/GetProducts"


class _Echo(pb_grpc.PricingServiceServicer):
    async def GetProducts(self, request, context):
        return pb.GetProductsResponse(missing_skus=list(request.skus))


@pytest_asyncio.fixture
async def raw_call(settings: Settings) -> AsyncIterator[grpc.aio.UnaryUnaryMultiCallable]:
    server = await start_server(
        "127.0.0.1:0",
        [Registration(pb_grpc.add_PricingServiceServicer_to_server, _Echo(), "p")],
        verifier_for(settings),
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
    finally:
        await channel.close()
        await server.stop(grace=1)


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xff\xff",  # no such wire type
        b"\x0a\x05ab",  # a length past the end
        b"\x0a\x02\xc3\x28",  # skus[0] is not UTF-8
        b"\x0b" * 200 + b"\x0c" * 200,  # groups nested past the parser's recursion limit
    ],
)
async def test_bytes_that_are_no_message_are_invalid_argument(raw_call, settings: Settings, raw: bytes) -> None:
    md = bearer(mint_token(settings.jwt_secret, "cust-decode"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await raw_call(raw, metadata=md, timeout=5)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    info = error_info(err.value)
    assert info is not None and info.metadata["field"] == REQUEST_FIELD
    assert "DecodeError" not in (err.value.details() or "")


async def test_a_valid_message_is_decoded_and_served(raw_call, settings: Settings) -> None:
    md = bearer(mint_token(settings.jwt_secret, "cust-decode"))
    answer = pb.GetProductsResponse.FromString(
        await raw_call(pb.GetProductsRequest(skus=["A", "B"]).SerializeToString(), metadata=md, timeout=5)
    )
    assert list(answer.missing_skus) == ["A", "B"]


async def test_garbage_without_credentials_is_unauthenticated_first(raw_call) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await raw_call(b"\xff\xff", timeout=5)
    assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
