"""The one place the notification service's concrete parts are chosen and wired.

It holds the keys to personal data (``KASSA_PII_KEYS``): it reads each recipient from the order service and
keeps it only encrypted. It needs ``KASSA_SMTP_URL`` (the local stack runs an SMTP sink and sets it).
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from infra.audit import AuditTrail
from infra.channels import ServiceCredentials, open_channel
from infra.config import ConfigError, Settings
from infra.db import create_engine
from infra.events import connect, ensure_streams
from infra.metrics import GaugeRefresher
from infra.runner import App
from infra.server import Registration
from kassa.notification.v1.notification_service_pb2_grpc import add_NotificationServiceServicer_to_server
from notification.adapter.jinja_renderer import JinjaRenderer
from notification.adapter.order_adapter import GrpcOrderAdapter
from notification.adapter.smtp_sender import SmtpEmailSender, SmtpSettings
from notification.biz.list_dead_letters import ListDeadLetters
from notification.biz.list_messages import ListMessages
from notification.biz.notify import Notify
from notification.biz.replay import ReplayDeadLetter
from notification.data.gauges import DeadLetterGauges
from notification.data.repositories import SqlUnitOfWork
from notification.data.tables import audit_log
from notification.service.notification_service import NotificationServiceServicer
from notification.worker.order_events import order_events_consumer, payment_events_consumer

__all__ = ["bootstrap"]


async def bootstrap(settings: Settings, stack: AsyncExitStack) -> App:
    settings.require("database_url", "nats_url", "smtp_url")
    cipher = settings.pii_cipher()
    try:
        smtp = SmtpSettings.from_url(str(settings.smtp_url))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    engine = create_engine(
        str(settings.database_url), pool_size=settings.db_pool_size, application_name="kassa-notification"
    )
    stack.push_async_callback(engine.dispose)
    nc, js = await connect(str(settings.nats_url), "kassa-notification")
    stack.push_async_callback(nc.close)
    await ensure_streams(js, ["order", "payment"])
    order_channel = open_channel(settings.addr("order"), settings.grpc_tls)
    stack.push_async_callback(order_channel.close)

    uow = SqlUnitOfWork(engine, cipher)
    creds = ServiceCredentials(settings.service_secret, "notification")
    order_directory = GrpcOrderAdapter(order_channel, creds, settings.rpc_timeout_seconds)
    sender = SmtpEmailSender(smtp, settings.mail_from, idle_seconds=settings.smtp_idle_seconds)
    # Its open connections are closed (QUIT) once the consumers have stopped, before NATS and the database.
    stack.push_async_callback(sender.aclose)
    renderer = JinjaRenderer()
    notify = Notify(uow, order_directory, renderer, sender)
    replay = ReplayDeadLetter(uow, order_directory, renderer, sender)
    audit = AuditTrail(engine, audit_log, service="notification", reads=("ListMessages", "ListDeadLetters"))
    orders = order_events_consumer(js, notify)
    payments = payment_events_consumer(js, notify)
    return App(
        registrations=[
            Registration(
                add_NotificationServiceServicer_to_server,
                NotificationServiceServicer(ListMessages(uow), ListDeadLetters(uow), replay),
                "kassa.notification.v1.NotificationService",
            ),
            audit.registration,
        ],
        workers=[orders.run, payments.run, GaugeRefresher([DeadLetterGauges(engine).refresh]).run],
        interceptors=[audit.interceptor],
    )
