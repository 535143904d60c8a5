"""What the checkout use cases need from the outside world, as typing.Protocol ports.

data/ implements the repositories and the unit of work (SqlUnitOfWork), adapter/ the gateways to
the other services (Grpc…Adapter); tests use the Fake… implementations in tests/checkout/fakes.py.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from checkout.model.cart import Cart, CartItem, CartStatus
from checkout.model.catalog import (
    Address,
    AuthorizeRequest,
    CatalogPage,
    OrderDraft,
    OrderQuote,
    OrderRef,
    Parcel,
    Payment,
    PaymentOutcome,
    PaymentStatus,
    ProductsResult,
    PromotionLine,
    PromotionResult,
    Reservations,
    ReserveLine,
    ShippingQuote,
    TaxLine,
)
from checkout.model.compensation import CompensationFilter, CompensationStatus, FailedCompensation, NewCompensation
from checkout.model.funnel import Funnel
from checkout.model.session import ConfirmRecord, ConfirmResult, Preview, SagaState, SagaStep, Session, SessionStatus
from kernel.money import Money

__all__ = [
    "CartRepo",
    "CatalogFeed",
    "CompensationRepo",
    "ConfirmRecordRepo",
    "Gateways",
    "IdempotencyStore",
    "InventoryGateway",
    "KeptAnswer",
    "NewEvent",
    "OrderGateway",
    "PaymentGateway",
    "PricingGateway",
    "ProductLookup",
    "PromotionGateway",
    "SessionEnd",
    "SessionPayment",
    "SessionRepo",
    "Tx",
    "UnitOfWork",
]


class ProductLookup(Protocol):
    """What a cart needs of the catalog: a product's name and current price (AddCartItem)."""

    async def get_products(self, skus: Sequence[str], currency_code: str) -> ProductsResult: ...


class CatalogFeed(Protocol):
    """Pricing's catalog as it changes, for a copy of it (SyncProducts): every page of a sync is asked for with
    its ``sync_token`` (empty: the whole catalog) and the page before's ``next_page_token``."""

    async def sync_products(self, sync_token: str, page_token: str) -> CatalogPage: ...


class PricingGateway(CatalogFeed, Protocol):
    async def get_products(self, skus: Sequence[str], currency_code: str) -> ProductsResult: ...

    async def quote_shipping(
        self, parcels: Sequence[Parcel], destination: Address, shipping_method: str, currency_code: str
    ) -> ShippingQuote: ...

    async def calculate_tax(
        self, lines: Sequence[TaxLine], destination: Address, shipping_total: Money, currency_code: str
    ) -> Money: ...

    async def quote_order(
        self,
        lines: Sequence[ReserveLine],
        parcels: Sequence[Parcel],
        destination: Address,
        shipping_method: str,
        currency_code: str,
        *,
        line_discounts: Sequence[int] = (),
        shipping_discount: int = 0,
    ) -> OrderQuote:
        """get_products, quote_shipping and calculate_tax in one call: the tax of each line less its discount
        (``line_discounts``, minor units, one per line; none when empty) and of the shipping less
        ``shipping_discount``. The quote's shipping is before its discount."""
        ...


class InventoryGateway(Protocol):
    async def reserve_stock(
        self, reservation_ref: str, lines: Sequence[ReserveLine], ship_to_country_code: str, ttl_seconds: int
    ) -> Reservations: ...

    async def extend_reservations(self, reservation_ref: str, ttl_seconds: int) -> datetime: ...

    async def release_reservations(self, reservation_ref: str, reason: str) -> None: ...

    async def confirm_reservations(self, reservation_ref: str) -> None: ...


class PromotionGateway(Protocol):
    async def validate(
        self,
        codes: Sequence[str],
        lines: Sequence[PromotionLine],
        shipping_total: Money,
        currency_code: str,
        customer_id: str,
        *,
        customer_email: str = "",
    ) -> PromotionResult: ...

    async def reserve_usage(
        self,
        reservation_ref: str,
        codes: Sequence[str],
        lines: Sequence[PromotionLine],
        shipping_total: Money,
        currency_code: str,
        *,
        customer_id: str,
        customer_email: str = "",
    ) -> PromotionResult: ...

    async def confirm_usage(self, reservation_ref: str) -> None: ...

    async def release_usage(self, reservation_ref: str) -> None: ...


