"""Checkout test fixtures: an in-memory world of fakes (unit) and a served checkout on the real stack (integration)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import pytest_asyncio

from checkout.biz.cart.manage import CartUseCases
from checkout.biz.cart.recent import RecentCarts
from checkout.biz.checkout.compensations import Compensator
from checkout.biz.checkout.complete_payment import PaymentCompletion
from checkout.biz.checkout.confirm import ConfirmCheckout
from checkout.biz.checkout.dlq import FailedCompensationDrain
from checkout.biz.checkout.expiry import SessionExpiry
from checkout.biz.checkout.pricing_engine import PricingEngine
from checkout.biz.checkout.recent import RecentSessions
from checkout.biz.checkout.recovery import SagaRecovery
from checkout.biz.checkout.settle import Settlement
from checkout.biz.checkout.start import StartCheckout
from checkout.biz.checkout.update_state import CheckoutState, StateUpdate
from checkout.biz.policy import CheckoutPolicy
from checkout.biz.ports import Gateways
from checkout.biz.retry import RetryPolicy
from checkout.bootstrap import Container, build
from checkout.model.catalog import Address
from checkout.model.session import ConfirmResult, Session
from checkout.service.validation import check_state_update
from devstack.localstack import StackEndpoints
from infra.config import Settings
from infra.migrate import migrate
from infra.runner import running_service
from kernel.caller import Caller
from tests.checkout.fakes import (
    FakeIdempotencyStore,
    FakeInventoryGateway,
    FakeOrderGateway,
    FakePaymentGateway,
    FakePricingGateway,
    FakePromotionGateway,
    FakeUnitOfWork,
)

FAST_RETRY = RetryPolicy(attempts=2, initial_seconds=0.001, max_seconds=0.002)
ADDRESS = Address("Ada Lovelace", "12 Analytical St", "", "London", "", "N1 9GU", "GB", "")


@pytest.fixture(scope="session")
def migrated(stack: StackEndpoints) -> StackEndpoints:
    """Only checkout's schema: the other services' migrations are not this suite's concern."""
    migrate(stack.database_url, ["checkout"])
    return stack


@dataclass
class World:
    """Every checkout use case wired to in-memory fakes, with one signed-in customer."""

    uow: FakeUnitOfWork
    pricing: FakePricingGateway
    inventory: FakeInventoryGateway
    promotion: FakePromotionGateway
    payment: FakePaymentGateway
    order: FakeOrderGateway
    store: FakeIdempotencyStore
    policy: CheckoutPolicy
    carts: CartUseCases
    start: StartCheckout
    state: CheckoutState
    confirm: ConfirmCheckout
    drain: FailedCompensationDrain
    recovery: SagaRecovery
    completion: PaymentCompletion
    expiry: SessionExpiry
    engine: PricingEngine
    compensator: Compensator
    recent_carts: RecentCarts
    recent_sessions: RecentSessions
    customer: Caller = field(default_factory=lambda: Caller("cust-ada"))

    async def ready_session(
        self,
        items: tuple[tuple[str, int], ...] = (("SKU-1", 2),),
        *,
        payment_method: str = "tok_visa",
        codes: tuple[str, ...] = (),
    ) -> Session:
        """A cart with ``items`` (priced 1000 each unless already in the catalog), started and filled in."""
        for sku, quantity in items:
            if sku not in self.pricing.products:
                self.pricing.add(sku, 1000)
            self.inventory.stock[sku] = self.inventory.stock.get(sku, 0) + quantity
        cart = await self.carts.create(self.customer, "USD")
        for sku, quantity in items:
            await self.carts.add_item(self.customer, cart.cart_id, sku, quantity)
        session, _ = await self.start(self.customer, cart.cart_id)
        update = StateUpdate(
            email="ada@example.com",
            shipping_address=ADDRESS,
            shipping_method="standard",
            payment_method=payment_method,
            promotion_codes=list(codes) or None,
        )
        # As CheckoutServiceServicer calls it: the request's checks (which also upper-case the codes) first.
        return await self.state.update(self.customer, session.session_id, check_state_update(update))

    async def confirm_session(self, session: Session, key: str = "key-1") -> ConfirmResult:
        assert session.preview is not None
        return await self.confirm(self.customer, session.session_id, key, session.preview.grand_total)


