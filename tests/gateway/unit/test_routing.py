"""The route table comes from the protos' google.api.http annotations and matches DESIGN.md §2."""

from __future__ import annotations

import pytest

from gateway.routing import MethodNotAllowed, PathTemplate, RouteNotFound, build_route_table

pytestmark = pytest.mark.unit

TABLE = build_route_table()

# DESIGN.md §2: every REST route and the RPC behind it.
DESIGN_ROUTES = [
    ("POST", "/v1/carts", "/kassa.checkout.v1.CartService/CreateCart", {}),
    ("GET", "/v1/carts/c1", "/kassa.checkout.v1.CartService/GetCart", {"cart_id": "c1"}),
    ("POST", "/v1/carts/c1/items", "/kassa.checkout.v1.CartService/AddCartItem", {"cart_id": "c1"}),
    (
        "PATCH",
        "/v1/carts/c1/items/SKU-1",
        "/kassa.checkout.v1.CartService/UpdateCartItem",
        {"cart_id": "c1", "sku": "SKU-1"},
    ),
    (
        "DELETE",
        "/v1/carts/c1/items/SKU-1",
        "/kassa.checkout.v1.CartService/RemoveCartItem",
        {"cart_id": "c1", "sku": "SKU-1"},
    ),
    ("POST", "/v1/checkout/start", "/kassa.checkout.v1.CheckoutService/StartCheckout", {}),
    ("PUT", "/v1/checkout/state", "/kassa.checkout.v1.CheckoutService/UpdateCheckoutState", {}),
    ("GET", "/v1/checkout/sessions/s1", "/kassa.checkout.v1.CheckoutService/GetCheckoutSession", {"session_id": "s1"}),
    (
        "GET",
        "/v1/checkout/sessions/s1/preview",
        "/kassa.checkout.v1.CheckoutService/PreviewOrder",
        {"session_id": "s1"},
    ),
    ("POST", "/v1/checkout/confirm", "/kassa.checkout.v1.CheckoutService/ConfirmCheckout", {}),
    ("GET", "/v1/orders/o1", "/kassa.order.v1.OrderService/GetOrder", {"order_id": "o1"}),
    ("GET", "/v1/orders", "/kassa.order.v1.OrderService/ListOrders", {}),
    ("POST", "/v1/orders/o1:cancel", "/kassa.order.v1.OrderService/CancelOrder", {"order_id": "o1"}),
    ("GET", "/v1/orders/o1/timeline", "/kassa.order.v1.OrderService/GetOrderTimeline", {"order_id": "o1"}),
    ("GET", "/v1/admin/warehouses", "/kassa.warehouse.v1.InventoryService/ListWarehouses", {}),
    ("POST", "/v1/admin/products", "/kassa.pricing.v1.PricingService/UpsertProducts", {}),
    ("PUT", "/v1/admin/stock", "/kassa.warehouse.v1.InventoryService/SetStock", {}),
    ("POST", "/v1/admin/promotions", "/kassa.promotion.v1.PromotionService/CreatePromotion", {}),
    ("POST", "/v1/admin/orders/o1:refund", "/kassa.payment.v1.PaymentService/RefundPayment", {"order_id": "o1"}),
    (
        "POST",
        "/v1/admin/orders/o1/fulfillment",
        "/kassa.order.v1.OrderService/UpdateFulfillment",
        {"order_id": "o1"},
    ),
    ("GET", "/v1/admin/audit", "/kassa.audit.v1.AuditService/ListAuditEntries", {}),
    ("GET", "/v1/admin/dlq", "/kassa.checkout.v1.CheckoutAdminService/ListFailedCompensations", {}),
    ("GET", "/v1/admin/dlq/d1", "/kassa.checkout.v1.CheckoutAdminService/GetFailedCompensation", {"id": "d1"}),
    ("POST", "/v1/admin/dlq/d1:retry", "/kassa.checkout.v1.CheckoutAdminService/RetryFailedCompensation", {"id": "d1"}),
    ("POST", "/v1/admin/dlq/d1:park", "/kassa.checkout.v1.CheckoutAdminService/ParkFailedCompensation", {"id": "d1"}),
    (
        "POST",
        "/v1/admin/dlq/d1:replay",
        "/kassa.checkout.v1.CheckoutAdminService/ReplayFailedCompensation",
        {"id": "d1"},
    ),
    ("GET", "/v1/admin/sessions/stuck", "/kassa.checkout.v1.CheckoutAdminService/ListStuckSessions", {}),
    (
        "POST",
        "/v1/admin/sessions/stuck/s1:resolve",
        "/kassa.checkout.v1.CheckoutAdminService/ResolveStuckSession",
        {"session_id": "s1"},
    ),
    ("GET", "/v1/admin/funnel", "/kassa.checkout.v1.CheckoutAdminService/GetFunnel", {}),
    ("GET", "/v1/admin/payments/failure-rates", "/kassa.payment.v1.PaymentAdminService/GetPaymentFailureRates", {}),
    ("GET", "/v1/admin/stock/drift", "/kassa.warehouse.v1.StockAdminService/GetStockDrift", {}),
    ("POST", "/v1/admin/stock/drift:repair", "/kassa.warehouse.v1.StockAdminService/RepairStockDrift", {}),
    ("GET", "/v1/admin/outbox", "/kassa.ops.v1.OutboxService/GetOutboxStatus", {}),
    (
        "POST",
        "/v1/admin/notifications/dead-letters:replay",
        "/kassa.notification.v1.NotificationService/ReplayDeadLetter",
        {},
    ),
]