class PaymentGateway(Protocol):
    async def authorize(self, request: AuthorizeRequest) -> Payment: ...

    async def capture(self, payment_id: str, order_id: str) -> Payment: ...

    async def void(self, payment_id: str, reason: str) -> Payment: ...

    async def void_by_key(self, authorize_key: str, reason: str) -> Payment | None:
        """Void whatever the authorization with this key holds (looked up at the provider when its answer
        was lost); None when it holds nothing."""
        ...

    async def refund(self, payment_id: str, idempotency_key: str, reason: str) -> Payment:
        """Refund everything captured and not yet refunded."""
        ...

    async def get(self, payment_id: str, *, refresh: bool = False) -> Payment:
        """The payment; with ``refresh``, as the provider says it is now (a status poll)."""
        ...


class OrderGateway(Protocol):
    async def create_order(self, draft: OrderDraft) -> OrderRef: ...

    async def get_order(self, order_id: str) -> OrderRef: ...

    async def record_payment(self, order_id: str, payment_id: str, outcome: PaymentOutcome, cause: str) -> OrderRef: ...


@dataclass(frozen=True)
class Gateways:
    pricing: PricingGateway
    inventory: InventoryGateway
    promotion: PromotionGateway
    payment: PaymentGateway
    order: OrderGateway


class CartRepo(Protocol):
    async def create(self, cart: Cart) -> Cart: ...

    async def get(self, cart_id: str) -> Cart | None: ...

    async def get_head(self, cart_id: str) -> Cart | None:
        """The cart without reading its lines (``items`` is left empty): owner, status, currency, version."""
        ...

    async def lock_active(self, cart_id: str) -> Cart | None:
        """Lock an ACTIVE cart for change (bumping its version); None when it isn't ACTIVE."""
        ...

    async def put_item_at(self, cart_id: str, item: CartItem, *, version: int) -> Cart | None:
        """In one statement: write the sku's line (as upsert_item does) only while the cart is ACTIVE and still at
        ``version``, bumping it; the cart head as written (``items`` left empty), None when it wasn't."""
        ...

    async def put_item_or_read(self, cart_id: str, item: CartItem, *, version: int) -> tuple[bool, Cart | None]:
        """In one statement, :meth:`put_item_at`'s write and a read of the cart: (True, the cart as written, lines
        included) when the write applied; else (False, the cart with its lines as the statement found it), or
        (False, None) when there is no such cart."""
        ...

    async def upsert_item(self, cart_id: str, item: CartItem) -> None:
        """Replace the sku's line in place, or add it after every existing line."""
        ...

    async def delete_item(self, cart_id: str, sku: str) -> bool: ...

    async def set_prices(self, cart_id: str, prices: dict[str, int], *, version: int) -> int | None:
        """Store revalidated unit prices if the cart is still at ``version``; returns the new version."""
        ...

    async def transition(
        self, cart_id: str, from_statuses: Collection[CartStatus], to: CartStatus, *, version: int | None = None
    ) -> bool: ...


@dataclass(frozen=True)
class KeptAnswer:
    """The answer kept for a ConfirmCheckout request: the customer's idempotency key and what a repeat gets."""

    customer_id: str
    idempotency_key: str
    record: ConfirmRecord


@dataclass(frozen=True)
class NewEvent:
    """An event for the outbox: its type, the aggregate it is about, its data."""

    event_type: str
    aggregate_id: str
    data: dict[str, Any]


