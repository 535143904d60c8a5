"""Every gRPC method of every service, called directly (no gateway) as an attacker would.

The methods are read from the generated descriptors (every ``kassa.<svc>.v1`` service module), so a new RPC
is covered the day it is added. Against the real mesh:

* without a token, or with an expired, forged, ``alg: none`` or role-forging one: UNAUTHENTICATED;
* as a customer or a guest, on a method no REST route offers customers (internal and admin RPCs):
  PERMISSION_DENIED, except the catalog reads listed in ``PUBLIC_READS``, which hold no one's data;
* as another customer or a guest, on the customer methods, aimed at a victim's open cart, open checkout
  session and placed order: NOT_FOUND or PERMISSION_DENIED, with nothing of the victim's in the answer,
  and the victim's cart, session and order unchanged afterwards.
"""

from __future__ import annotations

import importlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import pytest_asyncio
from e2e.support import Rest, confirm, fill_cart, make_catalog, ready_session
from google.protobuf import descriptor, json_format
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

import kassa
from gateway.routing import routes_for_method
from infra.audit import AUDITED_SERVICES
from infra.auth import ROLE_ADMIN, mint_token
from infra.ops import OUTBOX_SERVICES
from kassa.common.v1 import address_pb2, money_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

ADMIN_PREFIX = "/v1/admin/"
# Catalog reads any caller may make (prices, shipping quotes, tax): they hold no customer's data.
PUBLIC_READS = frozenset(
    {
        "kassa.pricing.v1.PricingService.GetProducts",
        "kassa.pricing.v1.PricingService.QuoteShipping",
        "kassa.pricing.v1.PricingService.CalculateTax",
        "kassa.pricing.v1.PricingService.QuoteOrder",
    }
)
DENIED = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED}
ADDRESS = address_pb2.Address(
    name="Eve Intruder", line1="1 Side St", city="Newark", postal_code="07102", country_code="US"
)


def _service_methods() -> Iterator[descriptor.MethodDescriptor]:
    """Every method of every service in the generated ``kassa/<svc>/v<n>/*_pb2.py`` modules."""
    found = {
        f"kassa.{path.parent.parent.name}.{path.parent.name}.{path.stem}"
        for root in kassa.__path__
        if Path(root).is_dir()
        for path in Path(root).glob("*/v*/*_pb2.py")
    }
    for name in sorted(found):
        for service in importlib.import_module(name).DESCRIPTOR.services_by_name.values():
            yield from service.methods


METHODS = sorted(_service_methods(), key=lambda m: m.full_name)


def _customer_facing(method: descriptor.MethodDescriptor) -> bool:
    return any(not r.template.template.startswith(ADMIN_PREFIX) for r in routes_for_method(method))


CUSTOMER_METHODS = [m for m in METHODS if _customer_facing(m)]
PRIVILEGED_METHODS = [m for m in METHODS if not _customer_facing(m) and m.full_name not in PUBLIC_READS]


def test_the_descriptors_hold_every_service_and_the_lists_are_current() -> None:
    services = {m.containing_service.full_name for m in METHODS}
    # kassa.audit.v1.AuditService is served by each audited service (checked on every one of them), and
    # kassa.ops.v1.OutboxService by each service with an outbox.
    assert {s.split(".")[1] for s in services} == {
        "checkout", "order", "payment", "warehouse", "pricing", "promotion", "notification", "audit", "ops"
    }  # fmt: skip
    # The notification service's listings are for operators only: no route, admin tokens only.
    assert {m.name for m in PRIVILEGED_METHODS} >= {"ListMessages", "ListDeadLetters"}
    assert len(METHODS) >= 40
    assert {m.full_name for m in METHODS} >= PUBLIC_READS
    assert {m.name for m in CUSTOMER_METHODS} >= {"GetCart", "ConfirmCheckout", "GetOrder", "CancelOrder"}


def _ids(method: descriptor.MethodDescriptor) -> str:
    return f"{method.containing_service.name}.{method.name}"


async def _call(
    channel: grpc.aio.Channel, method: descriptor.MethodDescriptor, request: Message, token: str | None
) -> tuple[grpc.StatusCode, str, Message | None]:
    stub = channel.unary_unary(
        f"/{method.containing_service.full_name}/{method.name}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=GetMessageClass(method.output_type).FromString,
    )
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
    try:
        reply = await stub(request, metadata=metadata, timeout=20)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or "", None
    return grpc.StatusCode.OK, "", reply


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def channels(mesh: Any) -> AsyncIterator[dict[str, grpc.aio.Channel]]:
    names = {backend for m in METHODS for backend in _backends(m)}
    opened = {name: grpc.aio.insecure_channel(mesh.addr(name)) for name in names}
    try:
        yield opened
    finally:
        for channel in opened.values():
            await channel.close()


