"""The composition root: the one place checkout's concrete parts are chosen and wired.

Engines, Redis, NATS and channels are created here and closed by the AsyncExitStack. Tests call
:func:`build` with fake gateways to serve checkout against the real stack without the other services.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from checkout.adapter.catalog_mirror import CatalogMirror
from checkout.adapter.funnel import PrometheusFunnel
from checkout.adapter.inventory_adapter import GrpcInventoryAdapter
from checkout.adapter.order_adapter import GrpcOrderAdapter
from checkout.adapter.payment_adapter import GrpcPaymentAdapter
from checkout.adapter.pricing_adapter import GrpcPricingAdapter
from checkout.adapter.promotion_adapter import GrpcPromotionAdapter
from checkout.adapter.recent_products import RecentProducts
from checkout.biz.cart.manage import CartUseCases
from checkout.biz.cart.recent import RecentCarts
from checkout.biz.checkout.compensations import Compensator
from checkout.biz.checkout.complete_payment import PaymentCompletion
from checkout.biz.checkout.confirm import ConfirmCheckout
from checkout.biz.checkout.dlq import FailedCompensationDrain
from checkout.biz.checkout.expiry import SessionExpiry
from checkout.biz.checkout.operate import DeadLetters, FunnelReport, StuckSessions
from checkout.biz.checkout.pricing_engine import PricingEngine
from checkout.biz.checkout.recent import RecentSessions
from checkout.biz.checkout.recovery import SagaRecovery
from checkout.biz.checkout.settle import Settlement
from checkout.biz.checkout.start import StartCheckout
from checkout.biz.checkout.update_state import CheckoutState
from checkout.biz.policy import CheckoutPolicy
from checkout.biz.ports import Gateways, ProductLookup
from checkout.biz.retry import RetryPolicy
from checkout.data.gauges import CheckoutGauges
from checkout.data.redis_store import RedisIdempotencyStore
from checkout.data.repositories import SqlUnitOfWork
from checkout.data.tables import audit_log, outbox
from checkout.service import checkout_admin_service
from checkout.service.cart_service import CartServiceServicer
from checkout.service.checkout_service import CheckoutServiceServicer
from checkout.worker.cron.failed_compensation import failed_compensation_worker
from checkout.worker.cron.payment_poll import payment_poll_worker
from checkout.worker.cron.recovery import recovery_worker
from checkout.worker.cron.session_expiry import session_expiry_worker
from checkout.worker.payment_events import payment_event_consumer
from infra.admission import Admission
from infra.audit import AuditTrail
from infra.channels import ServiceCredentials, open_channel
from infra.config import ConfigError, Settings
from infra.db import create_engine
from infra.events import connect, ensure_streams
from infra.metrics import GaugeRefresher
from infra.ops import outbox_status_registration
from infra.outbox import OutboxPublisher
from infra.runner import App
from infra.server import Registration
from infra.worker import every
from kassa.checkout.v1 import (
    cart_service_pb2,
    cart_service_pb2_grpc,
    checkout_admin_service_pb2_grpc,
    checkout_service_pb2,
    checkout_service_pb2_grpc,
)

if TYPE_CHECKING:
    import grpc

__all__ = ["Container", "bootstrap", "build", "policy_from"]

_CREATE_CART = "/kassa.checkout.v1.CartService/CreateCart"
# The saga lease's default length in RPC deadlines: 120 s at 5 s, eight times the gateway's ConfirmCheckout
# deadline (3 times the RPC deadline), several times the longest step (3 attempts at the deadline, plus backoff).
RECOVERY_AFTER_RPC_TIMEOUTS = 24
# The Redis lock's lease in RPC deadlines (renewed while its holder runs): twice the gateway's ConfirmCheckout deadline.
LOCK_LEASE_RPC_TIMEOUTS = 6
# How long a stopping replica waits for its running sagas, in RPC deadlines (10 s by default: well inside
# Kubernetes' 30 s grace period, and what is left over is recovery's).
DRAIN_RPC_TIMEOUTS = 2


@dataclass
class Container:
    """Everything bootstrap built; tests reach the single-pass workers and the engine through it."""

    app: App
    engine: AsyncEngine
    uow: SqlUnitOfWork
    gateways: Gateways
    carts: CartUseCases
    start: StartCheckout
    state: CheckoutState
    confirm: ConfirmCheckout
    compensator: Compensator
    drain: FailedCompensationDrain
    recovery: SagaRecovery
    expiry: SessionExpiry
    settlement: Settlement
    completion: PaymentCompletion


def policy_from(settings: Settings, retry: RetryPolicy | None = None) -> CheckoutPolicy:
    """The use cases' knobs; refuses a saga lease that one step of a saga could outlast."""
    policy = CheckoutPolicy(
        default_currency=settings.default_currency,
        max_cart_items=settings.max_cart_items,
        max_item_quantity=settings.max_item_quantity,
        min_order_minor=settings.min_order_minor,
        reservation_ttl_seconds=settings.reservation_ttl_seconds,
        confirm_ttl_seconds=max(settings.reservation_ttl_seconds, settings.checkout_lock_ttl_ms // 1000),
        pricing_deadline_seconds=settings.rpc_timeout_seconds,
        rpc_timeout_seconds=settings.rpc_timeout_seconds,
        recovery_after_seconds=settings.checkout_recovery_after_seconds
        or RECOVERY_AFTER_RPC_TIMEOUTS * settings.rpc_timeout_seconds,
        payment_window_seconds=settings.payment_window_seconds,
        payment_poll_after_seconds=settings.payment_poll_after_seconds,
        replay_ttl_seconds=settings.result_ttl_seconds,
        capture_on_shipment=settings.capture_on == "shipment",
        retry=retry or RetryPolicy(),
    )
    if policy.recovery_after_seconds < 2 * policy.step_budget_seconds:
        raise ConfigError(
            f"KASSA_CHECKOUT_RECOVERY_AFTER_SECONDS={policy.recovery_after_seconds:g} is too short: one step of a "
            f"checkout may take {policy.step_budget_seconds:g} s (every retry at KASSA_RPC_TIMEOUT_SECONDS), and "
            "recovery must never take over a saga that is still alive; use at least twice that"
        )
    return policy


def _grpc_gateways(settings: Settings, stack: AsyncExitStack) -> Gateways:
    creds = ServiceCredentials(settings.service_secret, "checkout")
    timeout = settings.rpc_timeout_seconds

    def channel(service: str) -> grpc.aio.Channel:
        ch = open_channel(settings.addr(service), settings.grpc_tls)
        stack.push_async_callback(ch.close)
        return ch

    return Gateways(
        pricing=GrpcPricingAdapter(channel("pricing"), creds, timeout),
        inventory=GrpcInventoryAdapter(channel("warehouse"), creds, timeout),
        promotion=GrpcPromotionAdapter(channel("promotion"), creds, timeout),
        payment=GrpcPaymentAdapter(channel("payment"), creds, timeout, f"{settings.public_url}/checkout/return"),
        order=GrpcOrderAdapter(channel("order"), creds, timeout),
    )


async def build(
    settings: Settings,
    stack: AsyncExitStack,
    gateways: Gateways | None = None,
    *,
    retry: RetryPolicy | None = None,
) -> Container:
    assert settings.database_url and settings.redis_url and settings.nats_url
    cipher = settings.pii_cipher()  # refuses to start without the keys to the sessions' personal data
    engine = create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        application_name="kassa-checkout",
        pgbouncer=settings.pgbouncer,
    )
    stack.push_async_callback(engine.dispose)
    # Short timeouts: Redis is a filter in front of the durable guard, and a slow one is skipped, not awaited.
    timeout = settings.checkout_redis_timeout_seconds
    redis = Redis.from_url(settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
    stack.push_async_callback(redis.aclose)
    nc, js = await connect(settings.nats_url, "kassa-checkout")
    stack.push_async_callback(nc.close)
    await ensure_streams(js, ["checkout", "payment"])

    publisher = OutboxPublisher(engine, outbox, js)  # CartConverted, CheckoutCompleted → kassa.checkout.*
    uow = SqlUnitOfWork(engine, cipher, on_commit=publisher.notify)
    gateways = gateways or _grpc_gateways(settings, stack)
    policy = policy_from(settings, retry)
    store = RedisIdempotencyStore(
        redis,
        prefix="kassa:checkout:confirm",
        lock_lease_ms=settings.checkout_lock_lease_ms
        or int(LOCK_LEASE_RPC_TIMEOUTS * settings.rpc_timeout_seconds * 1000),
        lock_max_ms=settings.checkout_lock_ttl_ms,
        result_ttl_seconds=settings.result_ttl_seconds,
        timeout_seconds=timeout,
    )
    engine_ = PricingEngine(gateways.pricing, gateways.promotion, policy.pricing_deadline_seconds)
    compensator = Compensator(uow, gateways, policy.retry)
    expiry = SessionExpiry(uow, compensator)
    ttl = settings.checkout_cart_price_ttl_seconds
    funnel = PrometheusFunnel()
    # A cart line shows a price up to ttl seconds old (start and confirm price afresh): from checkout's copy of
    # the catalog, else from pricing's answers of the last ttl seconds, else from pricing.
    lookup: ProductLookup = gateways.pricing
    mirror_workers: list[Callable[[], Awaitable[None]]] = []
    if ttl:
        mirror = CatalogMirror(gateways.pricing, RecentProducts(gateways.pricing, ttl), ttl)
        lookup = mirror
        mirror_workers.append(every("catalog-mirror", mirror.sync_seconds, mirror.sync_once))
    recent_carts = RecentCarts()  # the carts this replica wrote last: AddCartItem writes them without a read
    carts = CartUseCases(uow, lookup, policy, funnel=funnel, recent=recent_carts)
    recent = RecentSessions()  # the sessions this replica wrote last: UpdateCheckoutState prices them without a read
    start = StartCheckout(
        uow, gateways, policy, compensator, expiry, funnel=funnel, recent=recent, recent_carts=recent_carts
    )
    state = CheckoutState(uow, engine_, reuse_seconds=settings.checkout_preview_reuse_seconds, recent=recent)
    settlement = Settlement(uow, gateways, compensator, policy, funnel=funnel)
    confirm = ConfirmCheckout(
        uow, gateways, engine_, store, compensator, settlement=settlement, policy=policy, funnel=funnel, recent=recent
    )
    gauges = CheckoutGauges(engine, stuck_after_seconds=policy.recovery_after_seconds)
    # Closed first (the stack unwinds in reverse): sagas still running finish while the pools and channels are open.
    stack.push_async_callback(confirm.drain, DRAIN_RPC_TIMEOUTS * settings.rpc_timeout_seconds)
    drain = FailedCompensationDrain(uow, compensator)
    recovery = SagaRecovery(uow, gateways, settlement, policy)
    completion = PaymentCompletion(uow, gateways, settlement, compensator, policy)
    # Operators' tools run the workers' own paths (the drain's run, recovery's recover_one), audited.
    # Only CheckoutAdminService's actions are audited: the customer-facing services are left unwrapped.
    customer_rpcs = [
        m.name
        for module in (cart_service_pb2, checkout_service_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for m in service.methods
    ]
    audit = AuditTrail(engine, audit_log, service="checkout", reads=(*checkout_admin_service.READS, *customer_rpcs))
    operations = checkout_admin_service.CheckoutAdminServiceServicer(
        DeadLetters(uow, drain), StuckSessions(uow, recovery, policy), FunnelReport(uow)
    )

    app = App(
        registrations=[
            Registration(
                cart_service_pb2_grpc.add_CartServiceServicer_to_server,
                CartServiceServicer(carts, max_item_quantity=policy.max_item_quantity),
                "kassa.checkout.v1.CartService",
            ),
            Registration(
                checkout_service_pb2_grpc.add_CheckoutServiceServicer_to_server,
                CheckoutServiceServicer(start, state, confirm),
                "kassa.checkout.v1.CheckoutService",
            ),
            Registration(
                checkout_admin_service_pb2_grpc.add_CheckoutAdminServiceServicer_to_server,
                operations,
                "kassa.checkout.v1.CheckoutAdminService",
            ),
            audit.registration,
            outbox_status_registration(engine, outbox, "checkout"),
        ],
        workers=[
            publisher.run,
            failed_compensation_worker(drain),
            recovery_worker(recovery),
            session_expiry_worker(expiry),
            payment_poll_worker(completion),
            payment_event_consumer(js, completion).run,
            GaugeRefresher([gauges.refresh_dlq, gauges.refresh_stuck]).run,
            *mirror_workers,
        ],
        # The mesh's edge: a new cart starts a checkout, so it is what waits (and, if the wait stops paying,
        # is turned away) when the mesh is busy; a checkout under way is never held back for it.
        admission=Admission(settings.admission_policy(frozenset({_CREATE_CART}))),
        interceptors=[audit.interceptor],
    )
    return Container(
        app, engine, uow, gateways, carts, start, state, confirm, compensator, drain, recovery, expiry, settlement,
        completion,
    )  # fmt: skip


async def bootstrap(settings: Settings, stack: AsyncExitStack) -> App:
    return (await build(settings, stack)).app
