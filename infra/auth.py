"""Who is calling: JWT verification, minting, and the request-scoped identity.

Two kinds of bearer token, verified with keys that never overlap:

* **Customer tokens** (customers, guests, admins): HS256 signed with ``KASSA_JWT_SECRET``, or, when a
  JWKS URL is configured, an asymmetric signature (RS/PS/ES/EdDSA) by a key the identity provider
  publishes there. ``sub`` is the customer id, ``guest: true`` marks a guest, and the admin claim
  (``role`` by default: ``"admin"`` as its value or in its list) makes an admin. A customer token can
  never be a service: one whose admin claim says ``service``, or whose subject starts with ``svc:``,
  is refused.
* **Service tokens**: what Kassa's own processes send each other (role ``service``). HS256 signed
  with ``KASSA_SERVICE_SECRET`` only, JOSE header ``typ: kassa-service+jwt``, ``iss`` and ``aud``
  fixed below. They are checked against the service keys alone, so knowing or holding a customer key
  (or the identity provider's) never yields one, and one never passes as a customer's.

Either kind verifies with the current key or the previous one (rotation); signing always uses the current.

The gateway forwards the caller's ``Authorization: Bearer`` header as gRPC metadata; every service
verifies it itself (nothing trusts a customer id sent in a request body). The identity provider's key
set is fetched in a thread, never on the event loop (:meth:`JwtVerifier.authenticate`), and cached:
see :class:`JwksKeys`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.types import Options

from kernel.caller import Caller
from kernel.errors import DomainError, PermissionDenied, Reason, Unavailable

__all__ = [
    "SERVICE_AUDIENCE",
    "SERVICE_ISSUER",
    "SERVICE_TOKEN_TYPE",
    "Identity",
    "JwksKeys",
    "JwtVerifier",
    "Unauthenticated",
    "current_identity",
    "identity_var",
    "mint_service_token",
    "mint_token",
    "require_admin",
    "require_caller",
    "require_identity",
    "require_privileged",
    "require_service",
]

log = logging.getLogger("kassa.auth")

ROLE_CUSTOMER = "customer"
ROLE_ADMIN = "admin"
ROLE_SERVICE = "service"

SERVICE_TOKEN_TYPE = "kassa-service+jwt"
SERVICE_ISSUER = "kassa"
SERVICE_AUDIENCE = "kassa-services"
SERVICE_SUBJECT_PREFIX = "svc:"

# Algorithms a JWKS key may sign customer tokens with: asymmetric only, so a public key can never be
# used as an HMAC secret (the HS/RS confusion attack).
JWKS_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})
_JWKS_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})

_VERIFIED_CACHE_SIZE = 4096
_MAX_MISSES = 4096
# Far above any real token; a bigger one is refused before it is parsed.
_MAX_TOKEN_CHARS = 8192


class Unauthenticated(DomainError):
    """No or bad credentials (gRPC UNAUTHENTICATED)."""

    default_reason = Reason.UNAUTHENTICATED


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


def require_caller() -> Caller:
    """The verified caller as the domain sees it (``kernel.caller.Caller``): its subject, and whether it is
    privileged (an admin or a Kassa service) rather than a customer. UNAUTHENTICATED without credentials."""
    ident = require_identity()
    return Caller(subject=ident.subject, privileged=ident.is_privileged)


def require_service() -> Identity:
    """Steps of checkout's saga (reservations, coupon uses): a service's own token, never a person's by hand."""
    ident = require_identity()
    if not ident.is_service:
        raise PermissionDenied("this operation is internal to Kassa's services")
    return ident


def require_privileged() -> Identity:
    """Service-to-service RPCs (which admins may call too)."""
    ident = require_identity()
    if not ident.is_privileged:
        raise PermissionDenied("this operation needs the admin role")
    return ident


def require_admin() -> Identity:
    """Admin actions no Kassa service takes on its own (stock, catalog, promotions): a person's admin token."""
    ident = require_identity()
    if not ident.is_admin:
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
    """A customer token (customer, guest or admin) signed with the customer key."""
    if role not in (ROLE_CUSTOMER, ROLE_ADMIN):
        raise ValueError(f"a customer token's role is {ROLE_CUSTOMER!r} or {ROLE_ADMIN!r}; use mint_service_token")
    if subject.startswith(SERVICE_SUBJECT_PREFIX):
        raise ValueError(f"{SERVICE_SUBJECT_PREFIX!r} subjects belong to service tokens")
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


