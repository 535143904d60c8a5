"""Configuration from environment variables, read once at start-up.

Nothing here is read at import time: ``Settings.from_env()`` is called by each
entry point, and a service refuses to start when something it needs is missing.

Production is the default mode (``KASSA_ENV`` unset). Development mode is chosen
explicitly (``KASSA_ENV=development``): the local stack (``devstack.mesh.mesh_env``)
and the tests do, and only there do unset secrets fall back to the public
development values below. In production :meth:`Settings.require` refuses to start
with a secret that is missing, shorter than :data:`MIN_SECRET_BYTES`, one of the
values written in this repository, or shared between customer and service tokens.
The services that keep personal data (order, checkout) also call :meth:`Settings.pii_cipher`,
which refuses missing, development or made-up ``KASSA_PII_KEYS`` in production; the other
processes never get those keys. Certificates (``KASSA_GATEWAY_TLS_*``, ``KASSA_GRPC_TLS_*``, infra.tls) are
read at start-up too: a missing, unreadable, expired or mismatched file refuses to start in any mode, and
in production so does a development certificate made by ``kassa certs``.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit, urlunsplit

from infra import tls
from infra.admission import AdmissionPolicy
from infra.metrics import METRICS_PORT_OFFSET
from infra.pii import KEY_BYTES, PiiCipher, key_problem, parse_keys

__all__ = [
    "CAPTURE_ON",
    "DATABASE_SERVICES",
    "DEFAULT_ADDRS",
    "DEVELOPMENT",
    "DEV_JWT_SECRET",
    "DEV_PII_KEYS",
    "DEV_SERVICE_SECRET",
    "DEV_WEBHOOK_SECRET",
    "GATEWAY_REPLICA_ADDRS",
    "MIN_SECRET_BYTES",
    "PRODUCTION",
    "REPLICA",
    "ConfigError",
    "Settings",
    "parse_addrs",
    "redact",
    "secret_problem",
]

# Default loopback addresses (DESIGN.md §2); each overridable by KASSA_<NAME>_ADDR. A gRPC service's variable may
# list the addresses of its replicas, comma-separated (see parse_addrs); the gateway and the sandbox have one.
DEFAULT_ADDRS: dict[str, str] = {
    "gateway": "127.0.0.1:8080",
    "checkout": "127.0.0.1:50051",
    "order": "127.0.0.1:50052",
    "payment": "127.0.0.1:50053",
    "warehouse": "127.0.0.1:50054",
    "pricing": "127.0.0.1:50055",
    "promotion": "127.0.0.1:50056",
    "sandbox": "127.0.0.1:8090",
    "notification": "127.0.0.1:50057",
}

# KASSA_CAPTURE_ON: when card payments are captured.
CAPTURE_ON = ("confirm", "shipment")

DEVELOPMENT = "development"
PRODUCTION = "production"

# The services that own a database schema; each may have a Postgres of its own (KASSA_<SERVICE>_DATABASE_URL).
DATABASE_SERVICES = ("checkout", "order", "payment", "warehouse", "pricing", "promotion", "notification")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})

# Development-only values: public (they are in this file), so production refuses them.
DEV_JWT_SECRET = "kassa-local-development-secret-change-me"
DEV_SERVICE_SECRET = "kassa-local-development-service-secret-change-me"
DEV_WEBHOOK_SECRET = "whsec_kassa_sandbox_local"
# The key personal data is encrypted with in development (infra.pii): the 32 bytes of
# "kassa-local-development-pii-key!", so anyone can read a development database.
DEV_PII_KEYS = "dev:a2Fzc2EtbG9jYWwtZGV2ZWxvcG1lbnQtcGlpLWtleSE="

# HS256 wants a key at least as long as its hash (RFC 7518 §3.2); a webhook HMAC the same.
MIN_SECRET_BYTES = 32
# Values that appear in this repository (defaults, docs, tests) beside the DEV_ ones above; a production
# secret must be none of them. tests/security/test_secrets.py scans the repository so a new one can't slip by.
_COMMITTED_SECRETS = frozenset(
    {
        DEV_JWT_SECRET,
        DEV_SERVICE_SECRET,
        DEV_WEBHOOK_SECRET,
    }
)
# Words no random secret contains (5+ letters: a random base64 secret holds one by chance about once in a
# million): a value with one of them was written by a person, for an example or a test.
_HUMAN_WORDS = ("secret", "change", "example", "password", "kassa", "sandbox", "development", "default")
# A random secret of 32+ bytes uses many different characters; "aaaa…" or "12121212…" does not.
_MIN_DISTINCT_CHARS = 8
# The secrets, as (Settings field, environment variable).
_SECRETS = (
    ("jwt_secret", "KASSA_JWT_SECRET"),
    ("jwt_secret_previous", "KASSA_JWT_SECRET_PREVIOUS"),
    ("service_secret", "KASSA_SERVICE_SECRET"),
    ("service_secret_previous", "KASSA_SERVICE_SECRET_PREVIOUS"),
    ("webhook_secret", "KASSA_WEBHOOK_SECRET"),
    ("webhook_secret_previous", "KASSA_WEBHOOK_SECRET_PREVIOUS"),
)
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_NEW_SECRET_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
_NEW_PII_KEY_HINT = "kassa pii new-key KEY_ID"


class ConfigError(RuntimeError):
    """A required setting is missing or malformed; the process must not start."""


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _bool(env: dict[str, str], name: str) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name} must be 1 or 0 (true/false), got {raw!r}")


def _files(env: dict[str, str], names: tuple[str, ...]) -> tuple[str, ...] | None:
    """The paths in the variables ``names``: all of them, or None when none is set; some but not all refuse."""
    values = [env.get(n) or "" for n in names]
    if not any(values):
        return None
    missing = [n for n, v in zip(names, values, strict=True) if not v]
    if missing:
        raise ConfigError(f"{', '.join(missing)} must be set too: TLS needs all of {', '.join(names)}")
    return tuple(values)


# Processes that have one address: the gateway's replicas share theirs (SO_REUSEPORT, gateway.server) and the
# sandbox provider is a single process.
_SINGLE_ADDR = frozenset({"gateway", "sandbox"})
GATEWAY_REPLICA_ADDRS = "KASSA_GATEWAY_REPLICA_ADDRS"
REPLICA = "KASSA_REPLICA"


def _host_port(variable: str, entry: str) -> tuple[str, int]:
    host, sep, port = entry.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{variable}: {entry!r} is not host:port (a port of 0-65535)")
    return host, int(port)


def _ip_family(host: str) -> int | None:
    """4 or 6 for an IP literal (``[::1]`` for IPv6), None for a host name."""
    try:
        address = ipaddress.ip_address(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
    except ValueError:
        return None
    if address.version == 6 and not host.startswith("["):
        return None  # [::1]:50051, or the port could not be told apart
    return address.version


def parse_addrs(variable: str, value: str) -> tuple[str, ...]:
    """The addresses a ``KASSA_<NAME>_ADDR`` names: one ``host:port``, or its replicas' comma-separated.

    A list is what gRPC clients spread their calls over (``infra.channels``), so it holds IP literals of one
    family, all different: ``127.0.0.1:50051,127.0.0.1:50061`` or ``[::1]:50051,[::1]:50061``. A single
    address may name a host (a DNS name, a Kubernetes service). Raises ConfigError naming ``variable``.
    """
    entries = tuple(part.strip() for part in value.split(","))
    if not value.strip() or any(not entry for entry in entries):
        raise ConfigError(f"{variable} must be host:port or a comma-separated list of them, got {value!r}")
    families = {_ip_family(_host_port(variable, entry)[0]) for entry in entries}
    if len(entries) > 1:
        if None in families or len(families) > 1:
            raise ConfigError(
                f"{variable}: a list of replicas must give IP addresses of one family "
                f"(127.0.0.1:50051,127.0.0.1:50061), got {value!r}"
            )
        if len(set(entries)) < len(entries):
            raise ConfigError(f"{variable} lists an address twice: {value!r}")
    return entries


def secret_problem(value: str) -> str | None:
    """Why ``value`` can't be a production secret, or None when it can."""
    lowered = value.lower()
    if value in _COMMITTED_SECRETS:
        return "is a development value committed in the Kassa repository"
    if len(value.encode()) < MIN_SECRET_BYTES:
        return f"is shorter than {MIN_SECRET_BYTES} bytes"
    word = next((w for w in _HUMAN_WORDS if w in lowered), None)
    if word is not None:
        return f"contains the word {word!r}: an example or test value, not a random secret"
    if len(set(value)) < _MIN_DISTINCT_CHARS:
        return f"uses fewer than {_MIN_DISTINCT_CHARS} different characters"
    return None


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    redis_url: str | None
    nats_url: str | None
    addrs: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ADDRS))
    # Secrets: empty when unset in production (where require() refuses to start without them); in development
    # the DEV_ values. Each *_previous is the value being rotated out: still accepted, never used to sign.
    # Customer tokens: HS256 with jwt_secret, or the identity provider's keys from jwt_jwks_url when set.
    jwt_secret: str = ""
    jwt_secret_previous: str = ""
    jwt_jwks_url: str | None = None
    jwt_jwks_ttl_seconds: int = 300
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # The customer-token claim that makes an admin: "admin" as its value or in its list (a.b for nested claims).
    jwt_admin_claim: str = "role"
    # Service tokens (what Kassa's processes send each other): HS256 with a key of their own, never a customer's.
    service_secret: str = ""
    service_secret_previous: str = ""
    sandbox_url: str = "http://127.0.0.1:8090"
    webhook_secret: str = ""
    webhook_secret_previous: str = ""
    # KASSA_PAYMENT_PROVIDERS: "name=url,name=url", the primary first; new authorizations fall back to the
    # next provider whose circuit breaker is closed. Empty: one provider, "sandbox" at sandbox_url.
    payment_providers: str = ""
    # How long an order waits in PENDING_PAYMENT for the customer's action (3-D Secure) before it fails;
    # its reservations and promotion usage are held that long.
    payment_window_seconds: int = 1800
    # A session awaiting payment is polled at the provider when no webhook came for this long.
    payment_poll_after_seconds: int = 60
    public_url: str = "http://127.0.0.1:8080"
    reservation_ttl_seconds: int = 900
    # KASSA_WAREHOUSE_RECONCILE_SECONDS: how often warehouse audits stock against its reservations for the drift
    # gauges (warehouse.worker.drift; read-only, repairs nothing); 0: never.
    warehouse_reconcile_seconds: int = 300
    checkout_lock_ttl_ms: int = 900_000
    # The lease on a ConfirmCheckout saga: a CONFIRMING session without progress for this long is taken over
    # by the recovery worker. 0: derived from the RPC deadline (24 times KASSA_RPC_TIMEOUT_SECONDS, 120 s by
    # default), far longer than the gateway's ConfirmCheckout deadline and any one step of a saga.
    checkout_recovery_after_seconds: int = 0
    # ConfirmCheckout's Redis lock is taken for this long and renewed while its holder runs (up to
    # checkout_lock_ttl_ms), so a dead holder's lock lapses soon. 0: twice the gateway's ConfirmCheckout
    # deadline (6 times KASSA_RPC_TIMEOUT_SECONDS, 30 s by default).
    checkout_lock_lease_ms: int = 0
    # Checkout's Redis connect and read timeout: Redis is a filter there, and a slow one is skipped, not awaited.
    checkout_redis_timeout_seconds: float = 0.5
    # PreviewOrder shows the totals UpdateCheckoutState stored with a change made less than this long ago
    # (ConfirmCheckout prices afresh anyway); 0 prices every preview afresh.
    checkout_preview_reuse_seconds: int = 5
    # AddCartItem prices a line from pricing's answer for the sku of the last this many seconds (StartCheckout
    # and ConfirmCheckout price afresh); 0 asks pricing on every AddCartItem.
    checkout_cart_price_ttl_seconds: int = 5
    result_ttl_seconds: int = 86_400
    max_cart_items: int = 100
    max_item_quantity: int = 999
    min_order_minor: int = 0
    default_currency: str = "USD"
    rpc_timeout_seconds: float = 5.0
    db_pool_size: int = 10
    # Admission control of checkout and the gateway (infra.admission): from this many calls in flight a new
    # checkout (guest token, new cart) waits in a FIFO queue for a slot (0: no admission control) ...
    max_in_flight: int = 16
    # ... and is refused (UNAVAILABLE / 503 with a retry delay) only when waits in that queue stayed above the
    # target for the interval, or its wait would pass the bound. Work under way is refused only at the hard
    # limit of calls in flight (0: 8 times max_in_flight).
    admission_target_ms: int = 500
    admission_interval_ms: int = 1000
    admission_max_wait_ms: int = 5000
    admission_hard_limit: int = 0
    # The limit adapts from max_in_flight up to a quarter of the hard limit while 90 % of admitted calls finish
    # within this (0: max_in_flight is a fixed limit). Unset: half of KASSA_RPC_TIMEOUT_SECONDS, so calls
    # let in still finish well within their deadlines.
    admission_latency_target_ms: int = 2500
    # KASSA_PII_KEYS: "kid:base64key[,kid:base64key…]", the key new personal data is encrypted with first;
    # every one listed decrypts (infra.pii). Development falls back to DEV_PII_KEYS; production has no default.
    pii_keys: str = field(default="", repr=False)
    environment: str = PRODUCTION
    # KASSA_<SERVICE>_DATABASE_URL: a service's own Postgres, over KASSA_DATABASE_URL (see for_service()).
    service_database_urls: dict[str, str] = field(default_factory=dict, repr=False)
    # KASSA_PGBOUNCER=1: the database URLs lead to a PgBouncer in transaction mode (infra.db: no prepared statements).
    pgbouncer: bool = False
    # HTTPS on the gateway (KASSA_GATEWAY_TLS_*), mutual TLS between processes (KASSA_GRPC_TLS_*); infra.tls.
    gateway_tls: tls.ServerTls | None = None
    grpc_tls: tls.MutualTls | None = None
    # KASSA_GRPC_HEALTH_ADDR: a plaintext port serving only grpc.health.v1, for probes that can't do mTLS (kubelet).
    grpc_health_addr: str | None = None
    # KASSA_SMTP_URL: where the notification service sends email (smtp://, smtp+starttls:// or smtps://, with
    # user:password@ when the server wants a login); the local stack runs a sink and sets it.
    smtp_url: str | None = field(default=None, repr=False)
    # KASSA_MAIL_FROM: the From of customer email.
    mail_from: str = "Kassa <orders@kassa.localhost>"
    # KASSA_SMTP_IDLE_SECONDS: how long the notification service keeps an SMTP connection open for the next message
    # (0: a connection per message).
    smtp_idle_seconds: int = 30
    # KASSA_CAPTURE_ON: when a card payment is captured: "confirm" (at checkout) or "shipment" (authorized at
    # checkout, captured when the order ships, voided if it is cancelled before).
    capture_on: str = "confirm"
    # KASSA_REPLICA: which of the addresses its KASSA_<SERVICE>_ADDR lists this process serves (0-based); `kassa up
    # --replicas N` sets it. Unset: the variable must name one address.
    replica: int | None = None
    # KASSA_GATEWAY_REPLICA_ADDRS: with several gateway replicas sharing KASSA_GATEWAY_ADDR, each one's own
    # address besides (its health is probed there), the one KASSA_REPLICA picks.
    gateway_replica_addrs: tuple[str, ...] = ()
    # KASSA_<SERVICE>_METRICS_ADDR: where a gRPC service serves /metrics (infra.metrics), its replicas'
    # comma-separated like KASSA_<SERVICE>_ADDR; a service not listed here serves it on its gRPC port + 1000.
    metrics_addrs: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        environment = env.get("KASSA_ENV") or PRODUCTION
        if environment not in (DEVELOPMENT, PRODUCTION):
            raise ConfigError(f"KASSA_ENV must be {DEVELOPMENT!r} or {PRODUCTION!r} (the default), got {environment!r}")
        dev = environment == DEVELOPMENT
        jwks_ttl = _int(env, "KASSA_JWT_JWKS_TTL_SECONDS", 300)
        if jwks_ttl <= 0:
            raise ConfigError(f"KASSA_JWT_JWKS_TTL_SECONDS must be > 0, got {jwks_ttl}")
        preview_reuse = _int(env, "KASSA_CHECKOUT_PREVIEW_REUSE_SECONDS", 5)
        cart_price_ttl = _int(env, "KASSA_CHECKOUT_CART_PRICE_TTL_SECONDS", 5)
        for name, value in (("PREVIEW_REUSE", preview_reuse), ("CART_PRICE_TTL", cart_price_ttl)):
            if not 0 <= value <= 60:
                raise ConfigError(f"KASSA_CHECKOUT_{name}_SECONDS must be within 0..60, got {value}")
        smtp_idle = _int(env, "KASSA_SMTP_IDLE_SECONDS", 30)
        if smtp_idle < 0:
            raise ConfigError(f"KASSA_SMTP_IDLE_SECONDS must be 0 or more, got {smtp_idle}")
        addrs = {name: env.get(f"KASSA_{name.upper()}_ADDR") or default for name, default in DEFAULT_ADDRS.items()}
        for name, addr in addrs.items():
            variable = f"KASSA_{name.upper()}_ADDR"
            if len(parse_addrs(variable, addr)) > 1 and name in _SINGLE_ADDR:
                raise ConfigError(f"{variable} must be one host:port (the {name} has one address), got {addr!r}")
        metrics_addrs: dict[str, str] = {}
        for name in DEFAULT_ADDRS.keys() - _SINGLE_ADDR:
            if raw_metrics := env.get(f"KASSA_{name.upper()}_METRICS_ADDR"):
                parse_addrs(f"KASSA_{name.upper()}_METRICS_ADDR", raw_metrics)  # refused at start-up when malformed
                metrics_addrs[name] = raw_metrics
        replica = _int(env, REPLICA, 0) if env.get(REPLICA) else None
        if replica is not None and replica < 0:
            raise ConfigError(f"{REPLICA} must be a replica index of 0 or more, got {replica}")
        raw_gateway_replicas = env.get(GATEWAY_REPLICA_ADDRS) or ""
        gateway_replicas = parse_addrs(GATEWAY_REPLICA_ADDRS, raw_gateway_replicas) if raw_gateway_replicas else ()
        pii_keys = env.get("KASSA_PII_KEYS") or (DEV_PII_KEYS if dev else "")
        if pii_keys:
            try:
                parse_keys(pii_keys)
            except ValueError as exc:
                raise ConfigError(f"KASSA_PII_KEYS: {exc}") from None
        sandbox_url = env.get("KASSA_SANDBOX_URL") or f"http://{addrs['sandbox']}"
        gateway_files = _files(env, ("KASSA_GATEWAY_TLS_CERT_FILE", "KASSA_GATEWAY_TLS_KEY_FILE"))
        grpc_files = _files(env, ("KASSA_GRPC_TLS_CA_FILE", "KASSA_GRPC_TLS_CERT_FILE", "KASSA_GRPC_TLS_KEY_FILE"))
        capture_on = env.get("KASSA_CAPTURE_ON") or "confirm"
        if capture_on not in CAPTURE_ON:
            raise ConfigError(f"KASSA_CAPTURE_ON must be one of {', '.join(CAPTURE_ON)}, got {capture_on!r}")
        return cls(
            database_url=env.get("KASSA_DATABASE_URL") or None,
            redis_url=env.get("KASSA_REDIS_URL") or None,
            nats_url=env.get("KASSA_NATS_URL") or None,
            addrs=addrs,
            jwt_secret=env.get("KASSA_JWT_SECRET") or (DEV_JWT_SECRET if dev else ""),
            jwt_secret_previous=env.get("KASSA_JWT_SECRET_PREVIOUS") or "",
            jwt_jwks_url=env.get("KASSA_JWT_JWKS_URL") or None,
            jwt_jwks_ttl_seconds=jwks_ttl,
            jwt_issuer=env.get("KASSA_JWT_ISSUER") or None,
            jwt_audience=env.get("KASSA_JWT_AUDIENCE") or None,
            jwt_admin_claim=env.get("KASSA_JWT_ADMIN_CLAIM") or "role",
            service_secret=env.get("KASSA_SERVICE_SECRET") or (DEV_SERVICE_SECRET if dev else ""),
            service_secret_previous=env.get("KASSA_SERVICE_SECRET_PREVIOUS") or "",
            sandbox_url=sandbox_url,
            webhook_secret=env.get("KASSA_WEBHOOK_SECRET") or (DEV_WEBHOOK_SECRET if dev else ""),
            webhook_secret_previous=env.get("KASSA_WEBHOOK_SECRET_PREVIOUS") or "",
            payment_providers=env.get("KASSA_PAYMENT_PROVIDERS") or "",
            payment_window_seconds=_int(env, "KASSA_PAYMENT_WINDOW_SECONDS", 1800),
            payment_poll_after_seconds=_int(env, "KASSA_PAYMENT_POLL_AFTER_SECONDS", 60),
            public_url=env.get("KASSA_PUBLIC_URL") or f"http://{addrs['gateway']}",
            reservation_ttl_seconds=_int(env, "KASSA_RESERVATION_TTL_SECONDS", 900),
            warehouse_reconcile_seconds=_int(env, "KASSA_WAREHOUSE_RECONCILE_SECONDS", 300),
            checkout_lock_ttl_ms=_int(env, "KASSA_CHECKOUT_LOCK_TTL_MS", 900_000),
            checkout_recovery_after_seconds=_int(env, "KASSA_CHECKOUT_RECOVERY_AFTER_SECONDS", 0),
            checkout_lock_lease_ms=_int(env, "KASSA_CHECKOUT_LOCK_LEASE_MS", 0),
            checkout_redis_timeout_seconds=float(env.get("KASSA_CHECKOUT_REDIS_TIMEOUT_SECONDS") or 0.5),
            checkout_preview_reuse_seconds=preview_reuse,
            checkout_cart_price_ttl_seconds=cart_price_ttl,
            result_ttl_seconds=_int(env, "KASSA_RESULT_TTL_SECONDS", 86_400),
            max_cart_items=_int(env, "KASSA_MAX_CART_ITEMS", 100),
            max_item_quantity=_int(env, "KASSA_MAX_ITEM_QUANTITY", 999),
            min_order_minor=_int(env, "KASSA_MIN_ORDER_MINOR", 0),
            default_currency=env.get("KASSA_DEFAULT_CURRENCY") or "USD",
            rpc_timeout_seconds=float(env.get("KASSA_RPC_TIMEOUT_SECONDS") or 5.0),
            db_pool_size=_int(env, "KASSA_DB_POOL_SIZE", 10),
            **_admission(env, rpc_timeout_seconds=float(env.get("KASSA_RPC_TIMEOUT_SECONDS") or 5.0)),
            pii_keys=pii_keys,
            environment=environment,
            service_database_urls={
                name: url for name in DATABASE_SERVICES if (url := env.get(f"KASSA_{name.upper()}_DATABASE_URL"))
            },
            pgbouncer=_bool(env, "KASSA_PGBOUNCER"),
            gateway_tls=tls.ServerTls(*gateway_files) if gateway_files else None,
            grpc_tls=tls.MutualTls(*grpc_files) if grpc_files else None,
            grpc_health_addr=env.get("KASSA_GRPC_HEALTH_ADDR") or None,
            smtp_url=env.get("KASSA_SMTP_URL") or None,
            mail_from=env.get("KASSA_MAIL_FROM") or "Kassa <orders@kassa.localhost>",
            smtp_idle_seconds=smtp_idle,
            capture_on=capture_on,
            replica=replica,
            gateway_replica_addrs=gateway_replicas,
            metrics_addrs=metrics_addrs,
        )

    def for_service(self, service: str) -> Settings:
        """These settings as ``service`` sees them: ``database_url`` is its own KASSA_<SERVICE>_DATABASE_URL if set."""
        own = self.service_database_urls.get(service)
        return self if own is None else replace(self, database_url=own)

    @property
    def is_development(self) -> bool:
        return self.environment == DEVELOPMENT

    @property
    def jwt_secrets(self) -> tuple[str, ...]:
        """Keys customer tokens verify with, the signing one first."""
        return tuple(s for s in (self.jwt_secret, self.jwt_secret_previous) if s)

    @property
    def service_secrets(self) -> tuple[str, ...]:
        """Keys service tokens verify with, the signing one first."""
        return tuple(s for s in (self.service_secret, self.service_secret_previous) if s)

    @property
    def webhook_secrets(self) -> tuple[str, ...]:
        """Keys webhook signatures verify with, the signing one first."""
        return tuple(s for s in (self.webhook_secret, self.webhook_secret_previous) if s)

    def require(self, *names: str) -> None:
        """Refuse to start when a setting the caller needs is missing, or (in production) a secret is unsafe."""
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            env_names = ", ".join(f"KASSA_{n.upper()}" for n in missing)
            raise ConfigError(f"missing configuration: {env_names} (or run the local stack: `kassa up`)")
        self.require_safe_secrets()
        self.require_usable_tls()

    def require_usable_tls(self) -> None:
        """Refuse certificate files that are unreadable, mismatched or expired, in any mode; in production also
        the development certificates of ``kassa certs`` (infra.tls.problems)."""
        production = not self.is_development
        problems: list[str] = []
        if self.gateway_tls is not None:
            gw = self.gateway_tls
            problems += tls.problems("KASSA_GATEWAY_TLS", gw.cert_file, gw.key_file, production=production)
        if self.grpc_tls is not None:
            mt = self.grpc_tls
            problems += tls.problems("KASSA_GRPC_TLS", mt.cert_file, mt.key_file, mt.ca_file, production=production)
        if problems:
            raise ConfigError("refusing to start: " + "; ".join(problems))

    def require_safe_secrets(self) -> None:
        """In production, refuse missing, short, committed or shared secrets, naming each variable at fault.

        Every process checks all of them: they share one set of secrets, and a mistake found by any
        process is found before the mesh serves anyone. Development mode checks nothing.
        """
        if self.is_development:
            return
        problems: list[str] = []
        required = {"KASSA_SERVICE_SECRET", "KASSA_WEBHOOK_SECRET"}
        if not self.jwt_jwks_url:
            required.add("KASSA_JWT_SECRET")
        for field_name, variable in _SECRETS:
            value = getattr(self, field_name)
            if not value:
                if variable in required:
                    also = " (or KASSA_JWT_JWKS_URL)" if variable == "KASSA_JWT_SECRET" else ""
                    problems.append(f"{variable}{also} is not set")
                continue
            problem = secret_problem(value)
            if problem is not None:
                problems.append(f"{variable} {problem}")
        # One key per purpose: whoever holds the customer-token key (an identity provider) or the webhook key
        # (the payment provider) must not be able to sign anything else.
        purposes = {
            "KASSA_JWT_SECRET": set(self.jwt_secrets),
            "KASSA_SERVICE_SECRET": set(self.service_secrets),
            "KASSA_WEBHOOK_SECRET": set(self.webhook_secrets),
        }
        names = list(purposes)
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                if purposes[first] & purposes[second]:
                    problems.append(f"{first} and {second} (or their _PREVIOUS values) must differ")
        if self.jwt_jwks_url:
            url = urlsplit(self.jwt_jwks_url)
            if url.scheme != "https" and not (url.scheme == "http" and url.hostname in _LOOPBACK_HOSTS):
                problems.append("KASSA_JWT_JWKS_URL must be an https:// URL (keys fetched in the clear can be forged)")
        if problems:
            raise ConfigError(
                "refusing to start in production mode (KASSA_ENV is unset or 'production'): "
                + "; ".join(problems)
                + f". Set each secret to its own random value of at least {MIN_SECRET_BYTES} bytes ("
                + _NEW_SECRET_HINT
                + "), or set KASSA_ENV=development for a local run."
            )

    def pii_cipher(self) -> PiiCipher:
        """The cipher of personal data, for the processes that keep some (order, checkout, migrations).

        Refuses to start without KASSA_PII_KEYS, and in production with the development key or a key that
        was not drawn at random. Only those processes ask: the others never need to hold the keys.
        """
        if not self.pii_keys:
            raise ConfigError(
                "refusing to start in production mode (KASSA_ENV is unset or 'production'): KASSA_PII_KEYS is not "
                f"set. Give it kid:base64key entries, the current key first ({_NEW_PII_KEY_HINT} makes one), "
                "or set KASSA_ENV=development for a local run."
            )
        keys = parse_keys(self.pii_keys)
        if not self.is_development:
            development = {k.key for k in parse_keys(DEV_PII_KEYS)}
            problems: list[str] = []
            for k in keys:
                problem = (
                    "is the development key committed in the Kassa repository"
                    if k.key in development
                    else key_problem(k.key)
                )
                if problem is not None:
                    problems.append(f"key {k.key_id!r} {problem}")
            if problems:
                raise ConfigError(
                    "refusing to start in production mode (KASSA_ENV is unset or 'production'): KASSA_PII_KEYS "
                    + "; ".join(problems)
                    + f". Each key must be {KEY_BYTES} random bytes ({_NEW_PII_KEY_HINT} makes one)."
                )
        return PiiCipher(keys)

    def addr(self, service: str) -> str:
        """What clients dial: one address, or the comma-separated addresses of the service's replicas."""
        return self.addrs[service]

    def admission_policy(self, new_work: frozenset[str]) -> AdmissionPolicy:
        """The admission control of a service whose calls ``new_work`` start a new checkout."""
        return AdmissionPolicy(
            limit=self.max_in_flight,
            new_work=new_work,
            hard_limit=self.admission_hard_limit,
            target_s=self.admission_target_ms / 1000,
            interval_s=self.admission_interval_ms / 1000,
            max_wait_s=self.admission_max_wait_ms / 1000,
            latency_target_s=self.admission_latency_target_ms / 1000,
        )

    def listen_addr(self, service: str) -> str:
        """The address this process serves ``service`` on: its entry (KASSA_REPLICA) of the service's list."""
        return _pick_replica(f"KASSA_{service.upper()}_ADDR", parse_addrs("", self.addrs[service]), self.replica)

    def metrics_listen_addr(self, service: str, listen_addr: str) -> str:
        """Where this process serves /metrics: its entry (KASSA_REPLICA) of KASSA_<SERVICE>_METRICS_ADDR, else
        its gRPC ``listen_addr``'s host and port + 1000 (port 0, a free port, stays 0)."""
        variable = f"KASSA_{service.upper()}_METRICS_ADDR"
        if raw := self.metrics_addrs.get(service):
            return _pick_replica(variable, parse_addrs(variable, raw), self.replica)
        host, port = _host_port(f"KASSA_{service.upper()}_ADDR", listen_addr)
        metrics_port = port + METRICS_PORT_OFFSET if port else 0
        if metrics_port > 65535:
            raise ConfigError(f"{variable} must be set: the gRPC port {port} + {METRICS_PORT_OFFSET} is no port")
        return f"{host}:{metrics_port}"

    def gateway_own_addr(self) -> str | None:
        """This gateway replica's own address beside the shared one, or None when the gateway runs alone."""
        if not self.gateway_replica_addrs:
            return None
        return _pick_replica(GATEWAY_REPLICA_ADDRS, self.gateway_replica_addrs, self.replica)


