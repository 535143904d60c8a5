"""TLS from configuration: ``kassa certs``, HTTPS on the gateway, mutual TLS between processes, and what
production refuses (infra.tls, devstack.certs).

Real handshakes on loopback: uvicorn serving the gateway app over HTTPS, and a grpc.aio server from
``infra.server.start_server`` asking every client for a certificate.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import ssl
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
import pytest_asyncio
import uvicorn
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from devstack.certs import NAMES, make_dev_certs
from devstack.cli import main as kassa
from devstack.localstack import free_ports
from gateway.config import GatewayConfig
from gateway.server import uvicorn_config
from infra.channels import open_channel
from infra.config import ConfigError, Settings
from infra.probe import grpc_serving
from infra.runner import running_service, verifier_for
from infra.server import Server, start_server
from infra.tls import MutualTls

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    assert kassa(["certs", "--out", str(out), "--san", "checkout.kassa.svc"]) == 0
    return out


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Certificates from a CA the servers do not trust."""
    out = tmp_path_factory.mktemp("other-certs")
    make_dev_certs(out, ["gateway"])
    return out


def _dev(**extra: str) -> dict[str, str]:
    return {"KASSA_ENV": "development", **extra}


def _grpc_tls(certs: Path, name: str) -> dict[str, str]:
    return {
        "KASSA_GRPC_TLS_CA_FILE": str(certs / "ca.pem"),
        "KASSA_GRPC_TLS_CERT_FILE": str(certs / f"{name}.pem"),
        "KASSA_GRPC_TLS_KEY_FILE": str(certs / f"{name}-key.pem"),
    }


# -- kassa certs ---------------------------------------------------------------------------------------------------


def test_kassa_certs_makes_a_ca_and_a_certificate_per_process_that_it_signed(certs: Path) -> None:
    ca = x509.load_pem_x509_certificate((certs / "ca.pem").read_bytes())
    for name in NAMES:
        cert = x509.load_pem_x509_certificate((certs / f"{name}.pem").read_bytes())
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert name in sans.get_values_for_type(x509.DNSName)
        assert "checkout.kassa.svc" in sans.get_values_for_type(x509.DNSName)
        assert "127.0.0.1" in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
        assert stat.S_IMODE(os.stat(certs / f"{name}-key.pem").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(certs / "ca-key.pem").st_mode) == 0o600


def test_kassa_certs_reuses_the_ca_already_in_the_folder(tmp_path: Path) -> None:
    make_dev_certs(tmp_path, ["order"])
    first = (tmp_path / "ca.pem").read_bytes()
    make_dev_certs(tmp_path, ["payment"])
    assert (tmp_path / "ca.pem").read_bytes() == first
    ca = x509.load_pem_x509_certificate(first)
    x509.load_pem_x509_certificate((tmp_path / "order.pem").read_bytes()).verify_directly_issued_by(ca)


# -- configuration and production ----------------------------------------------------------------------------------


def _production(**extra: str) -> dict[str, str]:
    return {
        "KASSA_JWT_SECRET": secrets.token_urlsafe(48),
        "KASSA_SERVICE_SECRET": secrets.token_urlsafe(48),
        "KASSA_WEBHOOK_SECRET": secrets.token_urlsafe(48),
        **extra,
    }


def test_development_accepts_the_certificates_of_kassa_certs(certs: Path) -> None:
    settings = Settings.from_env(
        _dev(
            **_grpc_tls(certs, "checkout"),
            KASSA_GATEWAY_TLS_CERT_FILE=str(certs / "gateway.pem"),
            KASSA_GATEWAY_TLS_KEY_FILE=str(certs / "gateway-key.pem"),
        )
    )
    settings.require()
    assert settings.grpc_tls == MutualTls(
        str(certs / "ca.pem"), str(certs / "checkout.pem"), str(certs / "checkout-key.pem")
    )
    assert settings.gateway_tls is not None


@pytest.mark.parametrize("prefix", ["KASSA_GRPC_TLS", "KASSA_GATEWAY_TLS"])
def test_production_refuses_the_development_certificates_of_kassa_certs(certs: Path, prefix: str) -> None:
    files = (
        _grpc_tls(certs, "order")
        if prefix == "KASSA_GRPC_TLS"
        else {f"{prefix}_CERT_FILE": str(certs / "gateway.pem"), f"{prefix}_KEY_FILE": str(certs / "gateway-key.pem")}
    )
    with pytest.raises(ConfigError, match=f"{prefix}_CERT_FILE is a development certificate"):
        Settings.from_env(_production(**files)).require()


