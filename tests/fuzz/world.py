"""What the fuzzer aims at: real rows in the fuzz mesh (a catalog, a customer's cart, session and paid
order, a coupon, a reservation) and the hints and seeds that point generated requests at them.

Hostile values only find storage bugs when the rest of the request is good enough to reach storage,
so every id field can name something that exists and is the caller's own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
from google.protobuf import duration_pb2, message, timestamp_pb2
from hypothesis import strategies as st

from infra.auth import ROLE_ADMIN, mint_service_token, mint_token
from infra.config import Settings
from kassa.checkout.v1 import checkout_service_pb2 as co
from kassa.common.v1 import address_pb2, money_pb2
from kassa.order.v1 import order_pb2, order_service_pb2
from kassa.payment.v1 import payment_service_pb2
from kassa.pricing.v1 import pricing_service_pb2
from kassa.promotion.v1 import promotion_pb2, promotion_service_pb2
from kassa.warehouse.v1 import inventory_pb2, inventory_service_pb2
from kassa.warehouse.v1 import inventory_service_pb2_grpc as inv_grpc

__all__ = ["Anchors", "Fresh", "FuzzWorld", "build_anchors", "hints", "prepare_webhook", "seeds", "webhook_inputs"]

ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "1 Main Street",
    "city": "Newark",
    "region": "NJ",
    "postalCode": "07102",
    "countryCode": "US",
    "phone": "+1 555 0100",
}
PRICE = 1999


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10].upper()}"


class RestCaller:
    """A small synchronous client of the gateway holding one token; raises on any refusal."""

    def __init__(self, base_url: str, token: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30, trust_env=False)
        self.token = token

    def close(self) -> None:
        self.http.close()

    def __call__(self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None) -> Any:
        h = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        resp = self.http.request(method, path, json=body, headers=h)
        if resp.status_code >= 400:
            raise AssertionError(f"setting up the fuzz world: {method} {path} -> {resp.status_code} {resp.text}")
        return resp.json()


@dataclass
class Anchors:
    """Rows that exist for the whole fuzz session (shared by every RPC's test)."""

    settings: Settings
    gateway_url: str
    admin_token: str
    service_token: str
    customer: str
    customer_token: str
    skus: list[str]
    warehouse_ids: list[str]
    coupon: str
    order_id: str
    payment_id: str
    reservation_ref: str
    categories: list[str] = field(default_factory=lambda: ["fuzz"])
    brands: list[str] = field(default_factory=lambda: ["Kassa"])

    def rest(self, token: str | None = None) -> RestCaller:
        return RestCaller(self.gateway_url, token or self.customer_token)


@dataclass
class Fresh:
    """Rows made for one RPC's test: an ACTIVE cart with a line, and an OPEN session on another cart."""

    cart_id: str
    session_id: str


@dataclass
class FuzzWorld:
    """What one RPC's test aims at: the session's rows, its own cart and session, and the row fingerprint."""

    anchors: Anchors
    fresh: Fresh
    fingerprint: Any

    def hints(self) -> dict[str, st.SearchStrategy[Any]]:
        return hints(self.anchors, self.fresh)

    def seed(self, rpc_path: str) -> Callable[[], message.Message] | None:
        return seeds(self.anchors, self.fresh).get(rpc_path)


def _make_cart(rest: RestCaller, skus: list[str]) -> str:
    cart = rest("POST", "/v1/carts", {"currencyCode": "USD"})["cart"]
    for sku in skus:
        rest("POST", f"/v1/carts/{cart['cartId']}/items", {"sku": sku, "quantity": 1})
    return str(cart["cartId"])


def _ready_session(rest: RestCaller, skus: list[str]) -> str:
    cart_id = _make_cart(rest, skus)
    session_id = str(
        rest("POST", "/v1/checkout/start", {"cartId": cart_id, "shipToCountryCode": "US"})["session"]["sessionId"]
    )
    rest(
        "PUT",
        "/v1/checkout/state",
        {"sessionId": session_id, "email": "ada@example.com", "shippingAddress": ADDRESS, "shippingMethod": "standard",
         "paymentMethod": "tok_visa"},
    )  # fmt: skip
    return session_id


def make_fresh(anchors: Anchors) -> Fresh:
    rest = anchors.rest()
    try:
        return Fresh(cart_id=_make_cart(rest, anchors.skus[:1]), session_id=_ready_session(rest, anchors.skus[1:2]))
    finally:
        rest.close()


def build_anchors(settings: Settings, gateway_url: str) -> Anchors:
    """A catalog of its own (so fuzzed stock changes touch no other test's skus), a coupon, a paid order."""
    admin_token = mint_token(settings.jwt_secret, "fuzz-admin", role=ROLE_ADMIN, ttl_seconds=24 * 3600,
                             issuer=settings.jwt_issuer, audience=settings.jwt_audience)  # fmt: skip
    service_token = mint_service_token(settings.service_secret, "fuzz", ttl_seconds=24 * 3600)
    customer = f"fuzz-{uuid.uuid4().hex[:10]}"
    customer_token = mint_token(settings.jwt_secret, customer, ttl_seconds=24 * 3600,
                                issuer=settings.jwt_issuer, audience=settings.jwt_audience)  # fmt: skip
    admin = RestCaller(gateway_url, admin_token)
    rest = RestCaller(gateway_url, customer_token)
    try:
        warehouses = [w["warehouseId"] for w in admin("GET", "/v1/admin/warehouses")["warehouses"]]
        skus = [_unique("FZ") for _ in range(4)]
        products = [
            {
                "sku": s,
                "name": f"Fuzz product {s}",
                "category": "fuzz",
                "brand": "Kassa",
                "weightGrams": "400",
                "taxClass": "standard",
                "prices": [{"currencyCode": c, "amountMinor": str(PRICE)} for c in ("USD", "EUR")],
            }
            for s in skus
        ]
        admin("POST", "/v1/admin/products", {"products": products})
        admin(
            "PUT",
            "/v1/admin/stock",
            {"items": [{"sku": s, "warehouseId": w, "onHand": "1000000"} for s in skus for w in warehouses]},
        )
        coupon = _unique("FZ").replace("-", "")
        promotion = {
            "code": coupon,
            "name": "fuzz ten percent",
            "type": "PROMOTION_TYPE_PERCENTAGE",
            "percentOff": 10,
            "usageLimit": "1000000",
            "currencyCode": "USD",
            "combinable": True,
        }
        admin("POST", "/v1/admin/promotions", {"promotion": promotion})
        # A paid order of the fuzz customer, on a sku of its own (its cancellation restocks only that one).
        session_id = _ready_session(rest, skus[3:4])
        preview = rest("GET", f"/v1/checkout/sessions/{session_id}/preview")["preview"]
        confirmed = rest(
            "POST",
            "/v1/checkout/confirm",
            {"sessionId": session_id, "expectedGrandTotal": preview["grandTotal"]},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        order_id = str(confirmed["orderId"])
        payment_id = str(rest("GET", f"/v1/orders/{order_id}")["order"]["paymentId"])
        reservation_ref = _unique("fuzz-ref")
        with grpc.insecure_channel(settings.addr("warehouse")) as ch:
            inv_grpc.InventoryServiceStub(ch).ReserveStock(
                inventory_service_pb2.ReserveStockRequest(
                    reservation_ref=reservation_ref,
                    lines=[inventory_service_pb2.ReserveLine(sku=skus[0], quantity=1)],
                    ttl=duration_pb2.Duration(seconds=24 * 3600),
                ),
                metadata=(("authorization", f"Bearer {service_token}"),),
                timeout=30,
            )
    finally:
        admin.close()
        rest.close()
    return Anchors(
        settings=settings,
        gateway_url=gateway_url,
        admin_token=admin_token,
        service_token=service_token,
        customer=customer,
        customer_token=customer_token,
        skus=skus,
        warehouse_ids=warehouses,
        coupon=coupon,
        order_id=order_id,
        payment_id=payment_id,
        reservation_ref=reservation_ref,
    )


# -- hints: valid values by field name ----------------------------------------------------------------------


def _money(amount: st.SearchStrategy[int], currency: str = "USD") -> st.SearchStrategy[money_pb2.Money]:
    return amount.map(lambda a: money_pb2.Money(currency_code=currency, amount_minor=a))


def _address() -> st.SearchStrategy[address_pb2.Address]:
    return st.just(address_pb2.Address(name="Ada Lovelace", line1="1 Main Street", city="Newark", region="NJ",
                                       postal_code="07102", country_code="US", phone="+1 555 0100"))  # fmt: skip


def hints(anchors: Anchors, fresh: Fresh | None) -> dict[str, st.SearchStrategy[Any]]:
    """Valid values keyed by field name (or ``Message.field``); each id names a row that exists."""
    uuids = st.uuids().map(str)
    cart_ids = [fresh.cart_id] if fresh else []
    session_ids = [fresh.session_id] if fresh else []
    skus = st.sampled_from(anchors.skus[:3])
    codes = st.sampled_from([anchors.coupon, "WELCOME10", "FREESHIP"])
    now = int(time.time())
    return {
        "currency_code": st.sampled_from(["USD", "USD", "EUR", "JPY"]),
        "country_code": st.sampled_from(["US", "US", "DE"]),
        "ship_to_country_code": st.sampled_from(["US", "DE", ""]),
        "sku": skus,
        "skus": skus,
        "missing_skus": skus,
        "cart_id": st.sampled_from(cart_ids) if cart_ids else uuids,
        "session_id": st.sampled_from(session_ids) if session_ids else uuids,
        "checkout_session_id": uuids,
        "order_id": st.one_of(st.just(anchors.order_id), uuids),
        "order_ref": uuids,
        "payment_id": st.one_of(st.just(anchors.payment_id), uuids),
        "promotion_id": uuids,
        "warehouse_id": st.sampled_from(anchors.warehouse_ids),
        "customer_id": st.just(anchors.customer),
        "email": st.just("ada@example.com"),
        "customer_email": st.just("ada@example.com"),
        "payment_method": st.sampled_from(["tok_visa", "cod", "tok_chargeDeclined"]),
        "shipping_method": st.sampled_from(["standard", "express"]),
        "code": codes,
        "codes": codes,
        "promotion_codes": codes,
        "Promotion.code": st.builds(lambda: _unique("FZ").replace("-", "")),
        # The admin RPCs change what they are given: aim them at the one sku no fresh cart or session uses, or at
        # new ones, and at new warehouses (a price list without USD or no stock would break every later test).
        "Product.sku": st.one_of(st.just(anchors.skus[2]), st.builds(lambda: _unique("FZN"))),
        "StockSetting.sku": st.one_of(st.just(anchors.skus[2]), st.builds(lambda: _unique("FZN"))),
        "Warehouse.warehouse_id": st.builds(lambda: _unique("fz-wh").lower()),
        "reservation_ref": st.one_of(st.just(anchors.reservation_ref), st.builds(lambda: _unique("fuzz-ref"))),
        "tax_class": st.sampled_from(["standard", "reduced", "zero"]),
        "idempotency_key": st.builds(lambda: uuid.uuid4().hex),
        "provider": st.just("sandbox"),
        "quantity": st.integers(1, 3),
        "amount_minor": st.integers(0, 5000),
        "weight_grams": st.integers(0, 5000),
        "on_hand": st.integers(100, 1000),
        "percent_off": st.integers(1, 100),
        "usage_limit": st.integers(0, 100),
        "usage_limit_per_customer": st.integers(0, 5),
        "buy_quantity": st.integers(0, 3),
        "get_quantity": st.integers(0, 3),
        "page_size": st.integers(0, 50),
        "page_token": st.just(""),
        "return_url": st.just("https://shop.example.com/return"),
        "name": st.sampled_from(["Ada Lovelace", "Fuzz product", "Main warehouse"]),
        "line1": st.just("1 Main Street"),
        "line2": st.just("Apt 2"),
        "city": st.just("Newark"),
        "region": st.just("NJ"),
        "postal_code": st.just("07102"),
        "phone": st.just("+1 555 0100"),
        "category": st.sampled_from(anchors.categories),
        "categories": st.sampled_from(anchors.categories),
        "brand": st.sampled_from(anchors.brands),
        "brands": st.sampled_from(anchors.brands),
        "notes": st.just("leave it at the door"),
        "reason": st.just("changed my mind"),
        "cause": st.just("fuzz"),
        "tracking_number": st.just("1Z999AA10123456784"),
        "carrier": st.just("ups"),
        "signature": st.just(""),
        "starts_at": st.just(timestamp_pb2.Timestamp(seconds=now - 3600)),
        "ends_at": st.just(timestamp_pb2.Timestamp(seconds=now + 86400)),
        "ttl": st.integers(1, 600).map(lambda s: duration_pb2.Duration(seconds=s)),
        "shipping_address": _address(),
        "billing_address": _address(),
        "destination": _address(),
        "origin": _address(),
        "address": _address(),
        "amount": _money(st.integers(1, 5000)),
        "shipping_total": _money(st.integers(0, 1000)),
        "unit_price": _money(st.just(PRICE)),
        "expected_grand_total": _money(st.integers(0, 10000)),
        "status": st.sampled_from([order_pb2.ORDER_STATUS_PACKED, order_pb2.ORDER_STATUS_SHIPPED]),
        "type": st.just(promotion_pb2.PROMOTION_TYPE_PERCENTAGE),
        "outcome": st.just(order_service_pb2.PAYMENT_OUTCOME_CAPTURED),
    }


# -- seeds: requests the service accepts, for RPCs whose fields must agree ------------------------------------


def _usd(amount: int = PRICE) -> money_pb2.Money:
    return money_pb2.Money(currency_code="USD", amount_minor=amount)


_ADDRESS_PB = address_pb2.Address(
    name="Ada Lovelace", line1="1 Main Street", city="Newark", region="NJ", postal_code="07102", country_code="US"
)


def _order_seed(anchors: Anchors) -> message.Message:
    """Two lines, a coupon, shipping and tax whose totals add up, held by a payment of the grand total."""
    lines = [
        order_pb2.OrderLine(
            sku=sku,
            name="Fuzz product",
            quantity=quantity,
            unit_price=_usd(),
            line_total=_usd(PRICE * quantity),
            warehouse_id=anchors.warehouse_ids[0],
            tax_class="standard",
        )
        for sku, quantity in zip(anchors.skus[:2], (1, 2), strict=True)
    ]
    subtotal, discount, shipping, tax = PRICE * 3, 100, 500, 300
    grand = subtotal - discount + shipping + tax
    return order_service_pb2.CreateOrderRequest(
        checkout_session_id=str(uuid.uuid4()),
        customer_id=anchors.customer,
        email="ada@example.com",
        lines=lines,
        discounts=[order_pb2.OrderDiscount(code=anchors.coupon, amount=_usd(discount))],
        totals=order_pb2.OrderTotals(
            subtotal=_usd(subtotal),
            discount_total=_usd(discount),
            shipping_total=_usd(shipping),
            tax_total=_usd(tax),
            grand_total=_usd(grand),
        ),
        shipping_address=_ADDRESS_PB,
        shipping_method="standard",
        payment_id=str(uuid.uuid4()),
        payment_method="tok_visa",
        notes="leave it at the door",
        authorized_amount=_usd(grand),
    )


def _promotion_line(anchors: Anchors) -> promotion_pb2.PromotionLine:
    return promotion_pb2.PromotionLine(
        sku=anchors.skus[0], category="fuzz", brand="Kassa", quantity=1, unit_price=_usd()
    )


def seeds(anchors: Anchors, fresh: Fresh | None) -> dict[str, Callable[[], message.Message]]:
    """RPC path → a builder of a request that RPC accepts (fresh ids on every call)."""
    inv, pay, pro = inventory_service_pb2, payment_service_pb2, promotion_service_pb2
    out: dict[str, Callable[[], message.Message]] = {
        "/kassa.order.v1.OrderService/CreateOrder": lambda: _order_seed(anchors),
        "/kassa.pricing.v1.PricingService/UpsertProducts": lambda: pricing_service_pb2.UpsertProductsRequest(
            products=[
                pricing_service_pb2.Product(
                    sku=_unique("FZN"),
                    name="New fuzz product",
                    category="fuzz",
                    brand="Kassa",
                    weight_grams=300,
                    tax_class="standard",
                    prices=[_usd()],
                )
            ]
        ),
        "/kassa.promotion.v1.PromotionService/CreatePromotion": lambda: pro.CreatePromotionRequest(
            promotion=promotion_pb2.Promotion(
                code=_unique("FZ").replace("-", ""),
                name="fuzz promo",
                type=promotion_pb2.PROMOTION_TYPE_PERCENTAGE,
                percent_off=5,
                currency_code="USD",
                usage_limit=10,
                conditions=promotion_pb2.PromotionConditions(categories=["fuzz"]),
            )
        ),
        "/kassa.warehouse.v1.InventoryService/SetStock": lambda: inv.SetStockRequest(
            items=[inv.StockSetting(sku=anchors.skus[2], warehouse_id=anchors.warehouse_ids[0], on_hand=1_000_000)]
        ),
        "/kassa.warehouse.v1.InventoryService/UpsertWarehouses": lambda: inv.UpsertWarehousesRequest(
            warehouses=[
                inventory_pb2.Warehouse(
                    warehouse_id=_unique("fz-wh").lower(), name="Fuzz warehouse", address=_ADDRESS_PB
                )
            ]
        ),
        "/kassa.warehouse.v1.InventoryService/ReserveStock": lambda: inv.ReserveStockRequest(
            reservation_ref=_unique("fuzz-ref"),
            lines=[inv.ReserveLine(sku=anchors.skus[2], quantity=1)],
            ship_to_country_code="US",
            ttl=duration_pb2.Duration(seconds=30),
        ),
        "/kassa.payment.v1.PaymentService/AuthorizePayment": lambda: pay.AuthorizePaymentRequest(
            idempotency_key=uuid.uuid4().hex,
            order_ref=str(uuid.uuid4()),
            amount=_usd(),
            payment_method="tok_visa",
            customer_id=anchors.customer,
            customer_email="ada@example.com",
            return_url="https://shop.example.com/r",
        ),
        "/kassa.promotion.v1.PromotionService/ReservePromotionUsage": lambda: pro.ReservePromotionUsageRequest(
            reservation_ref=_unique("fuzz-ref"),
            codes=[anchors.coupon],
            currency_code="USD",
            customer_id=anchors.customer,
            lines=[_promotion_line(anchors)],
            shipping_total=_usd(500),
        ),
        "/kassa.promotion.v1.PromotionService/ValidatePromotions": lambda: pro.ValidatePromotionsRequest(
            codes=[anchors.coupon], currency_code="USD", customer_id=anchors.customer, lines=[_promotion_line(anchors)]
        ),
        "/kassa.payment.v1.PaymentService/RefundPayment": lambda: pay.RefundPaymentRequest(
            order_id=anchors.order_id, amount=_usd(1), idempotency_key=uuid.uuid4().hex, reason="fuzz"
        ),
    }
    if fresh is not None:
        out["/kassa.checkout.v1.CheckoutService/UpdateCheckoutState"] = lambda: co.UpdateCheckoutStateRequest(
            session_id=fresh.session_id,
            email="ada@example.com",
            shipping_address=_ADDRESS_PB,
            billing_address=_ADDRESS_PB,
            shipping_method="express",
            payment_method="tok_visa",
            promotion_codes=[anchors.coupon],
            notes="ring twice",
        )
    return out


# -- webhooks: signed provider events with hostile contents ----------------------------------------------------

_EVENT_TYPES = ("payment_intent.amount_capturable_updated", "payment_intent.succeeded", "payment_intent.payment_failed",
                "payment_intent.canceled", "charge.refunded", "customer.created")  # fmt: skip
_INTENT_STATUSES = ("requires_action", "requires_capture", "succeeded", "canceled", "requires_payment_method")


# Placeholders a drawn event may carry: replaced, before signing, by a payment authorized for that one input
# (and its provider intent), so events land on payments in every state, not only on the paid anchor order.
FRESH_PAYMENT = "fresh-payment-id"
FRESH_INTENT = "fresh-intent-id"


def webhook_events(anchors: Anchors) -> st.SearchStrategy[Any]:
    """Sandbox-shaped events (JSON values) whose ids, types, amounts and texts are hostile."""
    from fuzz.strategies import hostile_text

    text = st.one_of(hostile_text(), st.builds(lambda: f"evt_{uuid.uuid4().hex}"))
    number = st.one_of(
        st.integers(-5, 10**6), st.integers(-(2**80), 2**80), st.floats(), text, st.none(), st.booleans()
    )
    metadata = st.one_of(
        st.just({"payment_id": FRESH_PAYMENT}),
        st.just({"payment_id": FRESH_PAYMENT}),
        st.just({"payment_id": anchors.payment_id}),
        st.dictionaries(text, st.one_of(text, number), max_size=3),
        st.builds(lambda t: {"payment_id": t}, text),
    )
    intent = st.fixed_dictionaries(
        {"id": st.one_of(st.just(FRESH_INTENT), text), "object": st.just("payment_intent")},
        optional={
            "status": st.one_of(st.sampled_from(_INTENT_STATUSES), text),
            "amount": number, "amount_capturable": number, "amount_received": number, "amount_refunded": number,
            "next_action": st.one_of(st.none(), st.fixed_dictionaries({"redirect_url": text})),
            "last_payment_error": st.one_of(
                st.none(), st.fixed_dictionaries({}, optional={"code": text, "message": text})
            ),
            "metadata": metadata, "created": number,
        },
    )  # fmt: skip
    return st.fixed_dictionaries(
        {"id": text, "type": st.one_of(st.sampled_from(_EVENT_TYPES), text)},
        optional={"data": st.fixed_dictionaries({"object": intent}), "created": number},
    )


def webhook_inputs(anchors: Anchors) -> st.SearchStrategy[tuple[bytes, str, str]]:
    """(payload, how to sign it, the token of a fresh payment): an event as JSON or raw bytes; "signed",
    "forged" or "none"; the fresh payment (if the event names one) authorized, awaiting 3-D Secure or declined."""
    import json

    def dumps(event: Any, ascii_only: bool) -> bytes:
        return json.dumps(event, ensure_ascii=ascii_only).encode()

    payloads = st.one_of(
        st.builds(dumps, webhook_events(anchors), st.booleans()),
        st.builds(dumps, webhook_events(anchors), st.booleans()),
        st.binary(max_size=512),
        st.sampled_from([b"{}", b"[]", b"null", b'{"id": "", "type": ""}', b'{"id": null}', b"\xff\xfe", b"{" * 5000]),
    )
    return st.tuples(
        payloads,
        st.sampled_from(("signed", "signed", "signed", "forged", "none")),
        st.sampled_from(("tok_visa", "tok_threeDSecure", "tok_chargeDeclined")),
    )


def prepare_webhook(anchors: Anchors, payload: bytes, how: str, token: str) -> tuple[bytes, str]:
    """Fill in a fresh payment where the event asks for one, then sign (or forge, or not sign) the bytes."""
    from infra.webhook_signature import sign
    from kassa.payment.v1 import payment_service_pb2_grpc

    if FRESH_PAYMENT.encode() in payload or FRESH_INTENT.encode() in payload:
        payment_id, intent_id = anchors.payment_id, "pi_none"
        with grpc.insecure_channel(anchors.settings.addr("payment")) as ch:
            try:
                payment = payment_service_pb2_grpc.PaymentServiceStub(ch).AuthorizePayment(
                    payment_service_pb2.AuthorizePaymentRequest(
                        idempotency_key=uuid.uuid4().hex, order_ref=str(uuid.uuid4()),
                        amount=money_pb2.Money(currency_code="USD", amount_minor=PRICE),
                        payment_method=token, customer_id=anchors.customer,
                        return_url="https://shop.example.com/return"),
                    metadata=(("authorization", f"Bearer {anchors.service_token}"),), timeout=30).payment  # fmt: skip
                payment_id, intent_id = payment.payment_id, payment.provider_payment_id or intent_id
            except grpc.RpcError:
                pass  # a declined card: the event names the paid anchor order's payment instead
        payload = payload.replace(FRESH_PAYMENT.encode(), payment_id.encode())
        payload = payload.replace(FRESH_INTENT.encode(), intent_id.encode())
    if how == "signed":
        return payload, sign(anchors.settings.webhook_secret, payload)
    if how == "forged":
        return payload, f"t={int(time.time())},v1={'0' * 64}"
    return payload, ""
