"""Clients for the end-to-end tests: REST through the gateway and gRPC straight to the services."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
from google.rpc import error_details_pb2

from infra.grpc_errors import error_info


@dataclass
class RestError(Exception):
    status: int
    body: dict[str, Any]

    @property
    def reason(self) -> str:
        for d in self.body.get("details", []):
            if d.get("@type", "").endswith("google.rpc.ErrorInfo"):
                return str(d.get("reason"))
        return ""

    @property
    def metadata(self) -> dict[str, str]:
        for d in self.body.get("details", []):
            if d.get("@type", "").endswith("google.rpc.ErrorInfo"):
                return dict(d.get("metadata", {}))
        return {}


class Rest:
    """A web client of the gateway, holding one customer's token."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=30)
        self.token = token

    async def close(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, json: Any = None, headers: dict[str, str] | None = None) -> Any:
        h = dict(headers or {})
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        resp = await self.http.request(method, path, json=json, headers=h)
        body = resp.json() if resp.content else {}
        if resp.status_code >= 400:
            raise RestError(resp.status_code, body)
        return body

    async def guest(self) -> str:
        body = await self.call("POST", "/v1/auth/guest")
        self.token = body["token"]
        return str(body["customerId"])


def grpc_reason(err: grpc.aio.AioRpcError) -> tuple[str, dict[str, str]]:
    info: error_details_pb2.ErrorInfo | None = error_info(err)
    assert info is not None, f"no ErrorInfo in {err.code()} {err.details()}"
    assert info.domain == "kassa"
    return info.reason, dict(info.metadata)


def sku(prefix: str = "E2E") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


US_ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "1 Main Street",
    "city": "Newark",
    "region": "NJ",
    "postalCode": "07102",
    "countryCode": "US",
    "phone": "+1 555 0100",
}
