"""The sandbox processor's ledger: intents, refunds and stored idempotent responses.

Held in memory and written through to a :class:`~devstack.sandbox.ledger.Ledger` (SQLite) after
each request (:meth:`SandboxState.commit`), and loaded from it at start, so a restart keeps it.

Every operation is synchronous and runs under the app's single lock, so a
request is atomic with respect to every other (a double click with the same
Idempotency-Key sees the first request's stored response, never a half-made
intent). Operations return an :class:`Outcome`: the HTTP answer plus the
webhook events it causes, which the app sends after releasing the lock.
"""

from __future__ import annotations

import bisect
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from devstack.sandbox.ledger import MEMORY, Ledger

__all__ = ["TEST_TOKENS", "ApiError", "Intent", "Outcome", "SandboxState", "StoredResponse"]

# Test tokens and what authorizing with them does (DESIGN.md §2).
TEST_TOKENS = frozenset(
    {
        "tok_visa",
        "tok_chargeDeclined",
        "tok_insufficientFunds",
        "tok_threeDSecure",
        "tok_timeout",
        "tok_processingError",
    }
)
_DECLINES = {
    "tok_chargeDeclined": ("card_declined", "Your card was declined."),
    "tok_insufficientFunds": ("insufficient_funds", "Your card has insufficient funds."),
}
TIMEOUT_TOKEN = "tok_timeout"


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class ApiError(Exception):
    """A refusal rendered as ``{"error": {...}}`` with an HTTP status, like a processor's API."""

    def __init__(self, status: int, type_: str, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"error": {"type": type_, "code": code, "message": message, **extra}}


@dataclass
class Intent:
    id: str
    amount: int
    currency: str
    payment_method: str
    idempotency_key: str
    status: str
    return_url: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    capture_method: str = "manual"
    amount_capturable: int = 0
    amount_received: int = 0
    amount_refunded: int = 0
    next_action: dict[str, str] | None = None
    last_payment_error: dict[str, str] | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    # Creation order, for listing newest first with a stable cursor.
    seq: int = 0

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Intent:
        return cls(**record)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_capturable": self.amount_capturable,
            "amount_received": self.amount_received,
            "amount_refunded": self.amount_refunded,
            "currency": self.currency,
            "status": self.status,
            "payment_method": self.payment_method,
            "capture_method": self.capture_method,
            "return_url": self.return_url,
            "metadata": dict(self.metadata),
            "next_action": dict(self.next_action) if self.next_action else None,
            "last_payment_error": dict(self.last_payment_error) if self.last_payment_error else None,
            "created": self.created,
        }


@dataclass(frozen=True)
class StoredResponse:
    """What a key answered first; ``fingerprint`` is the request it answered (method, path, body)."""

    fingerprint: str
    status: int
    body: dict[str, Any]
    slow: bool = False


@dataclass
class Outcome:
    status: int
    body: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # tok_timeout: the processor did the work but answers only after the client gave up.
    slow: bool = False


