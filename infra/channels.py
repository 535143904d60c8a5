"""Client side of service-to-service calls.

One channel per dependency, created at start-up and closed by bootstrap. Every
call gets a deadline; the caller's credentials and request id travel along so
ownership checks and logs work across hops. Services use their own service
token (signed with KASSA_SERVICE_SECRET, see infra.auth) when there is no
end-user call to forward (workers, compensations).

A dependency with several replicas is configured as the list of their addresses
(``KASSA_PRICING_ADDR=127.0.0.1:50055,127.0.0.1:50065``, see
``infra.config.parse_addrs``). Its channel connects to every one and spreads the
calls over them with gRPC's ``round_robin`` policy: HTTP/2 keeps one connection
open for a client's whole life, so spreading connections (a shared port, DNS)
would send all of one client's calls to one replica. A replica that goes down
drops out of the rotation until it is back.
"""

from __future__ import annotations

import json
import time

import grpc

from infra.auth import current_identity, mint_service_token
from infra.config import parse_addrs
from infra.logs import request_id_var
from infra.tls import MutualTls
from infra.tracing import outgoing_metadata

__all__ = ["ROUND_ROBIN", "ServiceCredentials", "call_metadata", "grpc_target", "open_channel"]

# The gRPC service config that spreads calls over every address of the target, one call each in turn.
ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def grpc_target(addr: str) -> str:
    """A channel target for ``addr``: one ``host:port`` as it is, a list of replicas as an ``ipv4:``/``ipv6:`` URI.

    gRPC's ``ipv4:a:1,b:2`` resolver hands every address to the load-balancing policy, which
    :func:`open_channel` sets to round_robin. Raises ``infra.config.ConfigError`` for a malformed list.
    """
    return _target(parse_addrs("address", addr))


def _target(addrs: tuple[str, ...]) -> str:
    if len(addrs) == 1:
        return addrs[0]
    scheme = "ipv6" if addrs[0].startswith("[") else "ipv4"
    return f"{scheme}:{','.join(addrs)}"


def open_channel(addr: str, tls: MutualTls | None = None) -> grpc.aio.Channel:
    """A channel to one address or to a service's replicas (comma-separated), calls spread round-robin; with
    ``tls`` (``Settings.grpc_tls``) it presents this process's certificate."""
    replicas = parse_addrs("address", addr)
    options = [
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", 4 * 1024 * 1024),
        ("grpc.service_config", ROUND_ROBIN),
    ]
    if tls is None:
        return grpc.aio.insecure_channel(_target(replicas), options=options)
    if len(replicas) > 1:
        # The authority of an ipv4:/ipv6: list is the whole joined string, which no certificate names: check
        # each replica's certificate against the host of the first (replicas of one service share their names).
        options.append(("grpc.ssl_target_name_override", replicas[0].rpartition(":")[0].strip("[]")))
    return grpc.aio.secure_channel(_target(replicas), tls.channel_credentials(), options=options)


class ServiceCredentials:
    """A service's own token (role "service"), minted with the service key and renewed before expiry.

    ``secret`` is the current KASSA_SERVICE_SECRET (``Settings.service_secret``), never a customer-token key.
    """

    def __init__(self, secret: str, service: str, ttl_seconds: int = 3600) -> None:
        self._secret = secret
        self._service = service
        self._ttl = ttl_seconds
        self._token = ""
        self._renew_at = 0.0

    def token(self) -> str:
        now = time.time()
        if now >= self._renew_at:
            self._token = mint_service_token(self._secret, self._service, ttl_seconds=self._ttl)
            self._renew_at = now + self._ttl / 2
        return self._token


def call_metadata(creds: ServiceCredentials, *, as_service: bool = True) -> tuple[tuple[str, str], ...]:
    """Metadata for an outgoing call.

    ``as_service=True`` (the default for internal RPCs) authenticates as this
    service; ``False`` forwards the end user's own token so the callee applies
    their ownership rules.
    """
    ident = current_identity()
    token = creds.token() if as_service or ident is None else ident.token
    md: list[tuple[str, str]] = [("authorization", f"Bearer {token}")]
    rid = request_id_var.get()
    if rid:
        md.append(("x-request-id", rid))
    md.extend(outgoing_metadata())  # the trace this call belongs to (infra.tracing)
    return tuple(md)