def mint_service_token(secret: str, service: str, *, ttl_seconds: int = 3600) -> str:
    """A service token for ``service`` (subject ``svc:<service>``), signed with the service key."""
    now = int(time.time())
    claims = {
        "sub": f"{SERVICE_SUBJECT_PREFIX}{service}",
        "role": ROLE_SERVICE,
        "iss": SERVICE_ISSUER,
        "aud": SERVICE_AUDIENCE,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm="HS256", headers={"typ": SERVICE_TOKEN_TYPE})


class JwksKeys:
    """An identity provider's signing keys, fetched from its JWKS URL and cached by key id (``kid``).

    * The key set is fetched at most once per ``refetch_after_seconds`` (a fresh set is kept for
      ``ttl_seconds``, then refetched when next needed): a flood of tokens never becomes a flood of fetches.
    * An unknown ``kid`` refetches the set once (the provider may have rotated its keys), unless a fetch
      happened less than ``refetch_after_seconds`` ago; a ``kid`` still unknown is remembered as unknown for
      ``miss_seconds`` and refused from memory meanwhile.
    * When a fetch fails, known keys stay in use; with none, verification is UNAVAILABLE (retry), not a
      verdict on the token.

    :meth:`key` never touches the network unless ``fetch`` is true. Async callers ask :meth:`pending` first and
    run :meth:`settle` in a thread when it says so (``JwtVerifier.authenticate`` does): one caller fetches,
    the others wait for that fetch instead of starting their own or failing while it is under way.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl_seconds: float = 300.0,
        miss_seconds: float = 30.0,
        refetch_after_seconds: float = 10.0,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # PyJWKClient only fetches here (urllib, no redirects followed); the caching is ours.
        self._client = jwt.PyJWKClient(url, cache_keys=False, cache_jwk_set=False, timeout=timeout_seconds)
        self.url = url
        self._ttl = ttl_seconds
        self._miss_ttl = miss_seconds
        self._refetch_after = refetch_after_seconds
        self._clock = clock
        self._keys: dict[str, tuple[jwt.PyJWK, str | None]] = {}  # kid -> (key, the "alg" it declares)
        self._loaded_at: float | None = None  # last successful fetch
        self._tried_at: float | None = None  # last fetch attempt, successful or not
        self._misses: dict[str, float] = {}  # kid -> refused from memory until then
        self._lock = threading.Lock()
        self._fetching = False
        self.fetches = 0  # attempts finished so far

    def pending(self, kid: str) -> int | None:
        """None when ``kid`` can be answered from memory now; else what to pass to :meth:`settle`."""
        if self._fetching or self._fetch_due(kid):
            return self.fetches
        return None

    def settle(self, seen: int) -> None:
        """Wait for the fetch under way, or fetch now if none happened since ``seen`` attempts (blocking)."""
        with self._lock:
            if self.fetches != seen:
                return
            self._fetch()

    def _fetch_due(self, kid: str) -> bool:
        now = self._clock()
        if self._tried_at is not None and now - self._tried_at < self._refetch_after:
            return False
        if kid in self._keys:
            return self._loaded_at is None or now - self._loaded_at >= self._ttl
        return self._misses.get(kid, 0.0) <= now

    def _fetch(self) -> None:
        """Fetch the key set (the lock held): a failed fetch keeps the keys there were."""
        self._fetching = True
        self._tried_at = self._clock()
        try:
            keys = self._parse(self._client.fetch_data())
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            log.warning("could not fetch the JWKS from %s: %s", self.url, exc)
            return
        finally:
            # Counted once done: a caller that saw this fetch under way waits for it and doesn't fetch again.
            self.fetches += 1
            self._fetching = False
        self._keys = keys
        self._loaded_at = self._clock()
        self._misses = {kid: until for kid, until in self._misses.items() if kid not in keys}

    def key(self, kid: str, *, fetch: bool) -> tuple[jwt.PyJWK, str | None]:
        """The key for ``kid`` and the algorithm it declares; Unauthenticated when none, Unavailable when unknowable."""
        seen = self.pending(kid) if fetch else None
        if seen is not None:
            self.settle(seen)
        found = self._keys.get(kid)
        if found is not None:
            return found
        now = self._clock()
        if self._loaded_at is None:
            raise Unavailable("the identity provider's keys (KASSA_JWT_JWKS_URL) could not be fetched; retry")
        if self._misses.get(kid, 0.0) <= now:
            self._misses[kid] = now + self._miss_ttl
            if len(self._misses) > _MAX_MISSES:
                live = {k: t for k, t in self._misses.items() if t > now}
                # Still full: a flood of made-up kids. Forget them (memory stays bounded); the refetch
                # interval alone keeps their fetches to one per interval.
                self._misses = live if len(live) <= _MAX_MISSES // 2 else {}
        raise Unauthenticated("invalid token: its key id is not among the identity provider's keys")

    @staticmethod
    def _parse(data: Any) -> dict[str, tuple[jwt.PyJWK, str | None]]:
        if not isinstance(data, Mapping) or not isinstance(data.get("keys"), list):
            raise ValueError("the JWKS is not a JSON object with a 'keys' list")
        keys: dict[str, tuple[jwt.PyJWK, str | None]] = {}
        for entry in data["keys"]:
            if not isinstance(entry, Mapping):
                continue
            kid, kty, use = entry.get("kid"), entry.get("kty"), entry.get("use", "sig")
            # Symmetric ("oct") keys are never taken from a JWKS: a key set is public.
            if not isinstance(kid, str) or kty not in _JWKS_KEY_TYPES or use != "sig":
                continue
            alg = entry.get("alg")
            if alg is not None and alg not in JWKS_ALGORITHMS:
                continue
            try:
                keys[kid] = (jwt.PyJWK(dict(entry)), alg)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue
        return keys


class JwtVerifier:
    """Verifies both kinds of token (module docstring) into an :class:`Identity`, and remembers good ones.

    ``secrets``: the customer keys, current first (HS256); ``jwks`` (or ``jwks_url``) instead verifies
    customer tokens with the identity provider's keys. ``service_secrets``: the service keys, current first.
    ``issuer``/``audience`` are checked on customer tokens when given. ``admin_claim`` names the claim that
    makes an admin (``a.b`` for a nested one).
    """

    def __init__(
        self,
        secrets: str | Sequence[str] = (),
        *,
        service_secrets: Sequence[str] = (),
        jwks: JwksKeys | None = None,
        jwks_url: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        admin_claim: str = "role",
    ) -> None:
        self._secrets = tuple(s for s in ([secrets] if isinstance(secrets, str) else secrets) if s)
        self._service_secrets = tuple(s for s in service_secrets if s)
        self._jwks = jwks if jwks is not None else (JwksKeys(jwks_url) if jwks_url else None)
        self._issuer = issuer
        self._audience = audience
        self._admin_claim = admin_claim.split(".")
        # token -> (identity, exp): every call of a checkout carries the same few tokens, and a
        # signature check costs more than the rest of a small RPC's plumbing. Only tokens that
        # verified are kept, each until its own expiry, so the answer is the same as verifying again.
        self._verified: OrderedDict[str, tuple[Identity, float]] = OrderedDict()

    # -- entry points --------------------------------------------------------------------------------

    def verify(self, token: str) -> Identity:
        """Verify ``token``; in JWKS mode this may fetch the key set (blocking): on a loop use :meth:`authenticate`."""
        return self._cached(token) or self._verify(token, fetch=True)

    async def averify(self, token: str) -> Identity:
        """:meth:`verify` that fetches the identity provider's keys in a thread, never on the event loop."""
        cached = self._cached(token)
        if cached is not None:
            return cached
        if self._jwks is not None:
            header = _header(token)
            kid = header.get("kid")
            # Only a token that could verify is worth a fetch: the checks before the key come first.
            if not _is_service_token(header) and header.get("alg") in JWKS_ALGORITHMS and isinstance(kid, str):
                seen = self._jwks.pending(kid)
                if seen is not None:
                    await asyncio.to_thread(self._jwks.settle, seen)
        return self._verify(token, fetch=False)

    def from_authorization(self, header: str | None) -> Identity | None:
        """The identity in an ``Authorization`` header (None without one); blocking in JWKS mode."""
        token = _bearer(header)
        return None if token is None else self.verify(token)

    async def authenticate(self, header: str | None) -> Identity | None:
        """The identity in an ``Authorization`` header (None without one), never blocking the event loop."""
        token = _bearer(header)
        return None if token is None else await self.averify(token)

    # -- verification ---------------------------------------------------------------------------------

    def _cached(self, token: str) -> Identity | None:
        cached = self._verified.get(token)
        if cached is None:
            return None
        if time.time() < cached[1]:
            self._verified.move_to_end(token)
            return cached[0]
        self._verified.pop(token, None)
        return None

    def _verify(self, token: str, *, fetch: bool) -> Identity:
        header = _header(token)
        if _is_service_token(header):
            identity, exp = self._verify_service(token)
        else:
            identity, exp = self._verify_customer(token, header, fetch=fetch)
        self._verified[token] = (identity, exp)
        if len(self._verified) > _VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return identity

    def _verify_service(self, token: str) -> tuple[Identity, float]:
        claims = _decode_hs(
            token,
            self._service_secrets,
            issuer=SERVICE_ISSUER,
            audience=SERVICE_AUDIENCE,
            options={"require": ["sub", "exp", "iat", "iss", "aud"]},
            what="service token",
        )
        subject = str(claims.get("sub") or "")
        if claims.get("role") != ROLE_SERVICE or not subject.startswith(SERVICE_SUBJECT_PREFIX):
            raise Unauthenticated("invalid service token: wrong role or subject")
        return Identity(subject=subject, role=ROLE_SERVICE, token=token), float(claims["exp"])

    def _verify_customer(self, token: str, header: Mapping[str, Any], *, fetch: bool) -> tuple[Identity, float]:
        options: Options = {"require": ["sub", "exp"], "verify_aud": self._audience is not None}
        if self._jwks is None:
            claims = _decode_hs(
                token, self._secrets, issuer=self._issuer, audience=self._audience, options=options, what="token"
            )
        else:
            alg = header.get("alg")
            if alg not in JWKS_ALGORITHMS:
                raise Unauthenticated(f"invalid token: algorithm {alg!r} is not accepted from the identity provider")
            key, declared = self._jwks.key(_kid(header), fetch=fetch)
            if declared is not None and declared != alg:
                raise Unauthenticated("invalid token: its algorithm is not its key's")
            try:
                claims = jwt.decode(
                    token, key.key, algorithms=[alg], issuer=self._issuer, audience=self._audience, options=options
                )
            except jwt.PyJWTError as exc:
                raise Unauthenticated(f"invalid token: {exc}") from exc
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated("invalid token: empty subject")
        roles = self._roles(claims)
        if ROLE_SERVICE in roles or claims.get("role") == ROLE_SERVICE or subject.startswith(SERVICE_SUBJECT_PREFIX):
            raise Unauthenticated("invalid token: a customer token cannot carry the service role")
        role = ROLE_ADMIN if ROLE_ADMIN in roles else ROLE_CUSTOMER
        identity = Identity(subject=subject, role=role, guest=claims.get("guest") is True, token=token)
        return identity, float(claims["exp"])

    def _roles(self, claims: Mapping[str, Any]) -> set[str]:
        value: Any = claims
        for part in self._admin_claim:
            value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, str):
            return {value}
        if isinstance(value, list):
            return {v for v in value if isinstance(v, str)}
        return set()


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("authorization must be 'Bearer <token>'")
    return token


