"""``python -m gateway``: serve the app with uvicorn (uvloop + httptools), stop gracefully on SIGTERM.

Several gateway replicas (``kassa up --replicas N``) share KASSA_GATEWAY_ADDR: each binds it with
SO_REUSEPORT, and the kernel hands every new connection to one of them, the way a load balancer in front
of them would; a replica that exits simply stops getting connections. Each also listens on its own
address (its entry of KASSA_GATEWAY_REPLICA_ADDRS, picked by KASSA_REPLICA), where the supervisor probes
that one replica's health.
"""

from __future__ import annotations

import socket

import uvicorn

from gateway.app import create_app
from gateway.config import GatewayConfig
from infra import heap, tracing
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


def listening_socket(addr: str, *, reuse_port: bool) -> socket.socket:
    """A bound TCP socket for uvicorn to listen on; ``reuse_port`` lets other replicas bind the same address."""
    host, port = split_addr(addr)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot bind {addr}: {exc}") from exc
    sock.set_inheritable(True)
    return sock


def main() -> None:
    setup_logging("gateway")
    tracing.setup("gateway")
    sockets: list[socket.socket] | None = None
    try:
        settings = Settings.from_env()
        config = GatewayConfig.from_env(development=settings.environment == "development")
        settings.require(*(("redis_url",) if config.rate_limited else ()))
        server_config = uvicorn_config(settings, config)
        own = settings.gateway_own_addr()
        if own is not None:
            sockets = [listening_socket(settings.addr("gateway"), reuse_port=True)]
            sockets.append(listening_socket(own, reuse_port=False))
    except ConfigError as exc:
        raise SystemExit(f"gateway: {exc}") from exc
    heap.settle()
    uvicorn.Server(server_config).run(sockets=sockets)
