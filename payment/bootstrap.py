"""The payment service's composition root: the one place concrete parts are chosen and closed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass

from infra.audit import AuditTrail
from infra.config import ConfigError, Settings
from infra.db import create_engine
from infra.events import connect, ensure_streams
from infra.ops import outbox_status_registration
from infra.outbox import OutboxPublisher
from infra.runner import App
from infra.server import Registration
from kassa.payment.v1 import payment_admin_service_pb2_grpc, payment_service_pb2_grpc
from payment.adapter.breaker import BreakerPolicy, GuardedProvider
from payment.adapter.sandbox_provider import SandboxProvider, provider_session
from payment.biz.authorize import AuthorizePayment
from payment.biz.capture import CapturePayment
from payment.biz.failure_rates import GetFailureRates
from payment.biz.fulfilment_events import CollectOnFulfilment
from payment.biz.get import GetPayment, RefreshPayment
from payment.biz.order_events import ReleaseEndedOrder
from payment.biz.providers import Providers
from payment.biz.reconcile import ReconcileIntents
from payment.biz.refund import RefundPayment
from payment.biz.sweep import SweepPolicy, SweepStuckPayments
from payment.biz.void import VoidAuthorization, VoidByKey
from payment.biz.webhook import HandleWebhook
from payment.data.repositories import SERVICE, SqlUnitOfWork
from payment.data.tables import audit_log, outbox
from payment.service import payment_admin_service
from payment.service.payment_service import PaymentServiceServicer
from payment.worker.order_events import fulfilment_events_consumer, order_events_consumer
from payment.worker.sweeper import sweeper_worker

__all__ = ["Sweeper", "bootstrap", "breaker_policy", "provider_timeout", "provider_urls", "sweeper_settings"]


def provider_timeout(settings: Settings) -> float:
    """Leave a second of the caller's deadline to record the outcome after the provider gives up."""
    return max(settings.rpc_timeout_seconds - 1.0, 0.5)


def provider_urls(settings: Settings) -> list[tuple[str, str]]:
    """``KASSA_PAYMENT_PROVIDERS`` ("name=url,name=url", primary first); empty: "sandbox" at sandbox_url."""
    raw = settings.payment_providers.strip()
    if not raw:
        return [("sandbox", settings.sandbox_url)]
    pairs = []
    for item in raw.split(","):
        name, sep, url = item.strip().partition("=")
        if not sep or not name.strip() or not url.strip().startswith(("http://", "https://")):
            raise ConfigError(f"KASSA_PAYMENT_PROVIDERS: expected name=http(s)://host:port, got {item!r}")
        pairs.append((name.strip(), url.strip()))
    if len({name for name, _ in pairs}) != len(pairs):
        raise ConfigError("KASSA_PAYMENT_PROVIDERS: provider names must be distinct")
    return pairs


def breaker_policy(environ: Mapping[str, str] | None = None) -> BreakerPolicy:
    """KASSA_PAYMENT_BREAKER_THRESHOLD (failures in a row, default 5) and _RESET_SECONDS (default 30)."""
    env = os.environ if environ is None else environ
    try:
        threshold = int(env.get("KASSA_PAYMENT_BREAKER_THRESHOLD") or 5)
        reset = float(env.get("KASSA_PAYMENT_BREAKER_RESET_SECONDS") or 30)
    except ValueError as exc:
        raise ConfigError(f"payment breaker settings: {exc}") from exc
    if threshold < 1 or reset <= 0:
        raise ConfigError("payment breaker: threshold must be >= 1 and reset seconds > 0")
    return BreakerPolicy(threshold=threshold, reset_seconds=reset)


@dataclass(frozen=True)
class Sweeper:
    policy: SweepPolicy
    interval_seconds: float = 30.0


