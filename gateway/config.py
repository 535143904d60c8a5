"""Gateway-only settings that infra.config.Settings has no field for, read once at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from infra.config import ConfigError

__all__ = ["GatewayConfig"]

DEFAULT_RATE_LIMIT_PER_MINUTE = 600


@dataclass(frozen=True)
class GatewayConfig:
    """``rate_limit_per_minute`` = 0 disables rate limiting; bodies above ``max_body_bytes`` get 413."""

    rate_limit_per_minute: int = DEFAULT_RATE_LIMIT_PER_MINUTE
    max_body_bytes: int = 1024 * 1024
    guest_token_ttl_seconds: int = 24 * 3600
    readiness_timeout_seconds: float = 1.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GatewayConfig:
        env = os.environ if environ is None else environ
        raw = env.get("KASSA_RATE_LIMIT_PER_MINUTE", "")
        if raw == "":
            return cls()
        try:
            limit = int(raw)
        except ValueError as exc:
            raise ConfigError(f"KASSA_RATE_LIMIT_PER_MINUTE must be an integer, got {raw!r}") from exc
        if limit < 0:
            raise ConfigError("KASSA_RATE_LIMIT_PER_MINUTE must be >= 0 (0 disables rate limiting)")
        return cls(rate_limit_per_minute=limit)
