"""gRPC code -> HTTP status, and the google.rpc.Status JSON body every error has (DESIGN.md §2)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2

from gateway import status as gw_status
from infra.auth import Unauthenticated
from infra.grpc_errors import status_for
from kernel import errors

pytestmark = pytest.mark.unit

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


@pytest.mark.parametrize(
    ("code", "http"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.FAILED_PRECONDITION, 400),
        (grpc.StatusCode.OUT_OF_RANGE, 400),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.ABORTED, 409),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.CANCELLED, 499),
        (grpc.StatusCode.UNIMPLEMENTED, 501),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.UNKNOWN, 500),
        (grpc.StatusCode.DATA_LOSS, 500),
    ],
)
def test_standard_grpc_to_http_table(code: grpc.StatusCode, http: int) -> None:
    assert gw_status.http_status(code.value[0]) == http


def test_an_unknown_numeric_code_is_500() -> None:
    assert gw_status.http_status(99) == 500


def rpc_error(exc: errors.DomainError) -> grpc.aio.AioRpcError:
    """What a client sees when a Kassa service raises ``exc`` (the real server-side mapping)."""
    st = status_for(exc)
    return grpc.aio.AioRpcError(st.code, grpc.aio.Metadata(), grpc.aio.Metadata(*st.trailing_metadata), st.details)


def test_backend_error_info_reaches_the_json_body() -> None:
    err = rpc_error(
        errors.FailedPrecondition("SKU-1 is out of stock", reason="OUT_OF_STOCK", metadata={"sku": "SKU-1"})
    )
    body = gw_status.to_json(gw_status.from_rpc_error(err))
    assert body == {
        "code": 9,
        "message": "SKU-1 is out of stock",
        "details": [{"@type": ERROR_INFO, "reason": "OUT_OF_STOCK", "domain": "kassa", "metadata": {"sku": "SKU-1"}}],
    }
    assert gw_status.http_status(body["code"]) == 400


def test_invalid_argument_names_the_field() -> None:
    body = gw_status.to_json(
        gw_status.from_rpc_error(rpc_error(errors.InvalidArgument("lines[2].quantity", "too big")))
    )
    assert body["code"] == 3
    assert body["details"][0]["reason"] == "INVALID_ARGUMENT"
    assert body["details"][0]["metadata"] == {"field": "lines[2].quantity"}


def test_a_bare_status_gets_an_error_info_with_the_code_name() -> None:
    err = grpc.aio.AioRpcError(grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata(), "no such order")
    body = gw_status.to_json(gw_status.from_rpc_error(err))
    assert body == {
        "code": 5,
        "message": "no such order",
        "details": [{"@type": ERROR_INFO, "reason": "NOT_FOUND", "domain": "kassa"}],
    }


def test_transport_failures_do_not_leak_internals() -> None:
    err = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.0.0.7:50051",
    )
    body = gw_status.to_json(gw_status.from_rpc_error(err))
    assert body["code"] == 14
    assert "10.0.0.7" not in body["message"]
    assert body["details"][0]["reason"] == "UNAVAILABLE"


def test_gateway_domain_errors_use_the_services_mapping() -> None:
    unauth = gw_status.from_domain_error(Unauthenticated("invalid token"))
    denied = gw_status.from_domain_error(errors.PermissionDenied("admin only"))
    assert gw_status.http_status(unauth.code) == 401
    assert gw_status.http_status(denied.code) == 403
    assert gw_status.to_json(denied)["details"][0]["reason"] == "PERMISSION_DENIED"


def test_details_of_unknown_types_are_dropped_not_fatal() -> None:
    status = gw_status.make_status(grpc.StatusCode.ABORTED, "busy", "CHECKOUT_IN_PROGRESS")
    status.details.append(any_pb2.Any(type_url="type.googleapis.com/vendor.Secret", value=b"\x01"))
    body = gw_status.to_json(status)
    assert [d["reason"] for d in body["details"]] == ["CHECKOUT_IN_PROGRESS"]