@pytest.mark.parametrize(("method", "path", "rpc", "params"), DESIGN_ROUTES)
def test_every_design_route_maps_to_its_rpc(method: str, path: str, rpc: str, params: dict[str, str]) -> None:
    match = TABLE.match(method, path)
    assert match.route.rpc.path == rpc
    assert match.path_params == params


def test_the_table_has_exactly_the_design_routes() -> None:
    assert sorted(r.rpc.path for r in TABLE.routes) == sorted(r[2] for r in DESIGN_ROUTES)


def test_update_cart_item_binds_both_variables_and_takes_the_body() -> None:
    match = TABLE.match("PATCH", "/v1/carts/c1/items/SKU-1")
    assert match.route.rpc.path == "/kassa.checkout.v1.CartService/UpdateCartItem"
    assert match.route.body == "*"
    assert match.route.rpc.request_cls.DESCRIPTOR.full_name == "kassa.checkout.v1.UpdateCartItemRequest"
    assert match.path_params == {"cart_id": "c1", "sku": "SKU-1"}


@pytest.mark.parametrize(
    ("rpc", "backend"),
    [
        ("/kassa.checkout.v1.CartService/GetCart", "checkout"),
        ("/kassa.checkout.v1.CheckoutService/StartCheckout", "checkout"),
        ("/kassa.order.v1.OrderService/GetOrder", "order"),
        ("/kassa.warehouse.v1.InventoryService/SetStock", "warehouse"),
        ("/kassa.pricing.v1.PricingService/UpsertProducts", "pricing"),
        ("/kassa.promotion.v1.PromotionService/CreatePromotion", "promotion"),
    ],
)
def test_each_service_goes_to_its_backend(rpc: str, backend: str) -> None:
    (route,) = TABLE.for_rpc(rpc)
    assert route.rpc.backend == backend


def test_the_audit_log_is_asked_of_every_audited_service() -> None:
    (route,) = TABLE.for_rpc("/kassa.audit.v1.AuditService/ListAuditEntries")
    assert route.rpc.backends == ("order", "payment", "warehouse", "pricing", "promotion", "checkout", "notification")
    (get_cart,) = TABLE.for_rpc("/kassa.checkout.v1.CartService/GetCart")
    assert get_cart.rpc.backends == ("checkout",)


def test_confirm_checkout_gets_a_longer_deadline_than_other_rpcs() -> None:
    (confirm,) = TABLE.for_rpc("/kassa.checkout.v1.CheckoutService/ConfirmCheckout")
    (get_cart,) = TABLE.for_rpc("/kassa.checkout.v1.CartService/GetCart")
    assert confirm.rpc.timeout_multiplier == 3.0
    assert get_cart.rpc.timeout_multiplier == 1.0


@pytest.mark.parametrize(
    "rpc",
    [
        "/kassa.order.v1.OrderService/CreateOrder",
        "/kassa.warehouse.v1.InventoryService/ReserveStock",
        "/kassa.payment.v1.PaymentService/AuthorizePayment",
        "/kassa.promotion.v1.PromotionService/ReservePromotionUsage",
    ],
)
def test_internal_rpcs_have_no_rest_route(rpc: str) -> None:
    assert TABLE.for_rpc(rpc) == []