@dataclass(frozen=True)
class SessionEnd:
    """What the write that ends a saga (:meth:`SessionRepo.finish`) writes with it, all or nothing: the answer kept
    for the request that drove it (customer, idempotency key, record), the compensations left for the DLQ, the
    cart's move from CHECKOUT to ``cart_to``, the events written only if the cart moved, and the events of the
    end itself. Nothing of it is written when the session's end is not (another owner claimed the saga)."""

    cart_id: str
    cart_to: CartStatus
    kept: KeptAnswer | None = None
    compensations: Sequence[NewCompensation] = ()
    if_cart_moved: Sequence[NewEvent] = ()
    events: Sequence[NewEvent] = ()


@dataclass(frozen=True)
class SessionPayment:
    """What a payment event for a session is decided on (:meth:`SessionRepo.get_payment`): the session's status, its
    saga's step, and the payment its saga state names, with that payment's status as the saga last persisted it."""

    status: SessionStatus
    saga_step: SagaStep | None
    payment_id: str
    payment_status: PaymentStatus | None


class SessionRepo(Protocol):
    async def create_holding_cart(
        self, session: Session, from_statuses: Collection[CartStatus], *, version: int
    ) -> tuple[bool, Session | None]:
        """In one statement: move the session's cart from ``from_statuses`` at ``version`` to CHECKOUT (bumping its
        version), and only if it moved, create the session. Whether the cart moved, and the stored session (None
        when the cart did not move or already has a live session; the cart's move stands then)."""
        ...

    async def get(self, session_id: str) -> Session | None: ...

    async def get_payment(self, session_id: str) -> SessionPayment | None:
        """Only what a payment event is decided on (no lines, totals, addresses or saga documents decoded); None
        when there is no such session."""
        ...

    async def get_live_for_cart(self, cart_id: str) -> Session | None: ...

    async def update_state(
        self,
        session_id: str,
        changes: dict[str, Any],
        preview: Preview | None,
        *,
        unchanged_since: datetime | None = None,
    ) -> Session | None:
        """Apply changes to an OPEN, unexpired session together with the totals computed for the result (None
        clears the stored ones) and return it; None otherwise. With ``unchanged_since``, only while the
        session's ``updated_at`` is still that (nobody changed it since it was read)."""
        ...

    async def begin_confirm_with_cart(
        self, session_id: str, idempotency_key: str, fingerprint: str, *, unchanged_since: datetime | None = None
    ) -> tuple[Session, CartStatus | None] | None:
        """OPEN and unexpired → CONFIRMING with the request's key and fingerprint (the durable guard), a new saga
        attempt; None when not, or when this key's answer for this session is already kept, or (with
        ``unchanged_since``) when the session was written since that ``updated_at``. Raises AlreadyExists
        (IDEMPOTENCY_KEY_REUSED) when the customer's key belongs to another session. With the session, the status
        of its cart as the same statement saw it (None: no such cart).

        That status is a snapshot, not a hold: while the session is CONFIRMING its cart leaves CHECKOUT by that
        session's own end (:meth:`finish`), but also by a CART_CLEANUP entry of the DLQ (no code of this service
        records one; the compensator still runs any found there, for an earlier session of the cart); StartCheckout
        only bumps its version (its move is CHECKOUT → CHECKOUT, and the live session refuses a second one).
        What a later move can't break is the end: ``finish`` moves the cart only from CHECKOUT, and writes
        CartConverted only with that move."""
        ...

    # The writes of a saga below are fenced: each applies only while the session is CONFIRMING under
    # ``attempt`` (its saga_attempt), and says whether it did (False: another owner claimed the saga).
    # The last of them (reopen, finish, await_payment) clears confirm_fingerprint: the request is answered.

    async def save_progress(self, session_id: str, step: SagaStep, state: SagaState, *, attempt: int) -> bool:
        """Store the saga's step and state, renewing its lease (confirm_started_at moved to now)."""
        ...

    async def renew(self, session_id: str, *, attempt: int) -> bool:
        """Renew the saga's lease (confirm_started_at moved to now)."""
        ...

    async def reopen(self, session_id: str, last_error: str, preview: Preview | None, *, attempt: int) -> bool:
        """CONFIRMING → OPEN when the saga stopped before changing anything."""
        ...

    async def finish(
        self,
        session_id: str,
        status: SessionStatus,
        *,
        step: SagaStep,
        state: SagaState,
        order_id: str = "",
        result: ConfirmResult | None = None,
        last_error: str = "",
        attempt: int,
        end: SessionEnd | None = None,
    ) -> bool:
        """CONFIRMING → COMPLETED or CANCELLED; with ``end``, what it writes with that, in the same statement
        (run it in ``UnitOfWork.statement()``)."""
        ...

    async def await_payment(
        self,
        session_id: str,
        *,
        state: SagaState,
        order_id: str,
        result: ConfirmResult,
        window_seconds: int,
        attempt: int,
    ) -> bool:
        """CONFIRMING → AWAITING_PAYMENT until now + window_seconds."""
        ...

    async def claim_awaiting(self, session_id: str, step: SagaStep, state: SagaState) -> Session | None:
        """AWAITING_PAYMENT → CONFIRMING at ``step`` under a new saga attempt (the fence between a webhook, a
        poll and a retry); None when another caller claimed it first or it no longer awaits payment."""
        ...

    async def awaiting_due(self, poll_after_seconds: int, limit: int) -> list[Session]:
        """AWAITING_PAYMENT sessions not heard of for ``poll_after_seconds`` or past their payment window,
        leased to this caller (updated_at moved to now)."""
        ...

    async def claim_stuck(
        self, older_than_seconds: float, limit: int, *, session_id: str | None = None
    ) -> list[Session]:
        """CONFIRMING sessions without progress for ``older_than_seconds`` (this one, when given), claimed by this
        caller: a new saga attempt each, their lease counted from now."""
        ...

    async def list_stuck(self, older_than_seconds: float, limit: int) -> list[Session]:
        """Sessions claim_stuck would take (CONFIRMING with no saga write for ``older_than_seconds``), oldest
        first; reads only."""
        ...

    async def expire_due(self, limit: int, *, cart_id: str | None = None) -> list[Session]:
        """OPEN sessions past expires_at (of one cart, when given) → EXPIRED; returns them."""
        ...


