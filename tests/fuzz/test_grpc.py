"""Every RPC of every Kassa service, called straight over gRPC with generated requests (DESIGN.md §4.6).

The RPC list is read from the generated descriptors (``gateway.routing.SERVICE_MODULES``), so a new RPC
is fuzzed as soon as it is generated. Requests come from ``fuzz.strategies``; one in three of their byte
strings is then broken on the wire (``wire_bytes``); HandleWebhook also gets signed provider events with
hostile contents. Each input must be answered within the error contract (``fuzz.contract``) and, when
refused as INVALID_ARGUMENT, must have changed no row.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from fuzz.contract import Fingerprint, grpc_outcome
from fuzz.profile import FUZZ_SETTINGS
from fuzz.report import record
from fuzz.strategies import request_strategy
from fuzz.world import Anchors, FuzzWorld, prepare_webhook, webhook_inputs
from hypothesis import given
from hypothesis import strategies as st

from gateway.routing import SERVICE_MODULES, RpcMethod, build_route_table, rpc_method
from kassa.payment.v1 import payment_service_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("fuzz")]

RPCS: list[RpcMethod] = [
    rpc_method(method)
    for module in SERVICE_MODULES
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]
_CUSTOMER_RPCS = frozenset(
    r.rpc.path for r in build_route_table().routes if not r.template.template.startswith("/v1/admin/")
)
_HANDLE_WEBHOOK = "/kassa.payment.v1.PaymentService/HandleWebhook"
_MAX_REQUEST_BYTES = 16 * 1024 * 1024
_CHANNEL_OPTIONS = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]


@pytest.fixture(scope="module")
def channels(anchors: Anchors) -> Iterator[dict[str, grpc.Channel]]:
    opened: dict[str, grpc.Channel] = {}
    try:
        for rpc in RPCS:
            if rpc.backend not in opened:
                opened[rpc.backend] = grpc.insecure_channel(
                    anchors.settings.addr(rpc.backend), options=_CHANNEL_OPTIONS
                )
        yield opened
    finally:
        for channel in opened.values():
            channel.close()


@pytest.fixture(scope="module")
def tokens(anchors: Anchors, channels: dict[str, grpc.Channel]) -> dict[str, str]:
    """The token each RPC is fuzzed with: the customer's for what a customer reaches through the gateway (their
    ownership checks pass, so inputs reach storage), else the service token, or the admin one where the RPC
    takes only that (probed once with an empty request)."""
    out: dict[str, str] = {}
    for rpc in RPCS:
        if rpc.path in _CUSTOMER_RPCS:
            out[rpc.path] = anchors.customer_token
            continue
        stub = channels[rpc.backend].unary_unary(
            rpc.path,
            request_serializer=rpc.request_cls.SerializeToString,
            response_deserializer=rpc.response_cls.FromString,
        )
        out[rpc.path] = anchors.service_token
        try:
            stub(rpc.request_cls(), metadata=(("authorization", f"Bearer {anchors.service_token}"),), timeout=30)
        except grpc.RpcError as exc:
            if exc.code() is grpc.StatusCode.PERMISSION_DENIED:
                out[rpc.path] = anchors.admin_token
    return out


@st.composite
def wire_bytes(draw: st.DrawFn, request: Any) -> bytes:
    """The request's bytes, usually as they are; sometimes truncated, with a byte changed or bytes appended,
    replaced by random bytes, or wrapped in groups nested past the parser's limit: what a broken or hostile
    client puts on the wire. Many of these still parse (protobuf is lenient); the others must be refused."""
    raw: bytes = request.SerializeToString()
    how = draw(st.sampled_from(("as is",) * 6 + ("truncate", "flip", "append", "random", "nested")))
    if how == "truncate" and raw:
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if how == "flip" and raw:
        i = draw(st.integers(0, len(raw) - 1))
        return raw[:i] + bytes([draw(st.integers(0, 255))]) + raw[i + 1 :]
    if how == "append":
        return raw + draw(st.binary(min_size=1, max_size=16))
    if how == "random":
        return draw(st.binary(max_size=64))
    if how == "nested":
        depth = draw(st.sampled_from((50, 101, 1000)))
        return b"\x0b" * depth + b"\x0c" * depth + raw
    return raw


def call_and_check(
    rpc: RpcMethod, request: Any, raw: bytes, *, channel: grpc.Channel, token: str, fingerprint: Fingerprint
) -> None:
    """Send ``raw`` (``request``'s bytes, perhaps broken); hold the answer to the contract; a refusal must
    have written nothing."""
    if len(raw) > _MAX_REQUEST_BYTES:
        record("grpc", rpc.path.lstrip("/"), "skipped (too big to send)")
        return
    stub = channel.unary_unary(rpc.path, request_serializer=None, response_deserializer=rpc.response_cls.FromString)
    shown = f"request: {request!r:.2000}" if raw == request.SerializeToString() else f"bytes: {raw!r:.2000}"
    metadata = (("authorization", f"Bearer {token}"),)
    before = fingerprint.take()
    error: grpc.RpcError | None = None
    try:
        stub(raw, metadata=metadata, timeout=30)
    except grpc.RpcError as exc:
        error = exc
    outcome = grpc_outcome(error, rpc.descriptor.input_type)
    record("grpc", rpc.path.lstrip("/"), outcome.label)
    assert outcome.problem is None, f"{rpc.path}: {outcome.problem}\n{shown}"
    if outcome.invalid_argument:
        changed = fingerprint.diff(before, fingerprint.take())
        if changed:
            # A write by a background consumer (events of an earlier, accepted request) lands in the
            # window now and then; a write the refused request made itself comes back when it is re-sent.
            time.sleep(2)
            before = fingerprint.take()
            with contextlib.suppress(grpc.RpcError):
                stub(raw, metadata=metadata, timeout=30)
            changed = fingerprint.diff(before, fingerprint.take())
        assert not changed, f"{rpc.path} refused a request (INVALID_ARGUMENT) but wrote: {changed}\n{shown}"


@pytest.mark.parametrize("rpc", RPCS, ids=lambda r: r.path.rsplit(".", 1)[-1])
@FUZZ_SETTINGS
@given(data=st.data())
def test_rpc_over_grpc(
    rpc: RpcMethod, world: FuzzWorld, channels: dict[str, grpc.Channel], tokens: dict[str, str], data: st.DataObject
) -> None:
    anchors = world.anchors
    if rpc.path == _HANDLE_WEBHOOK and data.draw(st.integers(0, 2), label="signed event?") > 0:
        payload, how, token = data.draw(webhook_inputs(anchors), label="webhook")
        payload, signature = prepare_webhook(anchors, payload, how, token)
        request = payment_service_pb2.HandleWebhookRequest(provider="sandbox", payload=payload, signature=signature)
    else:
        strategy = request_strategy(rpc.descriptor.input_type, world.hints(), world.seed(rpc.path))
        request = data.draw(strategy, label="request")
    raw = data.draw(wire_bytes(request), label="bytes")
    call_and_check(
        rpc, request, raw, channel=channels[rpc.backend], token=tokens[rpc.path], fingerprint=world.fingerprint
    )
