"""Schemathesis hooks for the run against a live gateway (``SCHEMATHESIS_HOOKS=contract.schemathesis_hooks``).

Bearer tokens are minted here with the mesh's development secret (``KASSA_JWT_SECRET``): an admin token for
/v1/admin routes, a customer token for the rest, and a fresh subject every ``REQUESTS_PER_SUBJECT`` requests,
so the gateway's per-subject rate limit (600 a minute) doesn't turn most generated requests into 429s
that test nothing. A stateful scenario's few requests mostly share a subject, so it can use what it created.
"""

from __future__ import annotations

import itertools
import os
import uuid

import schemathesis

from infra.auth import ROLE_ADMIN, mint_token

REQUESTS_PER_SUBJECT = 100
_RUN = uuid.uuid4().hex[:8]
_COUNT = itertools.count()


@schemathesis.auth(refresh_interval=None)
class MintedBearer:
    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
        n = next(_COUNT) // REQUESTS_PER_SUBJECT
        secret = os.environ["KASSA_JWT_SECRET"]
        if ctx.operation.path.startswith("/v1/admin/"):
            return mint_token(secret, f"st-admin-{_RUN}-{n}", role=ROLE_ADMIN)
        return mint_token(secret, f"st-{_RUN}-{n}")

    def set(self, case: schemathesis.Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