class CompensationRepo(Protocol):
    async def add(self, item: NewCompensation) -> str: ...

    async def claim_due(self, limit: int, lease_seconds: int) -> list[FailedCompensation]:
        """Up to ``limit`` pending rows due now, leased to this caller: next_attempt_at moved to the lease's end."""
        ...

    # Each applies only while the claim that returned ``item`` still holds the row (still pending, its
    # next_attempt_at unchanged), and says whether it did.

    async def mark_done(self, item: FailedCompensation) -> bool: ...

    async def reschedule(self, item: FailedCompensation, delay_seconds: float, error: str) -> bool: ...

    async def mark_dead(self, item: FailedCompensation, error: str) -> bool: ...

    # An operator's view and actions (CheckoutAdminService). The actions record the admin's audit entry in
    # the transaction that commits them.

    async def list(self, where: CompensationFilter, limit: int) -> list[FailedCompensation]:
        """Entries newest first (by created_at, then id), after ``where.after``."""
        ...

    async def get(self, compensation_id: str) -> FailedCompensation | None: ...

    async def take(
        self, compensation_id: str, statuses: Collection[CompensationStatus], lease_seconds: int, *, restart: bool
    ) -> FailedCompensation | None:
        """Lease the entry to this caller now, as claim_due would, if its status is one of ``statuses``; it
        becomes PENDING (``restart``: with its attempts back to 0). None when it is in another status, or PENDING
        and being run now under a lease of ``lease_seconds`` (the drain's or another operator's)."""
        ...

    async def park(self, compensation_id: str, lease_seconds: int) -> FailedCompensation | None:
        """PENDING → PARKED; None when it is in another status, or being run now under a lease of
        ``lease_seconds`` (parking it then would not stop that run)."""
        ...


class ConfirmRecordRepo(Protocol):
    async def get(self, customer_id: str, idempotency_key: str, max_age_seconds: int) -> ConfirmRecord | None: ...

    async def put(self, customer_id: str, idempotency_key: str, record: ConfirmRecord) -> None:
        """Keep a request's answer (replacing one kept past the replay window)."""
        ...