def _header(token: str) -> Mapping[str, Any]:
    if len(token) > _MAX_TOKEN_CHARS:
        raise Unauthenticated(f"invalid token: longer than {_MAX_TOKEN_CHARS} characters")
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"invalid token: {exc}") from exc


def _is_service_token(header: Mapping[str, Any]) -> bool:
    return header.get("typ") == SERVICE_TOKEN_TYPE


def _kid(header: Mapping[str, Any]) -> str:
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise Unauthenticated("invalid token: no key id (kid) in its header")
    return kid


def _decode_hs(
    token: str,
    secrets: Sequence[str],
    *,
    issuer: str | None,
    audience: str | None,
    options: Options,
    what: str,
) -> dict[str, Any]:
    """HS256 with the first of ``secrets`` that made the signature; claims are checked once it matched."""
    if not secrets:
        raise Unauthenticated(f"invalid {what}: no key to verify it with")
    error: jwt.PyJWTError = jwt.InvalidSignatureError("Signature verification failed")
    for secret in secrets:
        try:
            return jwt.decode(token, secret, algorithms=["HS256"], issuer=issuer, audience=audience, options=options)
        except jwt.InvalidSignatureError as exc:
            error = exc
        except jwt.PyJWTError as exc:
            # Anything else (expired, wrong iss/aud, alg) is checked after the signature, or is about the
            # token itself: the other key would say the same.
            raise Unauthenticated(f"invalid {what}: {exc}") from exc
    raise Unauthenticated(f"invalid {what}: {error}") from error