def make_world(**policy: Any) -> World:
    uow = FakeUnitOfWork()
    gateways = Gateways(
        pricing=FakePricingGateway(),
        inventory=FakeInventoryGateway(),
        promotion=FakePromotionGateway(),
        payment=FakePaymentGateway(),
        order=FakeOrderGateway(),
    )
    pol = CheckoutPolicy(retry=FAST_RETRY, pricing_deadline_seconds=2.0, **policy)
    store = FakeIdempotencyStore()
    engine = PricingEngine(gateways.pricing, gateways.promotion, pol.pricing_deadline_seconds)
    compensator = Compensator(uow, gateways, pol.retry)
    expiry = SessionExpiry(uow, compensator)
    settlement = Settlement(uow, gateways, compensator, pol)
    recent = RecentSessions()  # shared by StartCheckout and CheckoutState, as bootstrap wires them
    recent_carts = RecentCarts()  # shared by the cart use cases and StartCheckout, as bootstrap wires them
    confirm = ConfirmCheckout(
        uow, gateways, engine, store, compensator, settlement=settlement, policy=pol, recent=recent
    )
    return World(
        uow=uow,
        pricing=gateways.pricing,  # type: ignore[arg-type]
        inventory=gateways.inventory,  # type: ignore[arg-type]
        promotion=gateways.promotion,  # type: ignore[arg-type]
        payment=gateways.payment,  # type: ignore[arg-type]
        order=gateways.order,  # type: ignore[arg-type]
        store=store,
        policy=pol,
        carts=CartUseCases(uow, gateways.pricing, pol, recent=recent_carts),
        start=StartCheckout(uow, gateways, pol, compensator, expiry, recent=recent, recent_carts=recent_carts),
        state=CheckoutState(uow, engine, recent=recent),
        confirm=confirm,
        drain=FailedCompensationDrain(uow, compensator),
        recovery=SagaRecovery(uow, gateways, settlement, pol),
        completion=PaymentCompletion(uow, gateways, settlement, compensator, pol),
        expiry=expiry,
        engine=engine,
        compensator=compensator,
        recent_carts=recent_carts,
        recent_sessions=recent,
    )


@pytest.fixture
def world() -> World:
    return make_world()


@dataclass
class Served:
    """Checkout served on a free port against the real stack, with fake neighbours."""

    container: Container
    channel: grpc.aio.Channel
    pricing: FakePricingGateway
    inventory: FakeInventoryGateway
    promotion: FakePromotionGateway
    payment: FakePaymentGateway
    order: FakeOrderGateway

    def reset_failures(self) -> None:
        for fake in (self.pricing, self.inventory, self.promotion, self.payment, self.order):
            fake.fail.clear()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def served(settings: Settings) -> AsyncIterator[Served]:
    gateways = Gateways(
        pricing=FakePricingGateway(),
        inventory=FakeInventoryGateway(),
        promotion=FakePromotionGateway(),
        payment=FakePaymentGateway(),
        order=FakeOrderGateway(),
    )
    holder: dict[str, Container] = {}

    async def boot(s: Settings, stack: AsyncExitStack):  # type: ignore[no-untyped-def]
        holder["c"] = await build(s, stack, gateways, retry=FAST_RETRY)
        return holder["c"].app

    async with (
        running_service(boot, settings, "127.0.0.1:0", run_workers=False) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield Served(
            container=holder["c"],
            channel=channel,
            pricing=gateways.pricing,  # type: ignore[arg-type]
            inventory=gateways.inventory,  # type: ignore[arg-type]
            promotion=gateways.promotion,  # type: ignore[arg-type]
            payment=gateways.payment,  # type: ignore[arg-type]
            order=gateways.order,  # type: ignore[arg-type]
        )


@pytest.fixture
def world_with() -> Any:
    """A World factory taking CheckoutPolicy overrides (max_cart_items=2, min_order_minor=…)."""
    return make_world