class FunnelRepo(Protocol):
    async def funnel(self, start: datetime, end: datetime) -> Funnel:
        """Carts created, sessions started, completed and cancelled (by reason) in [start, end)."""
        ...


class Tx(Protocol):
    """One open transaction: everything done through it commits or rolls back together."""

    # Read-only members: an implementation may hold its own repository classes (SqlTx's SqlCartRepo, ...).
    @property
    def carts(self) -> CartRepo: ...
    @property
    def sessions(self) -> SessionRepo: ...
    @property
    def compensations(self) -> CompensationRepo: ...
    @property
    def confirm_records(self) -> ConfirmRecordRepo: ...
    @property
    def funnel(self) -> FunnelRepo: ...

    async def add_event(self, event_type: str, aggregate_id: str, data: dict[str, Any]) -> None:
        """Record an outbox event in this transaction."""
        ...


class UnitOfWork(Protocol):
    """Where a use case gets its Tx: ``transaction()`` for a step that writes, ``read()`` for reads of one
    statement each, and ``single()`` (checkout's addition to the template's idiom) for a write of exactly one
    statement that commits by itself: no BEGIN/COMMIT round trips, which tests/checkout's round-trip counts pin.
    ``single()`` never carries an event nor two writes that must commit together."""

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """Begin a transaction: committed when the block exits cleanly, rolled back on an exception."""
        ...

    def read(self) -> AbstractAsyncContextManager[Tx]:
        """Repositories for reads that are one statement each: no transaction, never a write."""
        ...

    def single(self) -> AbstractAsyncContextManager[Tx]:
        """Repositories for one write that is one statement: atomic and committed on its own, with no
        BEGIN/COMMIT round trips. Never for two writes that must commit together, nor with an event."""
        ...

    def statement(self) -> AbstractAsyncContextManager[Tx]:
        """As ``single()``, for one statement that writes its outbox events with its change (as CTEs of it)."""
        ...


class IdempotencyStore(Protocol):
    """The Redis lock and result cache in front of ConfirmCheckout (checkout.data.redis_store): a filter, never
    the truth. No method raises or waits past a short timeout; unavailable, it answers "not taken" / "nothing
    cached", and the durable guard in Postgres decides."""

    async def begin(self, key: str) -> tuple[str | None, bytes | None]:
        """One round trip: (None, the answer) when one is cached for ``key``, taking no lock; else (a token, None)
        when this caller took the lock (held while it runs), (None, None) when another holds it, or none can say."""
        ...

    async def end(self, key: str, token: str | None, answer: bytes | None) -> None:
        """One round trip: cache ``answer`` (when given) and release the lock (when ``token``, and still held by
        it); nothing to do, no call."""
        ...


class FunnelEvents(Protocol):
    """What the checkout funnel counts, as sessions move (DESIGN.md §5 telemetry): each call is one event that
    happened and committed. A metrics backend implements it (checkout.adapter.funnel); :class:`NoFunnelEvents` counts
    nothing."""

    def cart_created(self) -> None: ...

    def checkout_started(self) -> None: ...

    def checkout_awaiting_payment(self) -> None:
        """A confirm placed its order and waits for the customer's payment action (3-D Secure)."""
        ...

    def checkout_confirmed(self, order_status: str) -> None:
        """A session ended with its order placed and paid (CONFIRMED) or cash on delivery (AWAITING_SHIPMENT)."""
        ...

    def checkout_failed(self, reason: str) -> None:
        """A confirm failed with ``reason`` (an kernel.errors.Reason): refused before anything moved (the session is
        OPEN again), or undone (the session is CANCELLED)."""
        ...


class NoFunnelEvents:
    """Counts nothing: the default of the use cases, for the tests that don't look at the funnel."""

    def cart_created(self) -> None:
        pass

    def checkout_started(self) -> None:
        pass

    def checkout_awaiting_payment(self) -> None:
        pass

    def checkout_confirmed(self, order_status: str) -> None:
        pass

    def checkout_failed(self, reason: str) -> None:
        pass