def test_half_a_tls_configuration_is_refused_naming_what_is_missing(certs: Path) -> None:
    env = _grpc_tls(certs, "order")
    del env["KASSA_GRPC_TLS_CA_FILE"]
    with pytest.raises(ConfigError, match="KASSA_GRPC_TLS_CA_FILE must be set too"):
        Settings.from_env(_dev(**env))
    with pytest.raises(ConfigError, match="KASSA_GATEWAY_TLS_KEY_FILE must be set too"):
        Settings.from_env(_dev(KASSA_GATEWAY_TLS_CERT_FILE=str(certs / "gateway.pem")))


def test_a_key_of_another_certificate_a_missing_file_or_a_foreign_ca_are_refused(certs: Path, other_ca: Path) -> None:
    wrong_key = {**_grpc_tls(certs, "order"), "KASSA_GRPC_TLS_KEY_FILE": str(certs / "payment-key.pem")}
    with pytest.raises(ConfigError, match="KASSA_GRPC_TLS_KEY_FILE is not the private key of KASSA_GRPC_TLS_CERT_FILE"):
        Settings.from_env(_dev(**wrong_key)).require()
    missing = {**_grpc_tls(certs, "order"), "KASSA_GRPC_TLS_CERT_FILE": str(certs / "nowhere.pem")}
    with pytest.raises(ConfigError, match=r"KASSA_GRPC_TLS_CERT_FILE .* is not a readable PEM certificate"):
        Settings.from_env(_dev(**missing)).require()
    foreign = {**_grpc_tls(other_ca, "gateway"), "KASSA_GRPC_TLS_CA_FILE": str(certs / "ca.pem")}
    with pytest.raises(ConfigError, match="KASSA_GRPC_TLS_CERT_FILE was not issued by KASSA_GRPC_TLS_CA_FILE"):
        Settings.from_env(_dev(**foreign)).require()


# -- HTTPS on the gateway ------------------------------------------------------------------------------------------


async def test_the_gateway_answers_over_https_with_a_certificate_from_kassa_certs(certs: Path) -> None:
    (port,) = free_ports(1)
    settings = Settings.from_env(
        _dev(
            KASSA_GATEWAY_ADDR=f"127.0.0.1:{port}",
            KASSA_GATEWAY_TLS_CERT_FILE=str(certs / "gateway.pem"),
            KASSA_GATEWAY_TLS_KEY_FILE=str(certs / "gateway-key.pem"),
        )
    )
    config = uvicorn_config(settings, GatewayConfig(rate_limit_per_minute=0))
    config.loop = "none"  # already inside the test's event loop
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    trusted = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    try:
        while not server.started:
            assert not task.done(), "uvicorn exited during start-up"
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(verify=trusted) as client:
            health = await client.get(f"https://127.0.0.1:{port}/healthz")
        async with httpx.AsyncClient() as client:  # the system's CAs: ours is not among them
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(f"https://127.0.0.1:{port}/healthz")
            with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets no HTTP answer
                await client.get(f"http://127.0.0.1:{port}/healthz")
    finally:
        server.should_exit = True
        await task
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert health.http_version == "HTTP/1.1"


# -- mutual TLS between processes ----------------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def mtls_server(certs: Path) -> AsyncIterator[Server]:
    settings = Settings.from_env(_dev(**_grpc_tls(certs, "warehouse")))
    assert settings.grpc_tls is not None
    server = await start_server(
        "127.0.0.1:0",
        [],
        verifier_for(settings),
        credentials=settings.grpc_tls.server_credentials(),
        health_addr="127.0.0.1:0",
    )
    yield server
    await server.stop(0)


