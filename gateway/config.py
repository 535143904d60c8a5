"""Gateway-only settings that infra.config.Settings has no field for, read once at start-up.

Abuse limits (each 0 = off), counted in Redis across the gateway's replicas (gateway.ratelimit):

- KASSA_RATE_LIMIT_PER_MINUTE (600): requests per token subject per minute.
- KASSA_GATEWAY_RATE_LIMIT_PER_IP_PER_MINUTE (1200; 0 in development): requests per client IP per
  minute, with a token or without.
- KASSA_GATEWAY_GUEST_TOKENS_PER_IP_PER_HOUR (60; 0 in development): POST /v1/auth/guest per client IP
  per hour.
- KASSA_GATEWAY_TRUSTED_PROXIES (none): comma-separated IPs or CIDRs of the proxies in front of the
  gateway, whose X-Forwarded-For is believed (gateway.client_ip).

Admission of new checkouts (infra.admission.CheckoutAdmission; the bound on an expected wait, twice
KASSA_ADMISSION_MAX_WAIT_MS, and the latency target are the services' KASSA_ADMISSION_* settings, and
KASSA_MAX_IN_FLIGHT=0 turns it off):

- KASSA_GATEWAY_CHECKOUTS_IN_PROGRESS (16): checkouts in progress (admitted, not yet ended) from which a new
  checkout (a guest token, a new cart) waits in the queue; the limit adapts up to twice this. One that waited
  out the bound goes in past the limit only while those in progress are fewer than half of checkout's
  KASSA_ADMISSION_HARD_LIMIT (or 4 x this when that is more, with a warning: gateway.app.checkout_policy).
- KASSA_GATEWAY_CHECKOUT_IDLE_MS (3000): a checkout with no call for this long no longer counts (its client
  walked away); its later calls are still served.

Browsers: KASSA_CORS_ORIGINS (none: CORS off, so no page of another origin may call the gateway from a
browser): comma-separated origins (``https://shop.example.com``) whose pages may call it, or ``*`` for any.
Tokens travel in the Authorization header, never in cookies, so no credentials mode is offered.

The per-IP limits are off by default in development mode (KASSA_ENV=development: the local stack, the
tests, bench and chaos), where every customer comes from 127.0.0.1; set them to test them there. A
dataclass built in code (``GatewayConfig()``) has them off too: only ``from_env`` applies the
production defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from gateway.client_ip import TrustedProxies, parse_networks
from infra.config import ConfigError

__all__ = [
    "DEFAULT_CHECKOUTS_IN_PROGRESS",
    "DEFAULT_CHECKOUT_IDLE_MS",
    "DEFAULT_GUEST_TOKENS_PER_IP_PER_HOUR",
    "DEFAULT_IP_RATE_LIMIT_PER_MINUTE",
    "DEFAULT_RATE_LIMIT_PER_MINUTE",
    "GatewayConfig",
]

DEFAULT_RATE_LIMIT_PER_MINUTE = 600
# Several customers may share an address (an office, a carrier's NAT), so twice one subject's allowance.
DEFAULT_IP_RATE_LIMIT_PER_MINUTE = 1200
# A household or an office mints a few guest tokens an hour; a script minting subjects to dodge the
# per-subject limit mints hundreds.
DEFAULT_GUEST_TOKENS_PER_IP_PER_HOUR = 60
# About the checkouts the 2-core reference mesh runs at its closed-loop maximum (16 in flight).
DEFAULT_CHECKOUTS_IN_PROGRESS = 16
# A scripted client calls again within milliseconds, a person within seconds or minutes: past this a checkout no
# longer holds a slot (a person's later calls are served all the same, uncounted).
DEFAULT_CHECKOUT_IDLE_MS = 3000


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        parts = urlsplit(origin)
        if origin != "*" and (parts.scheme not in ("http", "https") or not parts.netloc or parts.path):
            raise ConfigError(f"KASSA_CORS_ORIGINS: {origin!r} is no origin (scheme://host[:port], or *)")
    return origins


def _limit(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        limit = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if limit < 0:
        raise ConfigError(f"{name} must be >= 0 (0 disables the limit)")
    return limit


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    value = _limit(env, name, default)
    if value == 0:
        raise ConfigError(f"{name} must be > 0")
    return value


@dataclass(frozen=True)
class GatewayConfig:
    """``*_per_*`` = 0 disables that limit; bodies above ``max_body_bytes`` get 413."""

    rate_limit_per_minute: int = DEFAULT_RATE_LIMIT_PER_MINUTE
    ip_rate_limit_per_minute: int = 0
    guest_tokens_per_ip_per_hour: int = 0
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)
    max_body_bytes: int = 1024 * 1024
    guest_token_ttl_seconds: int = 24 * 3600
    readiness_timeout_seconds: float = 1.0
    # Origins whose pages may call the gateway (CORS); empty: CORS off.
    cors_origins: tuple[str, ...] = ()
    # Checkouts in progress from which a new one waits (infra.admission.CheckoutAdmission); 0: not limited.
    checkouts_in_progress: int = DEFAULT_CHECKOUTS_IN_PROGRESS
    checkout_idle_ms: int = DEFAULT_CHECKOUT_IDLE_MS

    @property
    def rate_limited(self) -> bool:
        return any((self.rate_limit_per_minute, self.ip_rate_limit_per_minute, self.guest_tokens_per_ip_per_hour))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, development: bool | None = None) -> GatewayConfig:
        """``development``: the mode ``Settings.environment`` decided; None reads KASSA_ENV (unset: production)."""
        env = os.environ if environ is None else environ
        if development is None:
            development = env.get("KASSA_ENV") == "development"
        try:
            proxies = TrustedProxies(parse_networks(env.get("KASSA_GATEWAY_TRUSTED_PROXIES", "")))
        except ValueError as exc:
            raise ConfigError(f"KASSA_GATEWAY_TRUSTED_PROXIES: {exc}") from exc
        return cls(
            rate_limit_per_minute=_limit(env, "KASSA_RATE_LIMIT_PER_MINUTE", DEFAULT_RATE_LIMIT_PER_MINUTE),
            ip_rate_limit_per_minute=_limit(
                env,
                "KASSA_GATEWAY_RATE_LIMIT_PER_IP_PER_MINUTE",
                0 if development else DEFAULT_IP_RATE_LIMIT_PER_MINUTE,
            ),
            guest_tokens_per_ip_per_hour=_limit(
                env,
                "KASSA_GATEWAY_GUEST_TOKENS_PER_IP_PER_HOUR",
                0 if development else DEFAULT_GUEST_TOKENS_PER_IP_PER_HOUR,
            ),
            trusted_proxies=proxies,
            cors_origins=_origins(env.get("KASSA_CORS_ORIGINS", "")),
            checkouts_in_progress=_limit(env, "KASSA_GATEWAY_CHECKOUTS_IN_PROGRESS", DEFAULT_CHECKOUTS_IN_PROGRESS),
            checkout_idle_ms=_positive(env, "KASSA_GATEWAY_CHECKOUT_IDLE_MS", DEFAULT_CHECKOUT_IDLE_MS),
        )
