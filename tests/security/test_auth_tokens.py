"""Forged, stale and misused bearer tokens, as an attacker would send them, against the verifier every service runs.

The verifier is built exactly as a service builds it (``infra.runner.verifier_for``) from development-style
settings with fresh random keys. Every refusal is :class:`~infra.auth.Unauthenticated` (gRPC UNAUTHENTICATED,
HTTP 401); nothing here may come back as an identity, least of all a privileged one.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from infra.auth import (
    ROLE_ADMIN,
    ROLE_SERVICE,
    SERVICE_AUDIENCE,
    SERVICE_ISSUER,
    SERVICE_TOKEN_TYPE,
    JwtVerifier,
    Unauthenticated,
    mint_service_token,
    mint_token,
)
from infra.channels import ServiceCredentials
from infra.config import Settings
from infra.runner import verifier_for

pytestmark = pytest.mark.unit


def _key() -> str:
    return secrets.token_urlsafe(48)


@pytest.fixture
def settings() -> Settings:
    """Fresh keys per test, current and previous of each kind (a rotation under way)."""
    return Settings.from_env(
        {
            "KASSA_ENV": "production",
            "KASSA_JWT_SECRET": _key(),
            "KASSA_JWT_SECRET_PREVIOUS": _key(),
            "KASSA_SERVICE_SECRET": _key(),
            "KASSA_SERVICE_SECRET_PREVIOUS": _key(),
            "KASSA_WEBHOOK_SECRET": _key(),
        }
    )


@pytest.fixture
def verifier(settings: Settings) -> JwtVerifier:
    settings.require()  # these keys pass the production checks
    return verifier_for(settings)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}.{_b64(signature)}"


def _hs256_with_raw_key(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    """HS256 by hand: PyJWT rightly refuses a PEM as an HMAC key, an attacker doesn't ask it."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def _claims(sub: str = "cust-1", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": sub, "iat": now, "exp": now + 600, **extra}


def _refused(verifier: JwtVerifier, token: str, match: str | None = None) -> None:
    with pytest.raises(Unauthenticated, match=match):
        verifier.verify(token)


# -- the happy paths the attacks are measured against ---------------------------------------------------------


def test_customer_admin_guest_and_service_tokens_verify_as_themselves(
    verifier: JwtVerifier, settings: Settings
) -> None:
    assert verifier.verify(mint_token(settings.jwt_secret, "cust-1")).role == "customer"
    assert verifier.verify(mint_token(settings.jwt_secret, "ops-1", role=ROLE_ADMIN)).is_admin
    guest = verifier.verify(mint_token(settings.jwt_secret, "guest-1", guest=True))
    assert guest.guest and not guest.is_privileged
    service = verifier.verify(ServiceCredentials(settings.service_secret, "checkout").token())
    assert (service.subject, service.role) == ("svc:checkout", ROLE_SERVICE)


# -- expiry, alg none, tampering -------------------------------------------------------------------------------


def test_an_expired_token_is_refused(verifier: JwtVerifier, settings: Settings) -> None:
    _refused(verifier, mint_token(settings.jwt_secret, "cust-1", ttl_seconds=-1), "expired")
    stale = mint_service_token(settings.service_secret, "checkout", ttl_seconds=-1)
    _refused(verifier, stale, "expired")


def test_a_token_without_exp_or_sub_is_refused(verifier: JwtVerifier, settings: Settings) -> None:
    _refused(verifier, jwt.encode({"sub": "cust-1"}, settings.jwt_secret, algorithm="HS256"), "exp")
    _refused(verifier, jwt.encode({"exp": int(time.time()) + 60}, settings.jwt_secret, algorithm="HS256"), "sub")
    no_subject = jwt.encode({"sub": "", "exp": int(time.time()) + 60}, settings.jwt_secret, algorithm="HS256")
    _refused(verifier, no_subject)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("typ", ["JWT", SERVICE_TOKEN_TYPE])
