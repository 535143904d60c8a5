"""The OpenAPI document: fresh, valid OpenAPI 3.1, one operation per annotated route, and schemas that the
gateway's real JSON (gateway.transcoding.render, gateway.status.to_json) satisfies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import httpx
import jsonschema
import pytest
from google.protobuf import timestamp_pb2
from openapi_spec_validator import validate

from gateway import openapi
from gateway import status as gw_status
from gateway.app import create_app
from gateway.routing import build_route_table
from gateway.transcoding import render
from infra.config import Settings
from kassa.checkout.v1 import cart_pb2, cart_service_pb2
from kassa.common.v1 import errors_pb2, money_pb2
from kernel.errors import Reason

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi.load_document()


def _validator(document: dict[str, Any], component: str) -> jsonschema.Draft202012Validator:
    """A JSON Schema validator for one component, its $refs resolved inside the document."""
    schema = {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_the_committed_document_is_what_the_protos_generate(document: dict[str, Any]) -> None:
    assert openapi.generate(ROOT) == openapi.DOCUMENT_PATH.read_text(encoding="utf-8"), (
        "gateway/openapi.json is stale: run 'make openapi' and commit"
    )


def test_it_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_every_annotated_route_is_an_operation_with_a_unique_id(document: dict[str, Any]) -> None:
    routes = build_route_table().routes
    assert routes
    for route in routes:
        path = route.template.template
        op = document["paths"][path][route.http_method.lower()]
        assert op["tags"] == [route.rpc.descriptor.containing_service.name]
        assert route.rpc.path in op["description"]
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)) == len(routes) + 4  # guest, webhook, healthz, readyz


def test_path_and_query_parameters_and_the_idempotency_header(document: dict[str, Any]) -> None:
    remove = document["paths"]["/v1/carts/{cart_id}/items/{sku}"]["delete"]
    assert [(p["name"], p["in"], p["required"]) for p in remove["parameters"]] == [
        ("cart_id", "path", True),
        ("sku", "path", True),
    ]
    add = document["paths"]["/v1/carts/{cart_id}/items"]["post"]
    body = add["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"sku", "quantity"}  # the path binds cart_id
    listing = document["paths"]["/v1/orders"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"pageSize", "pageToken", "customerId"}
    confirm = document["paths"]["/v1/checkout/confirm"]["post"]
    header = next(p for p in confirm["parameters"] if p["in"] == "header")
    assert (header["name"], header["required"]) == ("Idempotency-Key", True)


def test_security_is_bearer_jwt_except_on_the_gateways_public_routes(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        **document["components"]["securitySchemes"]["bearerAuth"],
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    assert document["security"] == [{"bearerAuth": []}]
    assert document["paths"]["/v1/auth/guest"]["post"]["security"] == []
    assert "security" not in document["paths"]["/v1/carts"]["post"]


def test_proto3_json_mapping_in_the_schemas(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    money = schemas["kassa.common.v1.Money"]["properties"]
    assert money["amountMinor"]["type"] == "string"  # int64
    assert money["currencyCode"]["type"] == "string"
    cart = schemas["kassa.checkout.v1.Cart"]["properties"]
    assert cart["createdAt"] == {**cart["createdAt"], "type": "string", "format": "date-time"}
    assert schemas["kassa.checkout.v1.CartStatus"]["enum"][0] == "CART_STATUS_UNSPECIFIED"
    assert "An amount of money" in schemas["kassa.common.v1.Money"]["description"]  # proto comments
    assert "- RATE_LIMITED: The gateway's rate limit" in schemas["kassa.common.v1.ErrorReason"]["description"]
    assert "buf:lint" not in json.dumps(document)


def test_a_rendered_reply_satisfies_its_schema(document: dict[str, Any]) -> None:
    cart = cart_pb2.Cart(
        cart_id="c1",
        customer_id="u1",
        status=cart_pb2.CART_STATUS_ACTIVE,
        currency_code="USD",
        items=[cart_pb2.CartItem(sku="KB-001", quantity=2)],
        subtotal=money_pb2.Money(currency_code="USD", amount_minor=9_007_199_254_740_993),
        created_at=timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=5),
    )
    body = render(cart_service_pb2.GetCartResponse(cart=cart))
    validator = _validator(document, "kassa.checkout.v1.GetCartResponse")
    validator.validate(body)
    body["cart"]["subtotal"]["amountMinor"] = 9_007_199_254_740_993  # a number loses precision in JS
    assert not validator.is_valid(body)


def test_every_error_body_satisfies_the_status_schema(document: dict[str, Any]) -> None:
    validator = _validator(document, "google.rpc.Status")
    reasons = [v.name for v in errors_pb2.ErrorReason.DESCRIPTOR.values][1:]
    for reason in reasons:
        status = gw_status.make_status(grpc.StatusCode.FAILED_PRECONDITION, "no", reason, {"sku": "X"})
        validator.validate(gw_status.to_json(status))
    bogus = gw_status.to_json(gw_status.make_status(grpc.StatusCode.UNAVAILABLE, "no", "AT_CAPACITY"))
    assert not validator.is_valid(bogus)
    assert Reason.RATE_LIMITED in reasons


async def test_the_gateway_serves_the_document_and_a_docs_page(document: dict[str, Any]) -> None:
    app = create_app(Settings.from_env({"KASSA_ENV": "development"}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        spec = await client.get("/openapi.json")
        docs = await client.get("/docs")
    assert spec.status_code == 200
    assert spec.json() == document
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    assert "/v1/checkout/confirm" in docs.text
    assert "<script" not in docs.text  # self-contained: nothing loaded from elsewhere
    assert json.dumps(document["info"]["title"]).strip('"') in docs.text