def _admission(env: dict[str, str], *, rpc_timeout_seconds: float) -> dict[str, int]:
    """The admission settings, refused at start-up when they make no sense together."""
    values = {
        "max_in_flight": _int(env, "KASSA_MAX_IN_FLIGHT", 16),
        "admission_target_ms": _int(env, "KASSA_ADMISSION_TARGET_MS", 500),
        "admission_interval_ms": _int(env, "KASSA_ADMISSION_INTERVAL_MS", 1000),
        "admission_max_wait_ms": _int(env, "KASSA_ADMISSION_MAX_WAIT_MS", 5000),
        "admission_hard_limit": _int(env, "KASSA_ADMISSION_HARD_LIMIT", 0),
        "admission_latency_target_ms": _int(env, "KASSA_ADMISSION_LATENCY_TARGET_MS", int(rpc_timeout_seconds * 500)),
    }
    limit, target, interval, max_wait, hard, latency = values.values()
    if limit < 0:
        raise ConfigError(f"KASSA_MAX_IN_FLIGHT must be >= 0 (0 turns admission control off), got {limit}")
    if target <= 0 or interval <= 0:
        raise ConfigError(
            f"KASSA_ADMISSION_TARGET_MS and KASSA_ADMISSION_INTERVAL_MS must be > 0, got {target} and {interval}"
        )
    if max_wait < target:
        raise ConfigError(
            f"KASSA_ADMISSION_MAX_WAIT_MS must be at least KASSA_ADMISSION_TARGET_MS ({target}), got {max_wait}"
        )
    if hard < 0 or (hard and hard < limit):
        raise ConfigError(
            f"KASSA_ADMISSION_HARD_LIMIT must be 0 (8 x KASSA_MAX_IN_FLIGHT) or at least KASSA_MAX_IN_FLIGHT "
            f"({limit}), got {hard}"
        )
    if latency < 0:
        raise ConfigError(f"KASSA_ADMISSION_LATENCY_TARGET_MS must be >= 0 (0: a fixed limit), got {latency}")
    return values


def _pick_replica(variable: str, addrs: tuple[str, ...], replica: int | None) -> str:
    if replica is None:
        if len(addrs) == 1:
            return addrs[0]
        raise ConfigError(
            f"{variable} lists {len(addrs)} replicas: set {REPLICA} to the index (0-{len(addrs) - 1}) "
            "of the one this process serves"
        )
    if replica >= len(addrs):
        raise ConfigError(f"{REPLICA}={replica}, but {variable} lists {len(addrs)} address(es)")
    return addrs[replica]


def redact(url: str) -> str:
    """The URL without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