def test_wrong_method_on_a_known_path_lists_the_allowed_ones() -> None:
    with pytest.raises(MethodNotAllowed) as exc:
        TABLE.match("DELETE", "/v1/carts/c1")
    assert exc.value.allowed == ("GET",)


@pytest.mark.parametrize("path", ["/v1/nope", "/v1/carts/c1/items/a/b", "/v1/carts/", "/v1/orders/o1/cancel"])
def test_unknown_paths_are_not_found(path: str) -> None:
    with pytest.raises(RouteNotFound):
        TABLE.match("POST", path)


def test_a_verb_route_does_not_swallow_the_plain_resource() -> None:
    assert TABLE.match("POST", "/v1/orders/o-9:cancel").path_params == {"order_id": "o-9"}
    assert TABLE.match("GET", "/v1/orders/o-9").route.rpc.name == "GetOrder"


def test_path_variables_are_percent_decoded_within_one_segment() -> None:
    match = TABLE.match("DELETE", "/v1/carts/c1/items/SKU%2F1%20x")
    assert match.path_params == {"cart_id": "c1", "sku": "SKU/1 x"}


class TestPathTemplate:
    def test_literal_only(self) -> None:
        t = PathTemplate.compile("/v1/carts")
        assert t.match("/v1/carts") == {}
        assert t.match("/v1/carts/x") is None
        assert t.variables == ()

    def test_variables_and_verb(self) -> None:
        t = PathTemplate.compile("/v1/orders/{order_id}:cancel")
        assert t.variables == ("order_id",)
        assert t.match("/v1/orders/o1:cancel") == {"order_id": "o1"}
        assert t.match("/v1/orders/o1") is None
        assert t.match("/v1/orders/a/b:cancel") is None

    def test_variable_with_a_multi_segment_pattern(self) -> None:
        t = PathTemplate.compile("/v1/{name=shelves/*/books/*}")
        assert t.match("/v1/shelves/s1/books/b2") == {"name": "shelves/s1/books/b2"}
        assert t.match("/v1/shelves/s1") is None

    def test_double_wildcard_spans_segments(self) -> None:
        t = PathTemplate.compile("/v1/files/{path=**}")
        assert t.match("/v1/files/a/b/c.txt") == {"path": "a/b/c.txt"}

    def test_nested_field_path(self) -> None:
        t = PathTemplate.compile("/v1/{shipping_address.city}/x")
        assert t.match("/v1/Paris/x") == {"shipping_address.city": "Paris"}

    def test_literal_characters_are_not_regex(self) -> None:
        t = PathTemplate.compile("/v1/a.b")
        assert t.match("/v1/a.b") == {}
        assert t.match("/v1/aXb") is None

    @pytest.mark.parametrize(
        "template",
        ["v1/carts", "/v1/{cart_id", "/v1/{cart_id}x", "/v1//carts", "/v1/carts/", "/v1/{a}/{a}", "/v1/{1bad}", "/v1:"],
    )
    def test_malformed_templates_are_refused(self, template: str) -> None:
        with pytest.raises(ValueError):
            PathTemplate.compile(template)

    def test_more_literal_templates_are_tried_first(self) -> None:
        preview = TABLE.match("GET", "/v1/checkout/sessions/s1/preview")
        assert preview.route.rpc.name == "PreviewOrder"


def _linear_match(method: str, path: str) -> tuple[str, object]:
    """The table's match as it was before routes were grouped by method: one scan over every route."""
    allowed: list[str] = []
    for route in TABLE.routes:
        params = route.template.match(path)
        if params is None:
            continue
        if route.http_method == method:
            return "route", (route.rpc.path, route.template.template, params)
        if route.http_method not in allowed:
            allowed.append(route.http_method)
    return ("405", tuple(allowed)) if allowed else ("404", None)


def _table_match(method: str, path: str) -> tuple[str, object]:
    try:
        found = TABLE.match(method, path)
    except MethodNotAllowed as exc:
        return "405", exc.allowed
    except RouteNotFound:
        return "404", None
    return "route", (found.route.rpc.path, found.route.template.template, found.path_params)


def test_matching_by_method_finds_what_one_scan_over_every_route_found() -> None:
    paths = {route.template.template.replace("{", "").replace("}", "") for route in TABLE.routes}
    paths |= {path for _, path, _, _ in DESIGN_ROUTES} | {"/v1/nothing", "/v1/carts/a%2Fb/items", "/"}
    for path in sorted(paths):
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"):
            assert _table_match(method, path) == _linear_match(method, path), (method, path)