async def _health(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return reply.status


async def test_a_service_serves_a_client_with_a_certificate_its_ca_signed(mtls_server: Server, certs: Path) -> None:
    settings = Settings.from_env(_dev(**_grpc_tls(certs, "checkout")))
    async with open_channel(f"127.0.0.1:{mtls_server.port}", settings.grpc_tls) as channel:
        assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING


async def test_a_service_refuses_a_client_without_a_certificate_or_with_a_foreign_one(
    mtls_server: Server, certs: Path, other_ca: Path
) -> None:
    addr = f"127.0.0.1:{mtls_server.port}"
    no_cert = grpc.ssl_channel_credentials(root_certificates=(certs / "ca.pem").read_bytes())
    foreign = MutualTls(str(certs / "ca.pem"), str(other_ca / "gateway.pem"), str(other_ca / "gateway-key.pem"))
    channels = [
        grpc.aio.secure_channel(addr, no_cert),
        open_channel(addr, foreign),
        grpc.aio.insecure_channel(addr),
    ]
    try:
        for channel in channels:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _health(channel)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        for channel in channels:
            await channel.close()


async def test_the_plaintext_health_port_serves_the_health_service_and_nothing_else(mtls_server: Server) -> None:
    assert mtls_server.health_port
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mtls_server.health_port}") as channel:
        assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in reflection.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            ):
                pass
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED


# -- the runner, the gateway's backends and the compose probe with mutual TLS configured -------------------------


async def test_a_service_run_by_the_runner_serves_mutual_tls_from_its_settings(
    settings: Settings, certs: Path, customer_token: str
) -> None:
    from kassa.pricing.v1 import pricing_service_pb2, pricing_service_pb2_grpc
    from pricing.bootstrap import bootstrap

    own = Settings.from_env(_dev(**_grpc_tls(certs, "pricing")))
    with_tls = dataclasses.replace(settings, grpc_tls=own.grpc_tls, grpc_health_addr="127.0.0.1:0")
    client = Settings.from_env(_dev(**_grpc_tls(certs, "checkout"))).grpc_tls
    request = pricing_service_pb2.GetProductsRequest(skus=[f"NO-SUCH-{uuid.uuid4().hex[:8]}"])
    metadata = (("authorization", f"Bearer {customer_token}"),)
    async with running_service(bootstrap, with_tls, "127.0.0.1:0") as server:
        async with open_channel(f"127.0.0.1:{server.port}", client) as channel:
            reply = await pricing_service_pb2_grpc.PricingServiceStub(channel).GetProducts(
                request, metadata=metadata, timeout=10
            )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as plain:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await pricing_service_pb2_grpc.PricingServiceStub(plain).GetProducts(
                    request, metadata=metadata, timeout=10
                )
        assert server.health_port
        # What compose's health check runs (in a thread: it blocks, and the server runs on this loop).
        assert await asyncio.to_thread(grpc_serving, f"127.0.0.1:{server.health_port}")
        assert not await asyncio.to_thread(grpc_serving, f"127.0.0.1:{server.port}")  # the TLS port wants a certificate
    assert list(reply.products) == []
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_the_gateway_reaches_its_backends_over_mutual_tls(mtls_server: Server, certs: Path) -> None:
    from gateway.backends import Backends
    from gateway.routing import build_route_table

    here = f"127.0.0.1:{mtls_server.port}"
    addrs = {
        f"KASSA_{name.upper()}_ADDR": here
        for name in ("checkout", "order", "payment", "warehouse", "pricing", "promotion", "notification")
    }
    methods = [r.rpc for r in build_route_table().routes]
    for env, serving in ((_dev(**addrs, **_grpc_tls(certs, "gateway")), True), (_dev(**addrs), False)):
        backends = Backends(Settings.from_env(env), methods)
        backends.open()
        try:
            health = await backends.health(5)
        finally:
            await backends.close()
        assert health and set(health.values()) == {serving}


async def test_a_channel_to_two_replicas_over_mutual_tls_reaches_both(certs: Path) -> None:
    """A list of replicas is an ipv4: target whose authority no certificate names; the channel checks each
    replica's certificate against the first host instead, and round-robin reaches both."""
    servers = []
    for _ in range(2):
        settings = Settings.from_env(_dev(**_grpc_tls(certs, "warehouse")))
        assert settings.grpc_tls is not None
        servers.append(
            await start_server(
                "127.0.0.1:0", [], verifier_for(settings), credentials=settings.grpc_tls.server_credentials()
            )
        )
    try:
        client = Settings.from_env(_dev(**_grpc_tls(certs, "checkout")))
        replicas = ",".join(f"127.0.0.1:{server.port}" for server in servers)
        async with open_channel(replicas, client.grpc_tls) as channel:
            for _ in range(4):
                assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
    finally:
        for server in servers:
            await server.stop(0)
