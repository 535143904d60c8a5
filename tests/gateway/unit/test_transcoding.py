"""JSON/path/query -> request messages (both spellings in, lowerCamelCase out) and strict refusals."""

from __future__ import annotations

import pytest

from gateway.routing import build_route_table
from gateway.transcoding import RequestParts, build_request, render
from kassa.checkout.v1 import cart_pb2, cart_service_pb2, checkout_service_pb2
from kassa.common.v1 import money_pb2
from kassa.order.v1 import order_pb2
from kernel import errors

pytestmark = pytest.mark.unit

TABLE = build_route_table()


def build(
    method: str, path: str, body: bytes = b"", query: list[tuple[str, str]] | None = None, key: str | None = None
):
    match = TABLE.match(method, path)
    return build_request(match.route, RequestParts(match.path_params, query or [], body, key))


def field_of(exc: pytest.ExceptionInfo[errors.DomainError]) -> str:
    return exc.value.metadata.get("field", "")


@pytest.mark.parametrize("body", [b'{"quantity": 3}', b'{"quantity": "3"}'])
def test_path_variables_and_body_fill_the_request(body: bytes) -> None:
    msg = build("PATCH", "/v1/carts/c1/items/SKU-1", body)
    assert msg == cart_service_pb2.UpdateCartItemRequest(cart_id="c1", sku="SKU-1", quantity=3)


def test_path_variables_win_over_the_body() -> None:
    msg = build("POST", "/v1/carts/c1/items", b'{"cartId": "someone-elses", "sku": "A", "quantity": 1}')
    assert msg.cart_id == "c1"


@pytest.mark.parametrize("body", [b'{"shippingMethod": "express"}', b'{"shipping_method": "express"}'])
def test_both_spellings_are_accepted(body: bytes) -> None:
    assert build("PUT", "/v1/checkout/state", body).shipping_method == "express"


def test_nested_messages_and_repeated_fields() -> None:
    msg = build(
        "PUT",
        "/v1/checkout/state",
        b'{"sessionId": "s1", "shippingAddress": {"postalCode": "10115", "countryCode": "DE"},'
        b' "promotionCodes": ["A", "B"], "updateMask": "shippingAddress,promotionCodes"}',
    )
    assert msg.shipping_address.postal_code == "10115"
    assert list(msg.promotion_codes) == ["A", "B"]
    assert list(msg.update_mask.paths) == ["shipping_address", "promotion_codes"]


def test_empty_body_is_an_empty_message() -> None:
    assert build("POST", "/v1/carts", b"") == cart_service_pb2.CreateCartRequest()


@pytest.mark.parametrize("query", [[("pageSize", "5"), ("pageToken", "t")], [("page_size", "5"), ("page_token", "t")]])
def test_query_parameters_fill_get_requests(query: list[tuple[str, str]]) -> None:
    msg = build("GET", "/v1/orders", query=query)
    assert (msg.page_size, msg.page_token) == (5, "t")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"foo": 1}', "foo"),
        (b'{"shippingAddress": {"zzz": "x"}}', "shipping_address.zzz"),
        (b'{"promotionCodes": ["A", 7]}', "promotion_codes[1]"),
        (b'{"shippingAddress": "Main St 1"}', "shipping_address"),
        (b'{"updateMask": 5}', "update_mask"),
    ],
)
def test_bad_fields_are_refused_naming_the_field(body: bytes, field: str) -> None:
    with pytest.raises(errors.InvalidArgument) as exc:
        build("PUT", "/v1/checkout/state", body)
    assert field_of(exc) == field
    assert exc.value.reason == "INVALID_ARGUMENT"


def test_the_element_of_a_repeated_message_is_named() -> None:
    with pytest.raises(errors.InvalidArgument) as exc:
        build("PUT", "/v1/admin/stock", b'{"items": [{"sku": "A", "onHand": 1}, {"sku": "B", "onHand": "many"}]}')
    assert field_of(exc) == "items[1].on_hand"


def test_a_wrong_type_is_refused_naming_the_field() -> None:
    with pytest.raises(errors.InvalidArgument) as exc:
        build("POST", "/v1/carts/c1/items", b'{"sku": "A", "quantity": 1.5}')
    assert field_of(exc) == "quantity"