def sweeper_settings(settings: Settings, environ: Mapping[str, str] | None = None) -> Sweeper:
    """KASSA_PAYMENT_SWEEP_INTERVAL_SECONDS (default 30), KASSA_PAYMENT_STUCK_SECONDS (120: VOIDING,
    CAPTURING and pending refunds older than this are finished), KASSA_PAYMENT_ABANDONED_SECONDS (900:
    PENDING authorizations older than this are voided, and provider intents this old with no live payment
    cancelled; at least the RPC timeout, so none in flight is) and KASSA_PAYMENT_RECONCILE_LOOKBACK_SECONDS
    (3600: how far back the provider's intents are reconciled after a start)."""
    env = os.environ if environ is None else environ
    try:
        interval = float(env.get("KASSA_PAYMENT_SWEEP_INTERVAL_SECONDS") or 30)
        stuck = float(env.get("KASSA_PAYMENT_STUCK_SECONDS") or 120)
        abandoned = float(env.get("KASSA_PAYMENT_ABANDONED_SECONDS") or 900)
        lookback = float(env.get("KASSA_PAYMENT_RECONCILE_LOOKBACK_SECONDS") or 3600)
    except ValueError as exc:
        raise ConfigError(f"payment sweeper settings: {exc}") from exc
    if interval <= 0 or stuck < 0 or lookback < 0:
        raise ConfigError("payment sweeper: the interval must be > 0, the stuck threshold and lookback >= 0 seconds")
    if abandoned < settings.rpc_timeout_seconds:
        raise ConfigError(
            f"KASSA_PAYMENT_ABANDONED_SECONDS ({abandoned:g}) must be at least the RPC timeout "
            f"({settings.rpc_timeout_seconds:g} s): an authorization still in flight must not be voided"
        )
    policy = SweepPolicy(stuck_seconds=stuck, abandoned_seconds=abandoned, reconcile_lookback_seconds=lookback)
    return Sweeper(policy, interval)


async def bootstrap(
    settings: Settings,
    stack: AsyncExitStack,
    *,
    breaker: BreakerPolicy | None = None,
    sweeper: Sweeper | None = None,
) -> App:
    assert settings.database_url and settings.nats_url, "runner.main checks these"
    engine = create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        application_name="kassa-payment",
        pgbouncer=settings.pgbouncer,
    )
    stack.push_async_callback(engine.dispose)

    nc, js = await connect(settings.nats_url, "kassa-payment")
    stack.push_async_callback(nc.close)
    await ensure_streams(js, [SERVICE, "order"])
    publisher = OutboxPublisher(engine, outbox, js)

    policy = breaker or breaker_policy()
    sweep = sweeper or sweeper_settings(settings)
    guarded = []
    for name, url in provider_urls(settings):
        client = provider_session(url, provider_timeout(settings))
        stack.push_async_callback(client.close)
        guarded.append(GuardedProvider(SandboxProvider(client, settings.webhook_secrets, name=name), policy))
    providers = Providers(guarded)

    uow = SqlUnitOfWork(engine, on_commit=publisher.notify)
    void = VoidAuthorization(uow, providers)
    servicer = PaymentServiceServicer(
        authorize=AuthorizePayment(uow, providers),
        capture=CapturePayment(uow, providers),
        void=void,
        void_by_key=VoidByKey(uow, void),
        refund=RefundPayment(uow, providers),
        get=GetPayment(uow),
        refresh=RefreshPayment(uow, providers),
        webhook=HandleWebhook(uow, providers),
    )
    consumer = order_events_consumer(js, ReleaseEndedOrder(uow, providers))
    fulfilment = fulfilment_events_consumer(js, CollectOnFulfilment(uow, providers))
    sweep_stuck = SweepStuckPayments(uow, providers, sweep.policy)
    reconcile = ReconcileIntents(
        uow,
        providers,
        grace_seconds=sweep.policy.abandoned_seconds,
        lookback_seconds=sweep.policy.reconcile_lookback_seconds,
    )
    audit = AuditTrail(engine, audit_log, service=SERVICE, reads=("GetPayment", *payment_admin_service.READS))
    return App(
        registrations=[
            Registration(
                payment_service_pb2_grpc.add_PaymentServiceServicer_to_server,
                servicer,
                "kassa.payment.v1.PaymentService",
            ),
            Registration(
                payment_admin_service_pb2_grpc.add_PaymentAdminServiceServicer_to_server,
                payment_admin_service.PaymentAdminServiceServicer(GetFailureRates(uow)),
                "kassa.payment.v1.PaymentAdminService",
            ),
            audit.registration,
            outbox_status_registration(engine, outbox, SERVICE),
        ],
        workers=[
            publisher.run,
            consumer.run,
            fulfilment.run,
            sweeper_worker(sweep_stuck, reconcile, sweep.interval_seconds),
        ],
        interceptors=[audit.interceptor],
    )