def _channel(channels: dict[str, grpc.aio.Channel], method: descriptor.MethodDescriptor) -> grpc.aio.Channel:
    return channels[method.containing_service.full_name.split(".")[1]]


def _backends(method: descriptor.MethodDescriptor) -> tuple[str, ...]:
    """The processes serving ``method``: its service's, or for the audit log (the outbox status) each audited
    service (each service with an outbox)."""
    name = method.containing_service.full_name.split(".")[1]
    return {"audit": AUDITED_SERVICES, "ops": OUTBOX_SERVICES}.get(name, (name,))


def _channels_of(channels: dict[str, grpc.aio.Channel], method: descriptor.MethodDescriptor) -> list[grpc.aio.Channel]:
    return [channels[backend] for backend in _backends(method)]


# -- no caller, or a forged one ----------------------------------------------------------------------------------


def _forged_tokens(secret: str) -> dict[str, str | None]:
    now = int(time.time())
    unsigned = ".".join(
        jwt.utils.base64url_encode(json.dumps(part).encode()).decode()
        for part in ({"alg": "none", "typ": "JWT"}, {"sub": "ops", "role": "admin", "exp": now + 600})
    )
    return {
        "none": None,
        "expired": mint_token(secret, "ops", role=ROLE_ADMIN, ttl_seconds=-10),
        "wrong-key": mint_token("x" * 48, "ops", role=ROLE_ADMIN),
        "alg-none": unsigned + ".",
        "role-service": jwt.encode({"sub": "cust-1", "role": "service", "exp": now + 600}, secret, algorithm="HS256"),
        "garbage": "not.a.token",
    }


@pytest.mark.parametrize("method", METHODS, ids=_ids)
async def test_every_method_refuses_a_missing_or_forged_token(
    mesh: Any, channels: dict[str, grpc.aio.Channel], method: descriptor.MethodDescriptor
) -> None:
    request = GetMessageClass(method.input_type)()
    for channel in _channels_of(channels, method):
        for name, token in _forged_tokens(mesh.env["KASSA_JWT_SECRET"]).items():
            code, details, _ = await _call(channel, method, request, token)
            assert code == grpc.StatusCode.UNAUTHENTICATED, f"{method.full_name} with a {name} token: {code} {details}"


# -- a victim's data -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Victim:
    customer_id: str
    token: str
    sku: str
    cart_id: str  # open, with items
    session_id: str  # open, ready to confirm
    order_id: str  # placed and paid
    payment_id: str

    def secrets(self) -> list[str]:
        return [self.customer_id, self.cart_id, self.session_id, self.order_id, self.payment_id]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def victim(mesh: Any) -> Victim:
    skus = await make_catalog(mesh, n=2)
    customer_id = f"victim-{uuid.uuid4().hex[:10]}"
    token = mint_token(mesh.env["KASSA_JWT_SECRET"], customer_id)
    client = Rest(mesh.gateway_url, token)
    try:
        placed = await ready_session(client, await fill_cart(client, skus, [1, 1]))
        order_id = (await confirm(client, placed["session_id"], placed["preview"]["grandTotal"]))["orderId"]
        order = (await client.call("GET", f"/v1/orders/{order_id}"))["order"]
        session = await ready_session(client, await fill_cart(client, skus, [1, 2]))
        cart_id = await fill_cart(client, skus, [2, 1])
    finally:
        await client.close()
    return Victim(customer_id, token, skus[0], cart_id, session["session_id"], order_id, order["paymentId"])