def test_alg_none_is_refused(verifier: JwtVerifier, alg: str, typ: str) -> None:
    claims = _claims("ops-1", role=ROLE_ADMIN, iss=SERVICE_ISSUER, aud=SERVICE_AUDIENCE)
    _refused(verifier, _unsigned({"alg": alg, "typ": typ}, claims))
    _refused(verifier, _unsigned({"alg": alg, "typ": typ}, claims, b"x"))


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda c: {**c, "sub": "someone-else"}, id="subject"),
        pytest.param(lambda c: {**c, "role": ROLE_ADMIN}, id="role-admin"),
        pytest.param(lambda c: {**c, "exp": c["exp"] + 86_400 * 365}, id="expiry"),
        pytest.param(lambda c: {**c, "guest": False}, id="guest-flag"),
    ],
)
def test_a_token_whose_claims_were_changed_keeps_no_signature(
    verifier: JwtVerifier, settings: Settings, tamper
) -> None:
    token = mint_token(settings.jwt_secret, "guest-1", guest=True)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = f"{header}.{_b64(json.dumps(tamper(claims)).encode())}.{signature}"
    _refused(verifier, forged, "Signature verification failed")


def test_a_signature_by_an_unknown_key_is_refused(verifier: JwtVerifier) -> None:
    _refused(verifier, mint_token(_key(), "ops-1", role=ROLE_ADMIN), "Signature verification failed")
    _refused(verifier, mint_service_token(_key(), "checkout"), "Signature verification failed")


@pytest.mark.parametrize("junk", ["", "a.b", "a.b.c", "😀.😀.😀", "x" * 10_000, "eyJhbGciOiJIUzI1NiJ9..", "Bearer x"])
def test_garbage_is_refused_cleanly(verifier: JwtVerifier, junk: str) -> None:
    with pytest.raises(Unauthenticated):
        verifier.from_authorization(f"Bearer {junk}")


@pytest.mark.parametrize("header", ["Basic YWxhZGRpbjpvcGVuc2VzYW1l", "Bearer", "Bearer    ", "token abc"])
def test_an_authorization_header_that_is_not_bearer_is_refused(verifier: JwtVerifier, header: str) -> None:
    with pytest.raises(Unauthenticated):
        verifier.from_authorization(header)


# -- HS/RS confusion -----------------------------------------------------------------------------------------


def test_hs256_signed_with_an_rsa_public_key_is_refused(verifier: JwtVerifier) -> None:
    """The classic confusion: the attacker uses the (public) verification key as an HMAC secret."""
    public_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    forged = _hs256_with_raw_key({"alg": "HS256", "typ": "JWT"}, _claims("ops-1", role=ROLE_ADMIN), public_pem)
    _refused(verifier, forged)
    # And the RS256 token the attacker cannot make with an HS-only customer key: never accepted either.
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _refused(verifier, jwt.encode(_claims("ops-1", role=ROLE_ADMIN), private, algorithm="RS256"), "alg")


# -- iss and aud ---------------------------------------------------------------------------------------------


def test_wrong_or_missing_iss_and_aud_are_refused_when_configured(settings: Settings) -> None:
    strict = verifier_for(dataclasses.replace(settings, jwt_issuer="https://id.kassa.test", jwt_audience="kassa"))
    good = mint_token(settings.jwt_secret, "cust-1", issuer="https://id.kassa.test", audience="kassa")
    assert strict.verify(good).subject == "cust-1"
    _refused(strict, mint_token(settings.jwt_secret, "cust-1", issuer="https://evil.test", audience="kassa"), "issuer")
    _refused(
        strict, mint_token(settings.jwt_secret, "cust-1", issuer="https://id.kassa.test", audience="other"), "(?i)aud"
    )
    _refused(strict, mint_token(settings.jwt_secret, "cust-1", audience="kassa"), "iss")
    _refused(strict, mint_token(settings.jwt_secret, "cust-1", issuer="https://id.kassa.test"), "aud")


