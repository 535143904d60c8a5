"""Who is calling: JWT verification, minting, and the request-scoped identity.

The gateway forwards the caller's ``Authorization: Bearer`` header as gRPC
metadata; every service verifies it itself (nothing trusts a customer id sent
in a request body). Services calling each other use a short-lived service
token (role "service") minted from the same secret.
"""

from __future__ import annotations

import contextvars
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import jwt

from infra.errors import DomainError, PermissionDenied, Reason

__all__ = [
    "Identity",
    "JwtVerifier",
    "Unauthenticated",
    "current_identity",
    "identity_var",
    "mint_token",
    "require_identity",
    "require_privileged",
]

ROLE_CUSTOMER = "customer"
ROLE_ADMIN = "admin"
ROLE_SERVICE = "service"

_VERIFIED_CACHE_SIZE = 4096


class Unauthenticated(DomainError):
    """No or bad credentials (gRPC UNAUTHENTICATED)."""

    default_reason = Reason.PERMISSION_DENIED


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str
    role: str = ROLE_CUSTOMER
    guest: bool = False
    token: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role == ROLE_ADMIN

    @property
    def is_service(self) -> bool:
        return self.role == ROLE_SERVICE

    @property
    def is_privileged(self) -> bool:
        """Admins and Kassa's own services may act on any customer's data."""
        return self.role in (ROLE_ADMIN, ROLE_SERVICE)


identity_var: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("kassa_identity", default=None)


def current_identity() -> Identity | None:
    return identity_var.get()


def require_identity() -> Identity:
    ident = identity_var.get()
    if ident is None:
        raise Unauthenticated("missing credentials: send 'authorization: Bearer <token>'")
    return ident


def require_privileged() -> Identity:
    """Admin routes and service-to-service RPCs."""
    ident = require_identity()
    if not ident.is_privileged:
        raise PermissionDenied("this operation needs the admin role")
    return ident


def mint_token(
    secret: str,
    subject: str,
    *,
    role: str = ROLE_CUSTOMER,
    guest: bool = False,
    ttl_seconds: int = 24 * 3600,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": subject,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    if role != ROLE_CUSTOMER:
        claims["role"] = role
    if guest:
        claims["guest"] = True
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")


class JwtVerifier:
    """HS256 with a shared secret by default; a JWKS URL (RS/ES keys) when configured."""

    def __init__(
        self,
        secret: str,
        *,
        jwks_url: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
    ) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True) if jwks_url else None
        # token -> (identity, exp): every call of a checkout carries the same few tokens, and a
        # signature check costs more than the rest of a small RPC's plumbing. Only tokens that
        # verified are kept, each until its own expiry, so the answer is the same as verifying again.
        self._verified: OrderedDict[str, tuple[Identity, float]] = OrderedDict()

    def verify(self, token: str) -> Identity:
        cached = self._verified.get(token)
        if cached is not None:
            if time.time() < cached[1]:
                self._verified.move_to_end(token)
                return cached[0]
            del self._verified[token]
        identity, exp = self._verify(token)
        self._verified[token] = (identity, exp)
        if len(self._verified) > _VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return identity

    def _verify(self, token: str) -> tuple[Identity, float]:
        options = {"require": ["sub", "exp"], "verify_aud": self._audience is not None}
        try:
            if self._jwks is not None:
                key = self._jwks.get_signing_key_from_jwt(token).key
                algorithms = ["RS256", "ES256", "PS256"]
            else:
                key, algorithms = self._secret, ["HS256"]
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self._audience,
                issuer=self._issuer,
                options=options,  # type: ignore[arg-type]
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from exc
        subject = str(claims.get("sub") or "")
        if not subject:
            raise Unauthenticated("invalid token: empty subject")
        role = str(claims.get("role") or ROLE_CUSTOMER)
        identity = Identity(subject=subject, role=role, guest=bool(claims.get("guest")), token=token)
        return identity, float(claims["exp"])

    def from_authorization(self, header: str | None) -> Identity | None:
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("authorization must be 'Bearer <token>'")
        return self.verify(token.strip())
