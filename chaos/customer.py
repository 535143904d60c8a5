"""One customer of a chaos run, behaving as a real client does while the mesh is being broken.

A customer has a persona, drawn from the run's seed: pays by card, with the run's limited coupon,
through 3-D Secure (completed, failed or abandoned), with a card that is declined or that times out at
the provider, cash on delivery, double-clicks Confirm, cancels right after buying, or leaves before
confirming. Every call is retried the way a careful client retries: on a timeout, a 5xx, UNAVAILABLE
or a "not now" refusal, with backoff, a bounded number of times; ConfirmCheckout always with the same
Idempotency-Key. When Confirm never answered, the customer looks the session up, as a client that
reloads the page would. What happened is kept in a :class:`Visit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import httpx

from bench.flow import EMAIL, SHIP_TO
from chaos.client import Api, CallError

__all__ = ["PERSONAS", "Catalog", "Customer", "Visit", "assign", "pick_persona", "tally"]

# (persona, weight): most customers simply pay; the rest walk every other path a payment can take.
PERSONAS: tuple[tuple[str, int], ...] = (
    ("card", 40),
    ("coupon", 10),
    ("3ds", 10),
    ("3ds_fail", 2),
    ("3ds_abandon", 3),
    ("decline", 8),
    ("timeout", 2),
    ("cod", 5),
    ("double_click", 7),
    ("cancel", 8),
    ("abandon", 5),
)
_TOKENS = {"decline": ("tok_chargeDeclined", "tok_insufficientFunds"), "timeout": ("tok_timeout",)}
_3DS = ("3ds", "3ds_fail", "3ds_abandon")
_SOLD = ("ORDER_STATUS_CONFIRMED", "ORDER_STATUS_AWAITING_SHIPMENT")
_PENDING = "ORDER_STATUS_PENDING_PAYMENT"
_FAILED = "ORDER_STATUS_PAYMENT_FAILED"
_CALL_TRIES = 5
_CONFIRM_TRIES = 10
_CONFIRM_BUDGET_S = 120.0
_ORDER_WAIT_S = 60.0


def _undone(exc: CallError) -> bool:
    """Confirm answered ABORTED for a checkout it undid (nothing charged): a real client starts checkout again
    rather than repeat the key. ABORTED keeps its cause's reason: PAYMENT_PROVIDER_UNAVAILABLE (which
    chaos.client counts as "not now" whatever the code) or UNAVAILABLE (not transient only when ABORTED)."""
    return exc.reason == "PAYMENT_PROVIDER_UNAVAILABLE" or (exc.reason == "UNAVAILABLE" and not exc.transient)


def pick_persona(rng: random.Random) -> str:
    names, weights = zip(*PERSONAS, strict=True)
    return rng.choices(names, weights)[0]


@dataclass(frozen=True)
class Catalog:
    skus: tuple[str, ...]
    hot_skus: tuple[str, ...]
    hot_fraction: float
    coupon: str


@dataclass
class Visit:
    """What one customer did and was told."""

    index: int
    persona: str
    transport: str
    outcome: str = ""
    retries: int = 0
    session_id: str = ""
    order_id: str = ""
    told: str = ""  # the last order status the client was told
    cancelled: bool = False
    hot_units: Counter[str] = field(default_factory=Counter)
    anomalies: list[str] = field(default_factory=list)
    trail: list[str] = field(default_factory=list)  # every failed call, "rpc: reason", in order
    seconds: float = 0.0


class Customer:
    def __init__(
        self, api: Api, sandbox: httpx.AsyncClient, catalog: Catalog, rng: random.Random, visit: Visit
    ) -> None:
        self._api = api
        self._sandbox = sandbox
        self._catalog = catalog
        self._rng = rng
        self.visit = visit

    # -- retries ---------------------------------------------------------------------------------

    async def _pause(self, attempt: int) -> None:
        await asyncio.sleep(min(0.25 * 2**attempt, 4.0) * self._rng.uniform(0.5, 1.0))

    async def _call(self, rpc: str, body: Mapping[str, Any], *, tries: int = _CALL_TRIES) -> dict[str, Any]:
        for attempt in range(tries):
            try:
                return await self._api.call(rpc, body)
            except CallError as exc:
                self.visit.trail.append(str(exc))
                if not exc.transient or attempt == tries - 1:
                    raise
            self.visit.retries += 1
            await self._pause(attempt)
        raise AssertionError("unreachable")

    async def _confirm(self, body: Mapping[str, Any], key: str) -> dict[str, Any]:
        """The same Idempotency-Key until an answer that is not "try again", or the budget is spent."""
        deadline = time.monotonic() + _CONFIRM_BUDGET_S
        for attempt in range(_CONFIRM_TRIES):
            try:
                return await self._api.call("ConfirmCheckout", body, key=key)
            except CallError as exc:
                self.visit.trail.append(str(exc))
                if not exc.transient or _undone(exc) or attempt == _CONFIRM_TRIES - 1 or time.monotonic() > deadline:
                    raise
            self.visit.retries += 1
            await self._pause(attempt + 1)
        raise AssertionError("unreachable")

    # -- the visit -------------------------------------------------------------------------------

    def _cart(self) -> list[tuple[str, int]]:
        c = self._catalog
        lines = [(s, self._rng.randint(1, 2)) for s in self._rng.sample(c.skus, self._rng.randint(1, 3))]
        if c.hot_skus and self._rng.random() < c.hot_fraction:
            lines.append((self._rng.choice(c.hot_skus), 1))
        return lines

    def _token(self) -> str:
        persona = self.visit.persona
        if persona in _3DS:
            return "tok_threeDSecure"
        if persona == "cod":
            return "cod"
        return self._rng.choice(_TOKENS.get(persona, ("tok_visa",)))

    async def run(self) -> Visit:
        started = time.monotonic()
        try:
            self.visit.outcome = await self._shop()
        except CallError as exc:
            kind = "failed" if exc.transient else "refused"
            self.visit.outcome = f"{kind}: {exc.rpc} {exc.reason}"
        finally:
            self.visit.seconds = time.monotonic() - started
        return self.visit

    async def _shop(self) -> str:
        v = self.visit
        for attempt in range(_CALL_TRIES):
            try:
                await self._api.login()
                break
            except CallError as exc:
                if not exc.transient or attempt == _CALL_TRIES - 1:
                    raise
                v.retries += 1
                await self._pause(attempt)
        cart_id = (await self._call("CreateCart", {"currencyCode": "USD"}))["cart"]["cartId"]
        lines = self._cart()
        for sku, quantity in lines:
            # Retried like the rest: an add whose answer was lost may have added already, and then the cart
            # holds more units, as a real customer's would after a double submit.
            await self._call("AddCartItem", {"cartId": cart_id, "sku": sku, "quantity": quantity})
        started = await self._call("StartCheckout", {"cartId": cart_id, "shipToCountryCode": "US"})
        v.session_id = session_id = started["session"]["sessionId"]
        state: dict[str, Any] = {
            "sessionId": session_id,
            "email": EMAIL,
            "shippingAddress": SHIP_TO,
            "shippingMethod": "standard",
            "paymentMethod": self._token(),
        }
        if v.persona == "coupon":
            state["promotionCodes"] = [self._catalog.coupon]
        await self._call("UpdateCheckoutState", state)
        preview = (await self._call("PreviewOrder", {"sessionId": session_id}))["preview"]
        if v.persona == "abandon":
            return "abandoned before confirming"
        body = {"sessionId": session_id, "expectedGrandTotal": preview["grandTotal"]}
        key = uuid.uuid4().hex
        try:
            if v.persona == "double_click":
                result = await self._double_click(body, key)
            else:
                result = await self._confirm(body, key)
        except CallError as exc:
            if exc.reason == "PAYMENT_DECLINED":
                return "declined"
            if _undone(exc):
                return f"not placed: Confirm gave {exc.reason}, the session was cancelled (all undone)"
            if not exc.transient:
                raise
            return await self._look_up(session_id, f"{exc.reason} after retries")
        for sku, quantity in lines:
            if sku in self._catalog.hot_skus:
                v.hot_units[sku] += quantity
        return await self._after_confirm(result)

    async def _double_click(self, body: Mapping[str, Any], key: str) -> dict[str, Any]:
        pair = await asyncio.gather(self._confirm(body, key), self._confirm(body, key), return_exceptions=True)
        first, second = pair  # unpacked apart from the await: mypy cannot type the pair unpacked from it
        answers = [a for a in (first, second) if isinstance(a, dict)]
        orders: set[Any] = {a.get("orderId") for a in answers if a.get("orderId")}
        if len(orders) > 1:
            self.visit.anomalies.append(f"one key, two orders: {sorted(orders)}")
        if answers:
            return answers[0]
        # No answer: both calls raised.
        raise first if isinstance(first, BaseException) else cast(BaseException, second)

    async def _look_up(self, session_id: str, why: str) -> str:
        """Confirm never gave an answer: reload the session until it is no longer CONFIRMING (bounded), as a
        customer's order-status page would; its order is what the customer then sees."""
        deadline = time.monotonic() + _ORDER_WAIT_S
        status = "unreadable"
        while time.monotonic() < deadline:
            try:
                session = (await self._call("GetCheckoutSession", {"sessionId": session_id}))["session"]
            except CallError as exc:
                status = f"unreadable ({exc.reason})"
                await asyncio.sleep(2.0)
                continue
            status = str(session.get("status", "")).removeprefix("SESSION_STATUS_")
            self.visit.order_id = str(session.get("orderId") or "")
            if status != "CONFIRMING":
                break
            await asyncio.sleep(2.0)
        if status == "COMPLETED" and self.visit.order_id:
            return f"confirmed later: Confirm gave {why}, the session completed"
        if status == "CANCELLED":
            return f"not placed: Confirm gave {why}, the session was cancelled (all undone)"
        return f"unknown: {why}; session {status}"

    async def _after_confirm(self, result: dict[str, Any]) -> str:
        v = self.visit
        v.order_id = str(result.get("orderId") or "")
        v.told = status = str(result.get("orderStatus") or "")
        persona = v.persona
        if status == _PENDING and persona in _3DS:
            return await self._three_d_secure(str(result.get("nextActionUrl") or ""))
        if status == _PENDING:
            # A card payment whose capture is still being settled: wait for the order, as its page would.
            v.told = status = await self._order_settles()
            if status not in _SOLD:
                return f"pending after confirm, then {status}"
        if status not in _SOLD:
            return f"confirm answered {status or 'no status'}"
        if persona == "cancel":
            return await self._cancel()
        return "confirmed (cash on delivery)" if status == "ORDER_STATUS_AWAITING_SHIPMENT" else "confirmed"

    async def _cancel(self) -> str:
        reply = await self._call("CancelOrder", {"orderId": self.visit.order_id, "reason": "changed my mind"})
        self.visit.told = str(reply.get("order", {}).get("status", ""))
        self.visit.cancelled = True
        return "cancelled after confirming"

    async def _three_d_secure(self, next_action_url: str) -> str:
        persona = self.visit.persona
        if persona == "3ds_abandon":
            return "3-D Secure abandoned"
        intent = next_action_url.rsplit("/v1/3ds/", 1)[-1].split("/", 1)[0].split("?", 1)[0]
        action = "complete" if persona == "3ds" else "fail"
        if not await self._at_provider(lambda: self._sandbox.post(f"/v1/3ds/{intent}/{action}")):
            return f"3-D Secure {action}: provider unreachable"
        status = await self._order_settles()
        self.visit.told = status
        if persona == "3ds":
            return "3-D Secure completed" if status in _SOLD else f"3-D Secure completed, order {status}"
        return "3-D Secure failed" if status == _FAILED else f"3-D Secure failed, order {status}"

    async def _at_provider(self, send: Callable[[], Awaitable[httpx.Response]]) -> bool:
        for attempt in range(_CALL_TRIES):
            try:
                response = await send()
                if response.status_code < 500:
                    return True
            except httpx.HTTPError:
                pass
            self.visit.retries += 1
            await self._pause(attempt + 1)
        return False

    async def _order_settles(self) -> str:
        """Poll the order until it leaves PENDING_PAYMENT (a webhook or checkout's poll moves it), bounded."""
        deadline = time.monotonic() + _ORDER_WAIT_S
        status = _PENDING
        while time.monotonic() < deadline:
            with contextlib.suppress(CallError):
                status = str((await self._api.call("GetOrder", {"orderId": self.visit.order_id}))["order"]["status"])
            if status != _PENDING:
                return status
            await asyncio.sleep(1.0)
        return status


def assign(seed: int, index: int, transport: str) -> tuple[random.Random, str, str]:
    """The generator, persona and transport of customer ``index``: the same for the same seed."""
    rng = random.Random(f"{seed}:customer:{index}")
    persona = pick_persona(rng)
    if transport == "both":
        transport = "grpc" if index % 2 == 0 else "rest"
    return rng, persona, transport


def tally(visits: Sequence[Visit]) -> Counter[str]:
    return Counter(v.outcome for v in visits)