def test_a_service_token_for_another_issuer_or_audience_is_refused(verifier: JwtVerifier, settings: Settings) -> None:
    header = {"typ": SERVICE_TOKEN_TYPE}
    base = _claims("svc:checkout", role=ROLE_SERVICE, iss=SERVICE_ISSUER, aud=SERVICE_AUDIENCE)
    assert verifier.verify(jwt.encode(base, settings.service_secret, "HS256", headers=header)).is_service
    for changed in ({"iss": "someone"}, {"aud": "elsewhere"}, {"iss": None}, {"aud": None}):
        claims = {k: v for k, v in {**base, **changed}.items() if v is not None}
        _refused(verifier, jwt.encode(claims, settings.service_secret, "HS256", headers=header))


# -- customer tokens can never be service tokens, nor the reverse ----------------------------------------------


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param(_claims("cust-1", role=ROLE_SERVICE), id="role-service"),
        pytest.param(_claims("svc:checkout"), id="service-subject"),
        pytest.param(_claims("svc:checkout", role=ROLE_SERVICE, iss=SERVICE_ISSUER, aud=SERVICE_AUDIENCE), id="all"),
    ],
)
def test_a_customer_key_cannot_make_a_service_token(verifier: JwtVerifier, settings: Settings, claims) -> None:
    """Whoever holds the customer key (the gateway, an identity provider) still can't act as a service."""
    for headers in (None, {"typ": SERVICE_TOKEN_TYPE}):
        for key in settings.jwt_secrets:
            _refused(verifier, jwt.encode(claims, key, algorithm="HS256", headers=headers))


def test_a_service_key_signs_only_service_tokens(verifier: JwtVerifier, settings: Settings) -> None:
    """A service-key token without the service header is a customer token, and no customer key made it."""
    for claims in (_claims("ops-1", role=ROLE_ADMIN), _claims("cust-1")):
        _refused(verifier, jwt.encode(claims, settings.service_secret, algorithm="HS256"))


def test_minting_refuses_to_put_the_service_role_in_a_customer_token(settings: Settings) -> None:
    with pytest.raises(ValueError, match="mint_service_token"):
        mint_token(settings.jwt_secret, "cust-1", role=ROLE_SERVICE)
    with pytest.raises(ValueError, match="svc:"):
        mint_token(settings.jwt_secret, "svc:checkout")


def test_a_role_the_verifier_does_not_know_is_a_plain_customer(verifier: JwtVerifier, settings: Settings) -> None:
    for role in ("superuser", "root", ["ops", "customer"], {"admin": True}, 1):
        token = jwt.encode(_claims("cust-1", role=role), settings.jwt_secret, algorithm="HS256")
        identity = verifier.verify(token)
        assert identity.role == "customer" and not identity.is_privileged


def test_guest_is_only_ever_the_boolean_true(verifier: JwtVerifier, settings: Settings) -> None:
    for value in ("true", 1, "yes"):
        token = jwt.encode(_claims("cust-1", guest=value), settings.jwt_secret, algorithm="HS256")
        assert verifier.verify(token).guest is False


# -- rotation ------------------------------------------------------------------------------------------------


def test_tokens_signed_with_the_previous_keys_still_verify(verifier: JwtVerifier, settings: Settings) -> None:
    assert verifier.verify(mint_token(settings.jwt_secret_previous, "cust-1")).subject == "cust-1"
    assert verifier.verify(mint_service_token(settings.service_secret_previous, "order")).is_service


def test_new_tokens_are_signed_with_the_current_keys_only(settings: Settings) -> None:
    after_rotation = verifier_for(dataclasses.replace(settings, jwt_secret_previous="", service_secret_previous=""))
    assert after_rotation.verify(ServiceCredentials(settings.service_secret, "checkout").token()).is_service
    assert after_rotation.verify(mint_token(settings.jwt_secret, "cust-1")).subject == "cust-1"
    _refused(after_rotation, mint_token(settings.jwt_secret_previous, "cust-1"))
    _refused(after_rotation, mint_service_token(settings.service_secret_previous, "order"))


def test_the_previous_customer_key_never_verifies_service_tokens(verifier: JwtVerifier, settings: Settings) -> None:
    _refused(verifier, mint_service_token(settings.jwt_secret_previous, "checkout"))
    _refused(verifier, mint_token(settings.service_secret_previous, "cust-1"))