def _filled(method: descriptor.MethodDescriptor, victim: Victim) -> tuple[Message, bool]:
    """A plausible request for ``method``, every id in it the victim's; and whether it names a victim resource."""
    money = money_pb2.Money(currency_code="USD", amount_minor=1000)
    values: dict[str, Any] = {
        "cart_id": victim.cart_id,
        "session_id": victim.session_id,
        "checkout_session_id": victim.session_id,
        "reservation_ref": victim.session_id,
        "order_id": victim.order_id,
        "order_ref": victim.order_id,
        "payment_id": victim.payment_id,
        "customer_id": victim.customer_id,
        "sku": victim.sku,
        "skus": [victim.sku],
        "quantity": 1,
        "currency_code": "USD",
        "ship_to_country_code": "US",
        "email": "eve@example.com",
        "customer_email": "eve@example.com",
        "shipping_address": ADDRESS,
        "billing_address": ADDRESS,
        "destination": ADDRESS,
        "shipping_method": "standard",
        "payment_method": "tok_visa",
        "idempotency_key": uuid.uuid4().hex,
        "expected_grand_total": money,
        "amount": money,
        "authorized_amount": money,
        "shipping_total": money,
        "reason": "taking a look",
        "notes": "taking a look",
        "page_size": 50,
    }
    victim_fields = {"cart_id", "session_id", "checkout_session_id", "reservation_ref", "order_id", "order_ref",
                     "payment_id"}  # fmt: skip
    request = GetMessageClass(method.input_type)()
    names_victim = False
    for field in method.input_type.fields:
        if field.name not in values:
            continue
        value = values[field.name]
        if isinstance(value, Message):
            getattr(request, field.name).CopyFrom(value)
        elif isinstance(value, list):
            getattr(request, field.name).extend(value)
        else:
            setattr(request, field.name, value)
        names_victim |= field.name in victim_fields
    return request, names_victim


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def intruders(mesh: Any) -> dict[str, str]:
    """Another customer, and a guest from the gateway, as a web client gets one."""
    guest = Rest(mesh.gateway_url)
    try:
        await guest.guest()
    finally:
        await guest.close()
    assert guest.token is not None
    other = mint_token(mesh.env["KASSA_JWT_SECRET"], f"intruder-{uuid.uuid4().hex[:10]}")
    return {"customer": other, "guest": guest.token}


@pytest.mark.parametrize("who", ["customer", "guest"])
@pytest.mark.parametrize("method", PRIVILEGED_METHODS, ids=_ids)
async def test_customers_and_guests_may_not_call_internal_or_admin_methods(
    channels: dict[str, grpc.aio.Channel],
    victim: Victim,
    intruders: dict[str, str],
    method: descriptor.MethodDescriptor,
    who: str,
) -> None:
    for channel in _channels_of(channels, method):
        for request in (GetMessageClass(method.input_type)(), _filled(method, victim)[0]):
            code, details, _ = await _call(channel, method, request, intruders[who])
            assert code == grpc.StatusCode.PERMISSION_DENIED, f"{method.full_name} as a {who}: {code} {details}"


@pytest.mark.parametrize("who", ["customer", "guest"])
@pytest.mark.parametrize("method", CUSTOMER_METHODS, ids=_ids)
async def test_another_customer_or_a_guest_never_reaches_a_victims_data(
    channels: dict[str, grpc.aio.Channel],
    victim: Victim,
    intruders: dict[str, str],
    method: descriptor.MethodDescriptor,
    who: str,
) -> None:
    request, names_victim = _filled(method, victim)
    code, details, reply = await _call(_channel(channels, method), method, request, intruders[who])
    if names_victim:
        assert code in DENIED, f"{method.full_name} as a {who} on the victim's data: {code} {details}"
    else:
        # Nothing of the victim's named (CreateCart, ListOrders): whatever it answers is the intruder's own.
        assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), details
    seen = details + (json_format.MessageToJson(reply) if reply is not None else "")
    # An error may repeat an id the intruder sent; anything else of the victim's is a leak.
    sent = str(request)
    leaked = [value for value in victim.secrets() if value in seen and value not in sent]
    assert not leaked, f"{method.full_name} as a {who} answered with the victim's {leaked}: {seen[:500]}"


@pytest.mark.parametrize("method", sorted(PUBLIC_READS))
async def test_the_public_catalog_reads_answer_customers_and_guests(
    channels: dict[str, grpc.aio.Channel], victim: Victim, intruders: dict[str, str], method: str
) -> None:
    found = next(m for m in METHODS if m.full_name == method)
    for who, token in intruders.items():
        code, details, reply = await _call(_channel(channels, found), found, _filled(found, victim)[0], token)
        assert code not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED), (who, details)
        assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (who, details)
        text = details + (json_format.MessageToJson(reply) if reply is not None else "")
        assert victim.customer_id not in text


async def test_the_victims_cart_session_and_order_are_untouched(mesh: Any, victim: Victim) -> None:
    """Runs after the intrusions above (pytest keeps file order): nothing the intruders sent changed anything."""
    client = Rest(mesh.gateway_url, victim.token)
    try:
        cart = (await client.call("GET", f"/v1/carts/{victim.cart_id}"))["cart"]
        assert cart["status"] == "CART_STATUS_ACTIVE"
        assert sorted(int(i["quantity"]) for i in cart["items"]) == [1, 2]
        session = (await client.call("GET", f"/v1/checkout/sessions/{victim.session_id}"))["session"]
        assert session["status"] == "SESSION_STATUS_OPEN"
        assert session["email"] == "ada@example.com"
        assert "eve" not in json.dumps(session).lower()
        order = (await client.call("GET", f"/v1/orders/{victim.order_id}"))["order"]
        assert order["status"] == "ORDER_STATUS_CONFIRMED"
    finally:
        await client.close()
