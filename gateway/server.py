"""``python -m gateway``: serve the app with uvicorn (uvloop + httptools), stop gracefully on SIGTERM."""

from __future__ import annotations

import uvicorn

from gateway.app import create_app
from gateway.config import GatewayConfig
from infra.config import ConfigError, Settings
from infra.logs import setup_logging

__all__ = ["main", "uvicorn_config"]

GRACEFUL_SHUTDOWN_SECONDS = 10


def split_addr(addr: str) -> tuple[str, int]:
    """``127.0.0.1:8080`` / ``[::1]:8080`` -> (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"KASSA_GATEWAY_ADDR must be host:port, got {addr!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def uvicorn_config(settings: Settings, config: GatewayConfig) -> uvicorn.Config:
    """HTTPS when KASSA_GATEWAY_TLS_CERT_FILE/KEY_FILE are set (infra.tls), plain HTTP otherwise."""
    host, port = split_addr(settings.addr("gateway"))
    tls = settings.gateway_tls
    return uvicorn.Config(
        create_app(settings, config),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,  # keep the JSON logging set up by infra.logs
        server_header=False,
        # The client's address is gateway.client_ip's to work out, from KASSA_GATEWAY_TRUSTED_PROXIES: uvicorn's
        # own X-Forwarded-For handling believes any peer on 127.0.0.1 by default (FORWARDED_ALLOW_IPS).
        proxy_headers=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        ssl_certfile=tls.cert_file if tls else None,
        ssl_keyfile=tls.key_file if tls else None,
    )


def main() -> None:
    setup_logging("gateway")
    try:
        settings = Settings.from_env()
        config = GatewayConfig.from_env(development=settings.environment == "development")
        settings.require(*(("redis_url",) if config.rate_limited else ()))
        server_config = uvicorn_config(settings, config)
    except ConfigError as exc:
        raise SystemExit(f"gateway: {exc}") from exc
    uvicorn.Server(server_config).run()
