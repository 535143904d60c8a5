"""Configuration from environment variables, read once at start-up.

Nothing here is read at import time: ``Settings.from_env()`` is called by each
entry point, and a service refuses to start when something it needs is missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["DEFAULT_ADDRS", "ConfigError", "Settings"]

# Default loopback addresses (DESIGN.md §2); each overridable by KASSA_<NAME>_ADDR.
DEFAULT_ADDRS: dict[str, str] = {
    "gateway": "127.0.0.1:8080",
    "checkout": "127.0.0.1:50051",
    "order": "127.0.0.1:50052",
    "payment": "127.0.0.1:50053",
    "warehouse": "127.0.0.1:50054",
    "pricing": "127.0.0.1:50055",
    "promotion": "127.0.0.1:50056",
    "sandbox": "127.0.0.1:8090",
}

# Local-only default; `Settings.require_production_safe` refuses it outside development.
DEV_JWT_SECRET = "kassa-local-development-secret-change-me"
DEV_WEBHOOK_SECRET = "whsec_kassa_sandbox_local"


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


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    redis_url: str | None
    nats_url: str | None
    addrs: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ADDRS))
    jwt_secret: str = DEV_JWT_SECRET
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    sandbox_url: str = "http://127.0.0.1:8090"
    webhook_secret: str = DEV_WEBHOOK_SECRET
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
    result_ttl_seconds: int = 86_400
    max_cart_items: int = 100
    max_item_quantity: int = 999
    min_order_minor: int = 0
    default_currency: str = "USD"
    rpc_timeout_seconds: float = 5.0
    db_pool_size: int = 10
    # Checkout and the gateway refuse new checkouts beyond this many calls in flight, other calls at three
    # times it (0: no limit).
    # Sized for a 2-core machine (about what it serves in half a second); raise it with the machine.
    max_in_flight: int = 16
    environment: str = "development"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        addrs = {name: env.get(f"KASSA_{name.upper()}_ADDR", default) for name, default in DEFAULT_ADDRS.items()}
        sandbox_url = env.get("KASSA_SANDBOX_URL") or f"http://{addrs['sandbox']}"
        return cls(
            database_url=env.get("KASSA_DATABASE_URL") or None,
            redis_url=env.get("KASSA_REDIS_URL") or None,
            nats_url=env.get("KASSA_NATS_URL") or None,
            addrs=addrs,
            jwt_secret=env.get("KASSA_JWT_SECRET") or DEV_JWT_SECRET,
            jwt_jwks_url=env.get("KASSA_JWT_JWKS_URL") or None,
            jwt_issuer=env.get("KASSA_JWT_ISSUER") or None,
            jwt_audience=env.get("KASSA_JWT_AUDIENCE") or None,
            sandbox_url=sandbox_url,
            webhook_secret=env.get("KASSA_WEBHOOK_SECRET") or DEV_WEBHOOK_SECRET,
            payment_providers=env.get("KASSA_PAYMENT_PROVIDERS") or "",
            payment_window_seconds=_int(env, "KASSA_PAYMENT_WINDOW_SECONDS", 1800),
            payment_poll_after_seconds=_int(env, "KASSA_PAYMENT_POLL_AFTER_SECONDS", 60),
            public_url=env.get("KASSA_PUBLIC_URL") or f"http://{addrs['gateway']}",
            reservation_ttl_seconds=_int(env, "KASSA_RESERVATION_TTL_SECONDS", 900),
            checkout_lock_ttl_ms=_int(env, "KASSA_CHECKOUT_LOCK_TTL_MS", 900_000),
            checkout_recovery_after_seconds=_int(env, "KASSA_CHECKOUT_RECOVERY_AFTER_SECONDS", 0),
            checkout_lock_lease_ms=_int(env, "KASSA_CHECKOUT_LOCK_LEASE_MS", 0),
            checkout_redis_timeout_seconds=float(env.get("KASSA_CHECKOUT_REDIS_TIMEOUT_SECONDS") or 0.5),
            result_ttl_seconds=_int(env, "KASSA_RESULT_TTL_SECONDS", 86_400),
            max_cart_items=_int(env, "KASSA_MAX_CART_ITEMS", 100),
            max_item_quantity=_int(env, "KASSA_MAX_ITEM_QUANTITY", 999),
            min_order_minor=_int(env, "KASSA_MIN_ORDER_MINOR", 0),
            default_currency=env.get("KASSA_DEFAULT_CURRENCY") or "USD",
            rpc_timeout_seconds=float(env.get("KASSA_RPC_TIMEOUT_SECONDS") or 5.0),
            db_pool_size=_int(env, "KASSA_DB_POOL_SIZE", 10),
            max_in_flight=_int(env, "KASSA_MAX_IN_FLIGHT", 16),
            environment=env.get("KASSA_ENV") or "development",
        )

    def require(self, *names: str) -> None:
        """Refuse to start when a setting the caller needs is missing."""
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            env_names = ", ".join(f"KASSA_{n.upper()}" for n in missing)
            raise ConfigError(f"missing configuration: {env_names} (or run the local stack: `kassa up`)")
        if self.environment != "development" and self.jwt_secret == DEV_JWT_SECRET and not self.jwt_jwks_url:
            raise ConfigError("KASSA_JWT_SECRET (or KASSA_JWT_JWKS_URL) must be set outside development")

    def addr(self, service: str) -> str:
        return self.addrs[service]
