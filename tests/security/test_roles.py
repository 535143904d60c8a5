"""Who may call which RPC of warehouse, pricing and promotion, for every kind of caller.

Three kinds of RPC, each with one rule:
- admin operations (the /v1/admin routes: stock, warehouses, products, promotions) change what Kassa
  sells; only an operator's admin token may, never a service token (no service makes them, so a
  leaked or forged service credential must not be able to reprice the catalog or mint coupons);
- internal operations (reservations, promotion usage) are steps of checkout's saga and of order
  events; only a service token may, so an admin can't reserve or consume outside a checkout;
- privileged reads (stock levels, reservations, warehouses, promotion previews, the catalog's changes) are
  for services and operators alike.
Customers and guests may call none of them; a call with no identity is UNAUTHENTICATED.

The servicers are called directly with the identity the auth interceptor would have set, over a
store that raises ``Reached`` on first use: a call that gets past the role check reaches it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from infra.auth import ROLE_ADMIN, ROLE_SERVICE, Identity, Unauthenticated, identity_var
from kassa.common.v1 import address_pb2, money_pb2
from kassa.pricing.v1 import pricing_service_pb2 as pricing_pb
from kassa.promotion.v1 import promotion_pb2, promotion_service_pb2
from kassa.warehouse.v1 import inventory_pb2
from kassa.warehouse.v1 import inventory_service_pb2 as inventory_pb
from kernel.errors import PermissionDenied
from pricing.service.pricing_service import PricingServiceServicer
from promotion.biz.create import CreatePromotion
from promotion.biz.reserve import ReservePromotionUsage
from promotion.biz.settle import ConfirmPromotionUsage, ReleasePromotionUsage
from promotion.biz.validate import ValidatePromotions
from promotion.service.promotion_service import PromotionServiceServicer
from warehouse.service.inventory_service import InventoryServiceServicer

pytestmark = pytest.mark.unit


class Reached(Exception):
    """The call got past the role check and its validation to the store."""


class Tripwire:
    def __getattr__(self, name: str) -> Any:
        raise Reached(name)


IDENTITIES = {
    "anonymous": None,
    "customer": Identity(subject="cust-1"),
    "guest": Identity(subject="guest-1", guest=True),
    "service": Identity(subject="svc:checkout", role=ROLE_SERVICE),
    "admin": Identity(subject="ops-1", role=ROLE_ADMIN),
    # A role Kassa doesn't know is nobody's.
    "other-role": Identity(subject="x-1", role="superuser"),
}

inventory = InventoryServiceServicer(Tripwire(), default_ttl_seconds=900)  # type: ignore[arg-type]
pricing = PricingServiceServicer(Tripwire())  # type: ignore[arg-type]


def _clock() -> datetime:
    return datetime(2030, 1, 1, tzinfo=UTC)


promotion = PromotionServiceServicer(
    validate=ValidatePromotions(Tripwire(), _clock),  # type: ignore[arg-type]
    reserve=ReservePromotionUsage(Tripwire(), _clock),  # type: ignore[arg-type]
    confirm=ConfirmPromotionUsage(Tripwire()),  # type: ignore[arg-type]
    release=ReleasePromotionUsage(Tripwire()),  # type: ignore[arg-type]
    create=CreatePromotion(Tripwire()),  # type: ignore[arg-type]
)

USD = money_pb2.Money(currency_code="USD", amount_minor=1000)
ADDRESS = address_pb2.Address(name="Depot", line1="1 Quay", city="Oslo", postal_code="0150", country_code="NO")
LINE = promotion_pb2.PromotionLine(sku="SKU-1", category="c", brand="b", quantity=1, unit_price=USD)

Call = Callable[[], Awaitable[Any]]

ADMIN_ONLY: dict[str, Call] = {
    "InventoryService.SetStock": lambda: inventory.SetStock(
        inventory_pb.SetStockRequest(items=[inventory_pb.StockSetting(sku="SKU-1", warehouse_id="wh-1", on_hand=5)]),
        None,  # type: ignore[arg-type]
    ),
    "InventoryService.UpsertWarehouses": lambda: inventory.UpsertWarehouses(
        inventory_pb.UpsertWarehousesRequest(
            warehouses=[inventory_pb2.Warehouse(warehouse_id="wh-1", name="Depot", address=ADDRESS)]
        ),
        None,  # type: ignore[arg-type]
    ),
    "PricingService.UpsertProducts": lambda: pricing.UpsertProducts(
        pricing_pb.UpsertProductsRequest(
            products=[pricing_pb.Product(sku="SKU-1", name="Keyboard", tax_class="standard", prices=[USD])]
        ),
        None,  # type: ignore[arg-type]
    ),
    "PromotionService.CreatePromotion": lambda: promotion.CreatePromotion(
        promotion_service_pb2.CreatePromotionRequest(
            promotion=promotion_pb2.Promotion(
                code="SAVE10", name="Save 10", type=promotion_pb2.PROMOTION_TYPE_PERCENTAGE, percent_off=10
            )
        ),
        None,  # type: ignore[arg-type]
    ),
}

SERVICE_ONLY: dict[str, Call] = {
    "InventoryService.ReserveStock": lambda: inventory.ReserveStock(
        inventory_pb.ReserveStockRequest(
            reservation_ref="ref-1", lines=[inventory_pb.ReserveLine(sku="S", quantity=1)]
        ),
        None,  # type: ignore[arg-type]
    ),
    "InventoryService.ExtendReservations": lambda: inventory.ExtendReservations(
        inventory_pb.ExtendReservationsRequest(reservation_ref="ref-1"),
        None,  # type: ignore[arg-type]
    ),
    "InventoryService.ReleaseReservations": lambda: inventory.ReleaseReservations(
        inventory_pb.ReleaseReservationsRequest(reservation_ref="ref-1"),
        None,  # type: ignore[arg-type]
    ),
    "InventoryService.ConfirmReservations": lambda: inventory.ConfirmReservations(
        inventory_pb.ConfirmReservationsRequest(reservation_ref="ref-1"),
        None,  # type: ignore[arg-type]
    ),
    "PromotionService.ReservePromotionUsage": lambda: promotion.ReservePromotionUsage(
        promotion_service_pb2.ReservePromotionUsageRequest(
            reservation_ref="ref-1", codes=["SAVE10"], lines=[LINE], currency_code="USD", customer_id="cust-1"
        ),
        None,  # type: ignore[arg-type]
    ),
    "PromotionService.ConfirmPromotionUsage": lambda: promotion.ConfirmPromotionUsage(
        promotion_service_pb2.ConfirmPromotionUsageRequest(reservation_ref="ref-1"),
        None,  # type: ignore[arg-type]
    ),
    "PromotionService.ReleasePromotionUsage": lambda: promotion.ReleasePromotionUsage(
        promotion_service_pb2.ReleasePromotionUsageRequest(reservation_ref="ref-1"),
        None,  # type: ignore[arg-type]
    ),
}

PRIVILEGED_READS: dict[str, Call] = {
    "InventoryService.CheckStock": lambda: inventory.CheckStock(
        inventory_pb.CheckStockRequest(items=[inventory_pb.StockQuery(sku="S", quantity=1)]),
        None,  # type: ignore[arg-type]
    ),
    "InventoryService.BatchGetReservations": lambda: inventory.BatchGetReservations(
        inventory_pb.BatchGetReservationsRequest(reservation_ref="ref-1"),
        None,  # type: ignore[arg-type]
    ),
    "InventoryService.ListWarehouses": lambda: inventory.ListWarehouses(
        inventory_pb.ListWarehousesRequest(),
        None,  # type: ignore[arg-type]
    ),
    "PricingService.SyncProducts": lambda: pricing.SyncProducts(
        pricing_pb.SyncProductsRequest(),
        None,  # type: ignore[arg-type]
    ),
    "PromotionService.ValidatePromotions": lambda: promotion.ValidatePromotions(
        promotion_service_pb2.ValidatePromotionsRequest(
            codes=["SAVE10"], lines=[LINE], currency_code="USD", customer_id="cust-1"
        ),
        None,  # type: ignore[arg-type]
    ),
}

ALLOWED = {
    **{(rpc, "admin"): True for rpc in ADMIN_ONLY},
    **{(rpc, "service"): True for rpc in SERVICE_ONLY},
    **{(rpc, who): True for rpc in PRIVILEGED_READS for who in ("admin", "service")},
}
CALLS = {**ADMIN_ONLY, **SERVICE_ONLY, **PRIVILEGED_READS}


def expected(rpc: str, who: str) -> str:
    if who == "anonymous":
        return "unauthenticated"
    return "allowed" if ALLOWED.get((rpc, who)) else "denied"


async def outcome(call: Call, who: str) -> str:
    token = identity_var.set(IDENTITIES[who])
    try:
        await call()
    except Reached:
        return "allowed"
    except Unauthenticated:
        return "unauthenticated"
    except PermissionDenied:
        return "denied"
    finally:
        identity_var.reset(token)
    raise AssertionError("the call returned without reaching the store")


@pytest.mark.parametrize("who", list(IDENTITIES))
@pytest.mark.parametrize("rpc", list(CALLS))
async def test_role_matrix(rpc: str, who: str) -> None:
    assert await outcome(CALLS[rpc], who) == expected(rpc, who)


def test_every_rpc_of_the_three_services_is_in_the_matrix() -> None:
    """A new RPC must be given a rule here before it ships."""
    public = {f"PricingService.{m}" for m in ("GetProducts", "QuoteShipping", "CalculateTax", "QuoteOrder")}
    declared = {
        f"{service.name}.{method.name}"
        for descriptor in (
            inventory_pb.DESCRIPTOR,
            pricing_pb.DESCRIPTOR,
            promotion_service_pb2.DESCRIPTOR,
        )
        for service in descriptor.services_by_name.values()
        for method in service.methods
    }
    assert declared == set(CALLS) | public