class SandboxState:
    """The ledger. Not thread-safe by itself: the app serializes calls with one asyncio lock."""

    def __init__(self, ledger: Ledger | None = None) -> None:
        self.ledger = ledger or Ledger(MEMORY)
        self.intents: dict[str, Intent] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.responses: dict[str, StoredResponse] = {}
        # (operation, intent id) for every request that did work (replays excluded): lets tests
        # prove that a retry reached the processor at most once.
        self.operations: list[tuple[str, str]] = []
        # Every intent in creation order (for listing without a sort), and whether ``created`` grows with it
        # (it does unless the clock went back), which lets a created range be found by bisection.
        self._by_seq: list[Intent] = []
        self._created_sorted = True
        for _seq, record in self.ledger.intents():
            self._add(Intent.from_record(record))
        for refund in self.ledger.refunds():
            self.refunds[refund["id"]] = refund
        for key, stored in self.ledger.responses():
            self.responses[key] = StoredResponse(**stored)
        self._seq = max((i.seq for i in self.intents.values()), default=0)
        self._dirty_intents: set[str] = set()
        self._dirty_refunds: set[str] = set()
        self._dirty_responses: set[str] = set()

    def store_response(self, key: str, stored: StoredResponse) -> None:
        self.responses[key] = stored
        self._dirty_responses.add(key)

    def commit(self, webhooks: list[dict[str, Any]] | None = None) -> None:
        """Write what the last request changed (and the webhooks it queued) to the ledger."""
        intents = [(self.intents[i].seq, self.intents[i].to_record()) for i in sorted(self._dirty_intents)]
        refunds = [self.refunds[r] for r in sorted(self._dirty_refunds)]
        responses = [(k, asdict(self.responses[k])) for k in sorted(self._dirty_responses)]
        if intents or refunds or responses or webhooks:
            self.ledger.save(intents, refunds, responses, webhooks or [])
        self._dirty_intents.clear()
        self._dirty_refunds.clear()
        self._dirty_responses.clear()

    def _touch(self, intent: Intent) -> None:
        self._dirty_intents.add(intent.id)

    def _add(self, intent: Intent) -> None:
        if self._by_seq and intent.created < self._by_seq[-1].created:
            self._created_sorted = False
        self.intents[intent.id] = intent
        self._by_seq.append(intent)

    def page(
        self,
        limit: int,
        starting_after: str | None = None,
        idempotency_key: str | None = None,
        *,
        created_gt: int | None = None,
        created_lte: int | None = None,
    ) -> tuple[list[Intent], bool]:
        """Intents newest first, ``limit`` of them after the intent ``starting_after``; (page, has_more).

        Optionally only those created with ``idempotency_key``, or within (created_gt, created_lte] (epoch
        seconds, Stripe's ``created[gt]`` and ``created[lte]``): a reconciliation pages through a time range.
        """
        ordered = self._by_seq
        lo, hi = 0, len(ordered)
        if starting_after is not None:
            hi = bisect.bisect_left(ordered, self.intent(starting_after).seq, key=lambda i: i.seq)
        if self._created_sorted:
            if created_lte is not None:
                hi = min(hi, bisect.bisect_right(ordered, created_lte, key=lambda i: i.created))
            if created_gt is not None:
                lo = bisect.bisect_right(ordered, created_gt, key=lambda i: i.created)
        picked: list[Intent] = []
        for index in range(hi - 1, lo - 1, -1):
            intent = ordered[index]
            if idempotency_key is not None and intent.idempotency_key != idempotency_key:
                continue
            if created_lte is not None and intent.created > created_lte:
                continue
            if created_gt is not None and intent.created <= created_gt:
                continue
            picked.append(intent)
            if len(picked) > limit:
                break
        return picked[:limit], len(picked) > limit

    # -- lookups -------------------------------------------------------------------------------

    def intent(self, intent_id: str) -> Intent:
        found = self.intents.get(intent_id)
        if found is None:
            raise ApiError(404, "invalid_request_error", "resource_missing", f"No such payment_intent: {intent_id}")
        return found

    def find_by_key(self, idempotency_key: str) -> list[Intent]:
        return [i for i in self.intents.values() if i.idempotency_key == idempotency_key]

    def count(self, operation: str, intent_id: str) -> int:
        return sum(1 for op in self.operations if op == (operation, intent_id))

    # -- operations ----------------------------------------------------------------------------

    def create_intent(self, params: dict[str, Any], idempotency_key: str, base_url: str) -> Outcome:
        token = params["payment_method"]
        if token not in TEST_TOKENS:
            raise ApiError(400, "invalid_request_error", "invalid_payment_method", f"No such token: {token}")
        if token == "tok_processingError":
            raise ApiError(500, "api_error", "processing_error", "An error occurred while processing the card.")
        intent = Intent(
            id=_new_id("pi"),
            amount=params["amount"],
            currency=params["currency"],
            payment_method=token,
            idempotency_key=idempotency_key,
            status="requires_capture",
            return_url=params.get("return_url") or "",
            metadata=dict(params.get("metadata") or {}),
        )
        self._seq += 1
        intent.seq = self._seq
        self._add(intent)
        self._touch(intent)
        self.operations.append(("create", intent.id))
        if token in _DECLINES:
            code, message = _DECLINES[token]
            intent.status = "requires_payment_method"
            intent.last_payment_error = {"code": code, "decline_code": code, "message": message}
            body = ApiError(402, "card_error", code, message, decline_code=code, payment_intent=intent.to_json()).body
            return Outcome(402, body, [("payment_intent.payment_failed", intent.to_json())])
        if token == "tok_threeDSecure":
            intent.status = "requires_action"
            intent.next_action = {
                "type": "redirect_to_url",
                "redirect_url": f"{base_url}/v1/3ds/{intent.id}",
                "return_url": intent.return_url,
            }
            return Outcome(200, intent.to_json())
        intent.amount_capturable = intent.amount
        return Outcome(
            200,
            intent.to_json(),
            [("payment_intent.amount_capturable_updated", intent.to_json())],
            slow=token == TIMEOUT_TOKEN,
        )

    def complete_action(self, intent_id: str, *, succeed: bool) -> Outcome:
        """The customer finished (or failed) 3-D Secure on the redirect page."""
        intent = self.intent(intent_id)
        if intent.status != "requires_action":
            return Outcome(200, intent.to_json())
        self.operations.append(("authenticate", intent.id))
        self._touch(intent)
        intent.next_action = None
        if succeed:
            intent.status = "requires_capture"
            intent.amount_capturable = intent.amount
            return Outcome(200, intent.to_json(), [("payment_intent.amount_capturable_updated", intent.to_json())])
        intent.status = "requires_payment_method"
        intent.last_payment_error = {
            "code": "authentication_required",
            "decline_code": "authentication_required",
            "message": "The customer failed 3-D Secure authentication.",
        }
        return Outcome(200, intent.to_json(), [("payment_intent.payment_failed", intent.to_json())])

    def capture(self, intent_id: str, amount_to_capture: int | None, metadata: dict[str, str] | None = None) -> Outcome:
        intent = self.intent(intent_id)
        if intent.status != "requires_capture":
            raise _unexpected_state(intent, "capture")
        amount = intent.amount_capturable if amount_to_capture is None else amount_to_capture
        if amount > intent.amount_capturable:
            raise ApiError(
                400,
                "invalid_request_error",
                "amount_too_large",
                f"amount_to_capture {amount} exceeds the authorized {intent.amount_capturable}",
                param="amount_to_capture",
            )
        self.operations.append(("capture", intent.id))
        self._touch(intent)
        # As at a real processor, metadata sent with the capture is merged into the intent's.
        intent.metadata.update(metadata or {})
        intent.status = "succeeded"
        intent.amount_received = amount
        intent.amount_capturable = 0
        return Outcome(200, intent.to_json(), [("payment_intent.succeeded", intent.to_json())])

    def cancel(self, intent_id: str) -> Outcome:
        intent = self.intent(intent_id)
        if intent.status == "canceled":
            return Outcome(200, intent.to_json())
        if intent.status not in ("requires_capture", "requires_action"):
            raise _unexpected_state(intent, "cancel")
        self.operations.append(("cancel", intent.id))
        self._touch(intent)
        intent.status = "canceled"
        intent.amount_capturable = 0
        intent.next_action = None
        return Outcome(200, intent.to_json(), [("payment_intent.canceled", intent.to_json())])

    def refund(self, intent_id: str, amount: int | None) -> Outcome:
        intent = self.intent(intent_id)
        if intent.status != "succeeded":
            raise _unexpected_state(intent, "refund")
        remaining = intent.amount_received - intent.amount_refunded
        amount = remaining if amount is None else amount
        if amount <= 0 or amount > remaining:
            raise ApiError(
                400,
                "invalid_request_error",
                "amount_too_large",
                f"refund amount {amount} exceeds the refundable {remaining}",
                param="amount",
            )
        self.operations.append(("refund", intent.id))
        self._touch(intent)
        intent.amount_refunded += amount
        refund: dict[str, Any] = {
            "id": _new_id("re"),
            "object": "refund",
            "amount": amount,
            "currency": intent.currency,
            "payment_intent": intent.id,
            "status": "succeeded",
            "created": int(time.time()),
        }
        self.refunds[refund["id"]] = refund
        self._dirty_refunds.add(refund["id"])
        return Outcome(200, refund, [("charge.refunded", intent.to_json())])


def _unexpected_state(intent: Intent, action: str) -> ApiError:
    return ApiError(
        400,
        "invalid_request_error",
        "payment_intent_unexpected_state",
        f"You cannot {action} this PaymentIntent because it has a status of {intent.status}.",
        payment_intent=intent.to_json(),
    )