@pytest.mark.parametrize(
    "body", [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe\x00", b"[" * 100_000, b'{"a":' * 100_000, b"null"]
)
def test_malformed_json_is_invalid_argument_naming_the_body(body: bytes) -> None:
    with pytest.raises(errors.InvalidArgument) as exc:
        build("POST", "/v1/carts", body)
    assert exc.value.reason == "INVALID_ARGUMENT"
    assert field_of(exc) == "body"


@pytest.mark.parametrize(
    ("method", "path", "body", "query", "field"),
    [
        ("POST", "/v1/carts", b'{"": 1}', [], '""'),
        ("PUT", "/v1/checkout/state", b'{"shippingAddress": {" ": 1}}', [], 'shipping_address." "'),
        ("GET", "/v1/orders", b"", [("", "x")], '""'),
        ("POST", "/v1/carts", b"{}", [("", "x")], '""'),
    ],
)
def test_an_empty_name_is_still_named(
    method: str, path: str, body: bytes, query: list[tuple[str, str]], field: str
) -> None:
    with pytest.raises(errors.InvalidArgument) as exc:
        build(method, path, body, query=query)
    assert field_of(exc) == field


@pytest.mark.parametrize(
    ("query", "field"),
    [([("pageSize", "lots")], "page_size"), ([("colour", "red")], "colour"), ([("page_size.x", "1")], "page_size")],
)
def test_bad_query_parameters_are_refused_naming_them(query: list[tuple[str, str]], field: str) -> None:
    with pytest.raises(errors.InvalidArgument) as exc:
        build("GET", "/v1/orders", query=query)
    assert field_of(exc) == field


def test_query_parameters_are_refused_where_the_body_carries_everything() -> None:
    with pytest.raises(errors.InvalidArgument) as exc:
        build("POST", "/v1/carts", b"{}", query=[("currencyCode", "EUR")])
    assert field_of(exc) == "currencyCode"


class TestIdempotencyKey:
    def test_header_fills_the_field(self) -> None:
        msg = build("POST", "/v1/checkout/confirm", b'{"sessionId": "s1"}', key="k-1")
        assert msg == checkout_service_pb2.ConfirmCheckoutRequest(session_id="s1", idempotency_key="k-1")

    def test_same_key_in_header_and_body_is_fine(self) -> None:
        msg = build("POST", "/v1/checkout/confirm", b'{"sessionId": "s1", "idempotencyKey": "k-1"}', key="k-1")
        assert msg.idempotency_key == "k-1"

    def test_body_key_alone_is_accepted(self) -> None:
        msg = build("POST", "/v1/checkout/confirm", b'{"sessionId": "s1", "idempotency_key": "k-2"}')
        assert msg.idempotency_key == "k-2"

    def test_conflicting_keys_are_refused(self) -> None:
        with pytest.raises(errors.InvalidArgument) as exc:
            build("POST", "/v1/checkout/confirm", b'{"idempotencyKey": "k-1"}', key="k-2")
        assert field_of(exc) == "idempotency_key"

    @pytest.mark.parametrize("key", [None, "", "   "])
    def test_confirm_without_a_key_is_refused(self, key: str | None) -> None:
        with pytest.raises(errors.InvalidArgument) as exc:
            build("POST", "/v1/checkout/confirm", b'{"sessionId": "s1"}', key=key)
        assert field_of(exc) == "idempotency_key"
        assert "Idempotency-Key header is required" in exc.value.message

    def test_an_oversized_key_is_refused(self) -> None:
        with pytest.raises(errors.InvalidArgument) as exc:
            build("POST", "/v1/checkout/confirm", b"{}", key="k" * 256)
        assert field_of(exc) == "idempotency_key"

    def test_requests_without_the_field_ignore_the_header(self) -> None:
        assert build("POST", "/v1/carts", b"{}", key="k-1") == cart_service_pb2.CreateCartRequest()


def test_render_uses_lower_camel_case_enum_names_and_string_int64() -> None:
    cart = cart_pb2.Cart(
        cart_id="c1",
        customer_id="cust-1",
        status=cart_pb2.CART_STATUS_ACTIVE,
        currency_code="USD",
        subtotal=money_pb2.Money(currency_code="USD", amount_minor=1250),
    )
    out = render(cart_service_pb2.GetCartResponse(cart=cart))
    assert out["cart"]["cartId"] == "c1"
    assert out["cart"]["customerId"] == "cust-1"
    assert out["cart"]["status"] == "CART_STATUS_ACTIVE"
    assert out["cart"]["subtotal"] == {"currencyCode": "USD", "amountMinor": "1250"}
    assert out["cart"]["items"] == []


def test_render_keeps_default_values_for_a_stable_shape() -> None:
    out = render(checkout_service_pb2.ConfirmCheckoutResponse(order_id="o1"))
    assert out["orderStatus"] == order_pb2.OrderStatus.Name(0)
    assert out["nextActionUrl"] == ""
