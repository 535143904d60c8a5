"""Customer tokens from an identity provider's JWKS, served over real HTTP on 127.0.0.1 by the test.

Covers key rotation (an unknown ``kid`` refetches once), the caches (a fresh key set is not refetched, an
unknown ``kid`` is remembered briefly, a flood of unknown kids costs at most one fetch), fetching off the
event loop, an identity provider that is down, and service tokens verified beside JWKS customers; and a whole
mesh in JWKS mode, where a customer of the identity provider checks out.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from e2e.conftest import MeshHandle
from e2e.support import Rest, RestError, confirm, fill_cart, make_catalog, ready_session
from helpers import private_stack

from devstack import seed
from devstack.localstack import free_ports
from devstack.mesh import MESH_ORDER, Mesh, mesh_env
from infra.auth import ROLE_SERVICE, JwksKeys, JwtVerifier, Unauthenticated, mint_service_token, mint_token
from infra.migrate import migrate
from kassa.warehouse.v1 import inventory_pb2
from kassa.warehouse.v1 import inventory_service_pb2 as inv_pb
from kassa.warehouse.v1 import inventory_service_pb2_grpc as inv_grpc
from kernel.errors import Unavailable

pytestmark = pytest.mark.unit


@dataclass
class SigningKey:
    kid: str
    private: Any
    alg: str

    def public_jwk(self, *, declare_alg: bool = True) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.get_default_algorithms()[self.alg].to_jwk(self.private.public_key()))
        jwk.update({"kid": self.kid, "use": "sig"})
        if declare_alg:
            jwk["alg"] = self.alg
        return jwk

    def token(self, sub: str = "cust-1", *, kid: str | None = None, alg: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"sub": sub, "iat": now, "exp": now + 600, **claims}
        return jwt.encode(body, self.private, algorithm=alg or self.alg, headers={"kid": kid or self.kid})


def rsa_key(kid: str | None = None) -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(kid or f"rsa-{uuid.uuid4().hex[:8]}", private, "RS256")


def ec_key(kid: str | None = None) -> SigningKey:
    return SigningKey(kid or f"ec-{uuid.uuid4().hex[:8]}", ec.generate_private_key(ec.SECP256R1()), "ES256")


@dataclass
class IdentityProvider:
    """A JWKS endpoint: ``keys`` is what it publishes now, ``hits`` how often it was fetched."""

    url: str
    keys: list[dict[str, Any]] = field(default_factory=list)
    hits: int = 0
    delay: float = 0.0
    status: int = 200

    def publish(self, *keys: SigningKey) -> None:
        self.keys = [k.public_jwk() for k in keys]


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    state = IdentityProvider(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits += 1
            if state.delay:
                time.sleep(state.delay)
            body = json.dumps({"keys": state.keys}).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


SERVICE_SECRET = secrets.token_urlsafe(48)


def verifier_for(idp: IdentityProvider, clock: Clock | None = None, **kwargs: Any) -> tuple[JwtVerifier, JwksKeys]:
    options = {"ttl_seconds": 300.0, "miss_seconds": 30.0, "refetch_after_seconds": 10.0, **kwargs}
    keys = JwksKeys(idp.url, clock=clock or time.monotonic, timeout_seconds=5, **options)
    return JwtVerifier(service_secrets=[SERVICE_SECRET], jwks=keys), keys


# -- the keys verify, and are fetched once ---------------------------------------------------------------------


async def test_rsa_and_ec_tokens_verify_with_one_fetch(idp: IdentityProvider) -> None:
    first, second = rsa_key(), ec_key()
    idp.publish(first, second)
    verifier, _ = verifier_for(idp)
    alice = await verifier.averify(first.token("alice"))
    bob = await verifier.averify(second.token("bob", role="admin"))
    assert (alice.subject, alice.role, bob.subject, bob.role) == ("alice", "customer", "bob", "admin")
    for n in range(20):
        assert (await verifier.averify(first.token(f"user-{n}"))).subject == f"user-{n}"
    assert idp.hits == 1


async def test_admins_come_from_the_configured_claim(idp: IdentityProvider) -> None:
    key = rsa_key()
    idp.publish(key)
    keys = JwksKeys(idp.url)
    nested = JwtVerifier(jwks=keys, admin_claim="realm_access.roles")
    assert (await nested.averify(key.token("ops", realm_access={"roles": ["offline", "admin"]}))).is_admin
    assert not (await nested.averify(key.token("cust", realm_access={"roles": ["offline"]}))).is_admin
    # With another claim configured, `role` alone makes no admin.
    assert not (await nested.averify(key.token("sneaky", role="admin"))).is_admin
    for service in ({"realm_access": {"roles": ["service"]}}, {"role": "service"}):
        with pytest.raises(Unauthenticated, match="service role"):
            await nested.averify(key.token("cust", **service))


async def test_a_customer_token_from_the_identity_provider_can_never_be_a_service(idp: IdentityProvider) -> None:
    key = rsa_key()
    idp.publish(key)
    verifier, _ = verifier_for(idp)
    for claims in ({"role": ROLE_SERVICE}, {"role": [ROLE_SERVICE, "admin"]}):
        with pytest.raises(Unauthenticated, match="service role"):
            await verifier.averify(key.token("cust-1", **claims))
    with pytest.raises(Unauthenticated, match="service role"):
        await verifier.averify(key.token("svc:checkout"))


async def test_service_tokens_verify_beside_jwks_customers_and_never_by_the_idp(idp: IdentityProvider) -> None:
    key = rsa_key()
    idp.publish(key)
    verifier, _ = verifier_for(idp)
    assert (await verifier.averify(mint_service_token(SERVICE_SECRET, "checkout"))).is_service
    assert (await verifier.averify(key.token("cust-1"))).role == "customer"
    # The identity provider's key makes no service token, whatever its header says.
    now = int(time.time())
    claims = {"sub": "svc:checkout", "role": ROLE_SERVICE, "iss": "kassa", "aud": "kassa-services", "iat": now,
              "exp": now + 60}  # fmt: skip
    forged = jwt.encode(claims, key.private, algorithm="RS256", headers={"kid": key.kid, "typ": "kassa-service+jwt"})
    with pytest.raises(Unauthenticated):
        await verifier.averify(forged)
    # And in JWKS mode no HS256 customer token is accepted, whatever key signed it.
    with pytest.raises(Unauthenticated, match="algorithm"):
        await verifier.averify(mint_token(SERVICE_SECRET, "cust-1"))


async def test_hs256_signed_with_the_published_public_key_is_refused_without_a_fetch(idp: IdentityProvider) -> None:
    key = rsa_key()
    idp.publish(key)
    verifier, _ = verifier_for(idp)
    pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for secret in (pem, json.dumps(key.public_jwk()).encode()):
        header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
        now = int(time.time())
        claims = {"sub": "ops", "role": "admin", "exp": now + 60}
        b64 = [base64.urlsafe_b64encode(json.dumps(p).encode()).rstrip(b"=").decode() for p in (header, claims)]
        mac = hmac.new(secret, ".".join(b64).encode(), hashlib.sha256).digest()
        forged = ".".join([*b64, base64.urlsafe_b64encode(mac).rstrip(b"=").decode()])
        with pytest.raises(Unauthenticated, match="algorithm"):
            await verifier.averify(forged)
    assert idp.hits == 0


async def test_a_key_declared_for_one_algorithm_verifies_no_other(idp: IdentityProvider) -> None:
    key = rsa_key()
    idp.publish(key)  # declares RS256
    verifier, _ = verifier_for(idp)
    with pytest.raises(Unauthenticated, match="algorithm"):
        await verifier.averify(key.token(alg="PS256"))


async def test_symmetric_keys_in_a_jwks_are_ignored(idp: IdentityProvider) -> None:
    """A key set is public: an "oct" key in it would let anyone sign."""
    secret = secrets.token_bytes(32)
    idp.keys = [{"kty": "oct", "kid": "shared", "k": base64.urlsafe_b64encode(secret).rstrip(b"=").decode()}]
    verifier, _ = verifier_for(idp)
    token = jwt.encode(
        {"sub": "ops", "exp": int(time.time()) + 60}, secret, algorithm="HS256", headers={"kid": "shared"}
    )
    with pytest.raises(Unauthenticated):
        await verifier.averify(token)


@pytest.mark.parametrize("tamper", ["sub", "exp", "role"])
async def test_tampered_and_expired_idp_tokens_are_refused(idp: IdentityProvider, tamper: str) -> None:
    key = rsa_key()
    idp.publish(key)
    verifier, _ = verifier_for(idp)
    header, payload, signature = key.token("cust-1").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims[tamper] = {"sub": "someone-else", "exp": claims["exp"] + 10**6, "role": "admin"}[tamper]
    changed = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(Unauthenticated, match="Signature"):
        await verifier.averify(f"{header}.{changed}.{signature}")
    with pytest.raises(Unauthenticated, match="expired"):
        await verifier.averify(key.token("cust-1", exp=int(time.time()) - 5))


async def test_iss_and_aud_are_checked_when_configured(idp: IdentityProvider) -> None:
    key = rsa_key()
    idp.publish(key)
    verifier = JwtVerifier(jwks=JwksKeys(idp.url), issuer="https://id.example.org/", audience="kassa")
    good = key.token("cust-1", iss="https://id.example.org/", aud="kassa")
    assert (await verifier.averify(good)).subject == "cust-1"
    for claims in ({"iss": "https://evil.example/", "aud": "kassa"}, {"iss": "https://id.example.org/", "aud": "x"},
                   {"aud": "kassa"}, {"iss": "https://id.example.org/"}):  # fmt: skip
        with pytest.raises(Unauthenticated):
            await verifier.averify(key.token("cust-1", **claims))


# -- rotation and the caches -------------------------------------------------------------------------------------


async def test_a_rotated_key_is_fetched_once_on_its_first_unknown_kid(idp: IdentityProvider) -> None:
    clock = Clock()
    old, new = rsa_key("k-old"), rsa_key("k-new")
    idp.publish(old)
    verifier, _ = verifier_for(idp, clock)
    assert (await verifier.averify(old.token("a"))).subject == "a"
    assert idp.hits == 1

    idp.publish(old, new)  # the provider rotates: the new key is published and starts signing
    clock.now += 11  # past the refetch interval, well inside the TTL
    assert (await verifier.averify(new.token("b"))).subject == "b"
    assert idp.hits == 2
    for n in range(10):
        await verifier.averify(new.token(f"c{n}"))
        await verifier.averify(old.token(f"d{n}"))
    assert idp.hits == 2

    idp.publish(new)  # the old key is withdrawn: once the TTL is up, its tokens stop verifying
    clock.now += 301
    with pytest.raises(Unauthenticated, match="key id"):
        await verifier.averify(old.token("e"))
    assert idp.hits == 3
    assert (await verifier.averify(new.token("f"))).subject == "f"
    assert idp.hits == 3


async def test_a_flood_of_unknown_kids_fetches_at_most_once(idp: IdentityProvider) -> None:
    key = rsa_key()
    idp.publish(key)
    verifier, _ = verifier_for(idp)  # real clock: all of this happens inside the 10 s refetch interval
    await verifier.averify(key.token())
    assert idp.hits == 1
    forged = [key.token(kid=f"unknown-{n}") for n in range(200)]
    started = time.monotonic()
    for token in forged:
        with pytest.raises(Unauthenticated, match="key id"):
            await verifier.averify(token)
    assert idp.hits == 1
    assert time.monotonic() - started < 5


async def test_the_memory_of_unknown_kids_stays_bounded(idp: IdentityProvider) -> None:
    clock = Clock()
    key = rsa_key()
    idp.publish(key)
    verifier, keys = verifier_for(idp, clock)
    await verifier.averify(key.token())
    for n in range(10_000):
        with pytest.raises(Unauthenticated, match="key id"):
            keys.key(f"made-up-{n}", fetch=False)
    assert len(keys._misses) <= 4096
    assert idp.hits == 1


async def test_an_unknown_kid_refetches_once_then_is_refused_from_memory(idp: IdentityProvider) -> None:
    clock = Clock()
    key = rsa_key()
    idp.publish(key)
    verifier, keys = verifier_for(idp, clock)
    await verifier.averify(key.token())
    clock.now += 11
    stranger = key.token(kid="stranger")
    with pytest.raises(Unauthenticated, match="key id"):
        await verifier.averify(stranger)
    assert idp.hits == 2  # the one refetch: maybe the provider rotated
    for step in range(5):  # past the refetch interval again, but the miss is remembered for 30 s
        clock.now += 5
        with pytest.raises(Unauthenticated, match="key id"):
            await verifier.averify(stranger)
        assert idp.hits == 2, step
    clock.now += 10  # the miss has lapsed: one more look
    with pytest.raises(Unauthenticated, match="key id"):
        await verifier.averify(stranger)
    assert idp.hits == 3
    assert keys.fetches == 3


async def test_a_fresh_key_set_is_refetched_only_after_its_ttl(idp: IdentityProvider) -> None:
    clock = Clock()
    key = rsa_key()
    idp.publish(key)
    verifier, _ = verifier_for(idp, clock)
    for n in range(5):
        clock.now += 50
        await verifier.averify(key.token(f"u{n}"))  # a new token each time: not the verified-token cache
    assert idp.hits == 1
    clock.now += 110  # 310 s since the fetch (made at the first call, 250 s ago)
    await verifier.averify(key.token("late"))
    assert idp.hits == 2


async def test_a_provider_that_is_down_is_unavailable_and_not_hammered(idp: IdentityProvider) -> None:
    clock = Clock()
    key = rsa_key()
    idp.publish(key)
    idp.status = 503
    verifier, _ = verifier_for(idp, clock)
    for _ in range(20):
        with pytest.raises(Unavailable):
            await verifier.averify(key.token())
    assert idp.hits == 1

    idp.status = 200
    clock.now += 11
    assert (await verifier.averify(key.token("back"))).subject == "back"
    assert idp.hits == 2

    # Down again after the TTL: the keys it had keep verifying, with one attempt per refetch interval.
    idp.status = 503
    clock.now += 301
    for n in range(20):
        assert (await verifier.averify(key.token(f"stale-{n}"))).subject == f"stale-{n}"
    assert idp.hits == 3


async def test_fetching_never_blocks_the_event_loop(idp: IdentityProvider) -> None:
    key = rsa_key()
    idp.publish(key)
    idp.delay = 0.6
    verifier, _ = verifier_for(idp)
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    try:
        started = time.monotonic()
        identities = await asyncio.gather(*(verifier.averify(key.token(f"u{n}")) for n in range(5)))
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        await task
    assert [i.subject for i in identities] == [f"u{n}" for n in range(5)]
    assert elapsed >= 0.5
    assert ticks >= 20, f"the loop ran only {ticks} times in {elapsed:.2f}s: something blocked it"
    assert idp.hits == 1  # five callers, one fetch


async def test_authenticate_reads_the_header_and_a_missing_kid_is_refused(idp: IdentityProvider) -> None:
    key = rsa_key()
    idp.publish(key)
    verifier, _ = verifier_for(idp)
    assert await verifier.authenticate(None) is None
    identity = await verifier.authenticate(f"Bearer {key.token('hdr')}")
    assert identity is not None and identity.subject == "hdr"
    no_kid = jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, key.private, algorithm="RS256")
    with pytest.raises(Unauthenticated, match="kid"):
        await verifier.authenticate(f"Bearer {no_kid}")


def test_the_blocking_entry_point_fetches_too(idp: IdentityProvider) -> None:
    """``verify`` (the CLI, scripts: no event loop) fetches inline."""
    key = rsa_key()
    idp.publish(key)
    verifier, _ = verifier_for(idp)
    assert verifier.verify(key.token("sync")).subject == "sync"
    assert idp.hits == 1


# -- a whole mesh: customers from the identity provider, services with their own key ----------------------------


@pytest.mark.e2e
@pytest.mark.xdist_group("e2e")
async def test_a_whole_mesh_takes_jwks_customers_while_its_services_use_their_own_key(
    idp: IdentityProvider, tmp_path: Path
) -> None:
    """Before, a JWKS URL made every service-to-service call fail: services signed HS256 tokens the
    JWKS-only verifier refused. Here a customer of the identity provider checks out end to end, which takes
    checkout's calls to pricing, warehouse, promotion, payment and order, each with a service token."""
    key = rsa_key()
    idp.publish(key)
    with contextlib.ExitStack() as stop:
        endpoints = await asyncio.to_thread(stop.enter_context, private_stack())
        await asyncio.to_thread(migrate, endpoints.database_url)
        ports = dict(zip(MESH_ORDER, free_ports(len(MESH_ORDER)), strict=True))
        env = {**mesh_env(endpoints, ports, data_dir=tmp_path / "data"), "KASSA_JWT_JWKS_URL": idp.url}
        processes = Mesh(env, tmp_path / "logs", log=lambda _: None)
        await asyncio.to_thread(processes.start)
        stop.callback(processes.stop)

        admin = key.token("ops-jwks", role="admin")
        us_east = seed.WAREHOUSES[0]
        async with grpc.aio.insecure_channel(env["KASSA_WAREHOUSE_ADDR"]) as channel:
            await inv_grpc.InventoryServiceStub(channel).UpsertWarehouses(
                inv_pb.UpsertWarehousesRequest(
                    warehouses=[inventory_pb2.Warehouse(warehouse_id=us_east[0], name=us_east[1], address=us_east[2])]
                ),
                metadata=(("authorization", f"Bearer {admin}"),),
                timeout=30,
            )
        handle = MeshHandle(env=env, gateway_url=f"http://{env['KASSA_GATEWAY_ADDR']}", admin_token=admin,
                            log_dir=tmp_path / "logs")  # fmt: skip
        skus = await make_catalog(handle, n=2)  # the admin routes, with the identity provider's admin token

        customer = Rest(handle.gateway_url, key.token(f"jwks-{uuid.uuid4().hex[:8]}"))
        stranger = Rest(handle.gateway_url, key.token(f"jwks-{uuid.uuid4().hex[:8]}"))
        own_key = Rest(handle.gateway_url, mint_token(env["KASSA_JWT_SECRET"], "hs-customer"))
        guest = Rest(handle.gateway_url)
        try:
            placed = await ready_session(customer, await fill_cart(customer, skus, [1, 2]))
            result = await confirm(customer, placed["session_id"], placed["preview"]["grandTotal"])
            assert result["orderStatus"] == "ORDER_STATUS_CONFIRMED"
            assert result["paymentStatus"] == "PAYMENT_STATUS_CAPTURED"
            order_path = f"/v1/orders/{result['orderId']}"
            assert (await customer.call("GET", order_path))["order"]["status"] == "ORDER_STATUS_CONFIRMED"

            with pytest.raises(RestError) as refused:
                await stranger.call("GET", order_path)
            assert refused.value.status in (403, 404)
            with pytest.raises(RestError) as refused:
                await customer.call("PUT", "/v1/admin/stock", {"items": []})
            assert refused.value.status == 403
            # In JWKS mode customer tokens come from the identity provider only, not from the mesh's own key.
            with pytest.raises(RestError) as refused:
                await own_key.call("GET", order_path)
            assert refused.value.status == 401
            with pytest.raises(RestError) as refused:
                await guest.guest()
            assert refused.value.status == 501
        finally:
            for client in (customer, stranger, own_key, guest):
                await client.close()
