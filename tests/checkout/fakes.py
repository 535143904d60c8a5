"""In-memory Fake… implementations of every checkout port, for checkout's tests.

Each fake gateway records its calls (``calls``) and raises what is queued in ``fail[method]``
(one exception per call, or a permanent one), so tests can script outages and refusals.
"""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from checkout.biz.ports import Gateways, SessionEnd, SessionPayment
from checkout.model.cart import Cart, CartItem, CartStatus
from checkout.model.catalog import (
    Address,
    AppliedPromotion,
    AuthorizeRequest,
    CatalogEntry,
    CatalogPage,
    DeliveryWindow,
    OrderDraft,
    OrderQuote,
    OrderRef,
    OrderStatus,
    Parcel,
    Payment,
    PaymentOutcome,
    PaymentStatus,
    Product,
    ProductsResult,
    PromotionLine,
    PromotionResult,
    RejectedPromotion,
    Reservation,
    Reservations,
    ReserveLine,
    ShippingQuote,
    TaxLine,
)
from checkout.model.compensation import BACKOFF_SCHEDULE_SECONDS, FailedCompensation, NewCompensation
from checkout.model.session import ConfirmRecord, ConfirmResult, Preview, SagaState, SagaStep, Session, SessionStatus
from kernel.errors import AlreadyExists, FailedPrecondition, Reason
from kernel.money import Money, percent_of

__all__ = [
    "FakeIdempotencyStore",
    "FakeInventoryGateway",
    "FakeOrderGateway",
    "FakePaymentGateway",
    "FakePricingGateway",
    "FakePromotionGateway",
    "FakeUnitOfWork",
    "fake_gateways",
]

# What the fake pricing quotes for every shipment: business days, as the real service answers.
_FAKE_WINDOW = DeliveryWindow(3, 5)

WAREHOUSE_ORIGIN = Address("Main warehouse", "1 Depot Rd", "", "Reno", "NV", "89501", "US", "")


class _Scripted:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail: dict[str, list[BaseException] | BaseException] = {}

    def _enter(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        planned = self.fail.get(method)
        if isinstance(planned, list):
            if planned:
                raise planned.pop(0)
        elif planned is not None:
            raise planned

    def count(self, method: str) -> int:
        return sum(1 for name, _ in self.calls if name == method)


class FakePricingGateway(_Scripted):
    """A catalog; shipping is a flat fee per parcel (express doubles it); tax is a rate on the taxable amount."""

    def __init__(self, shipping_per_parcel: int = 500, tax_basis_points: int = 1000) -> None:
        super().__init__()
        self.products: dict[str, Product] = {}
        self.shipping_per_parcel = shipping_per_parcel
        self.tax_basis_points = tax_basis_points

    def add(self, sku: str, price_minor: int, currency: str = "USD", **kw: Any) -> Product:
        product = Product(
            sku=sku,
            name=kw.get("name", f"Product {sku}"),
            category=kw.get("category", "general"),
            brand=kw.get("brand", "kassa"),
            weight_grams=kw.get("weight_grams", 250),
            tax_class=kw.get("tax_class", "standard"),
            unit_price=Money(currency, price_minor),
        )
        self.products[sku] = product
        return product

    async def get_products(self, skus: Sequence[str], currency_code: str) -> ProductsResult:
        self._enter("get_products", tuple(skus), currency_code)
        return self._lookup(skus, currency_code)

    async def sync_products(self, sync_token: str, page_token: str) -> CatalogPage:
        """The whole catalog as it is now, in one page, whatever the token."""
        self._enter("sync_products", sync_token, page_token)
        entries = [
            CatalogEntry(
                p.sku, p.name, p.category, p.brand, p.weight_grams, p.tax_class,
                {p.unit_price.currency_code: p.unit_price.amount_minor},
            )
            for p in self.products.values()
        ]  # fmt: skip
        return CatalogPage(entries, "", f"synced-{self.count('sync_products')}")

    async def quote_shipping(
        self, parcels: Sequence[Parcel], destination: Address, shipping_method: str, currency_code: str
    ) -> ShippingQuote:
        self._enter("quote_shipping", tuple(parcels), destination, shipping_method, currency_code)
        return ShippingQuote(self._shipping(parcels, shipping_method, currency_code), _FAKE_WINDOW)

    async def calculate_tax(
        self, lines: Sequence[TaxLine], destination: Address, shipping_total: Money, currency_code: str
    ) -> Money:
        self._enter("calculate_tax", tuple(lines), destination, shipping_total, currency_code)
        return self.calculate_tax_of(lines, shipping_total, currency_code)

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
        """What the three calls above answer for the lines and shipping less their discounts, as the real
        service does (a discount past its total leaves zero)."""
        self._enter(
            "quote_order", tuple(lines), tuple(parcels), destination, shipping_method, currency_code,
            tuple(line_discounts), shipping_discount,
        )  # fmt: skip
        products = self._lookup(list(dict.fromkeys(ln.sku for ln in lines)), currency_code)
        if products.missing_skus:
            return OrderQuote(products, None, None)
        shipping = self._shipping(parcels, shipping_method, currency_code)
        discounts = list(line_discounts) or [0] * len(lines)
        taxable = [
            self._less(Money(currency_code, products.products[ln.sku].unit_price.amount_minor * ln.quantity), off)
            for ln, off in zip(lines, discounts, strict=True)
        ]
        tax = self.calculate_tax_of(
            [
                TaxLine(ln.sku, products.products[ln.sku].tax_class, amount)
                for ln, amount in zip(lines, taxable, strict=True)
            ],
            self._less(shipping, shipping_discount),
            currency_code,
        )
        return OrderQuote(products, shipping, tax, _FAKE_WINDOW)

    @staticmethod
    def _less(amount: Money, discount: int) -> Money:
        return Money(amount.currency_code, amount.amount_minor - min(discount, amount.amount_minor))

    def calculate_tax_of(self, lines: Sequence[TaxLine], shipping_total: Money, currency_code: str) -> Money:
        """The tax CalculateTax answers (a test may override it with per-line rounding, as the real service)."""
        return self._tax(sum(ln.amount.amount_minor for ln in lines) + shipping_total.amount_minor, currency_code)

    def _lookup(self, skus: Sequence[str], currency_code: str) -> ProductsResult:
        found = {s: self.products[s] for s in skus if s in self.products}
        found = {s: replace(p, unit_price=Money(currency_code, p.unit_price.amount_minor)) for s, p in found.items()}
        return ProductsResult(found, [s for s in skus if s not in self.products])

    def _shipping(self, parcels: Sequence[Parcel], shipping_method: str, currency_code: str) -> Money:
        per = self.shipping_per_parcel * (2 if shipping_method == "express" else 1)
        return Money(currency_code, per * len(parcels))

    def _tax(self, taxable_minor: int, currency_code: str) -> Money:
        return Money(currency_code, percent_of(taxable_minor, self.tax_basis_points))


@dataclass
class _Held:
    lines: list[Reservation]
    status: str = "ACTIVE"


class FakeInventoryGateway(_Scripted):
    """Stock per sku in one warehouse; reservations by ref, idempotent like the real service."""

    def __init__(self) -> None:
        super().__init__()
        self.stock: dict[str, int] = {}
        self.held: dict[str, _Held] = {}

    def reserved(self, sku: str) -> int:
        return sum(r.quantity for h in self.held.values() if h.status == "ACTIVE" for r in h.lines if r.sku == sku)

    async def reserve_stock(
        self, reservation_ref: str, lines: Sequence[ReserveLine], ship_to_country_code: str, ttl_seconds: int
    ) -> Reservations:
        self._enter("reserve_stock", reservation_ref, tuple(lines), ttl_seconds)
        expires = datetime.now(UTC) + timedelta(seconds=ttl_seconds)
        if reservation_ref in self.held:
            return Reservations(self.held[reservation_ref].lines, expires)
        short = [ln for ln in lines if self.stock.get(ln.sku, 0) - self.reserved(ln.sku) < ln.quantity]
        if short:
            raise FailedPrecondition(
                "not enough stock", reason=Reason.OUT_OF_STOCK, metadata={"skus": ",".join(s.sku for s in short)}
            )
        held = [Reservation(ln.sku, "wh-1", ln.quantity, WAREHOUSE_ORIGIN) for ln in lines]
        self.held[reservation_ref] = _Held(held)
        return Reservations(held, expires)

    async def extend_reservations(self, reservation_ref: str, ttl_seconds: int) -> datetime:
        self._enter("extend_reservations", reservation_ref, ttl_seconds)
        held = self.held.get(reservation_ref)
        if held is None or held.status != "ACTIVE":
            raise FailedPrecondition("reservations expired", reason=Reason.SESSION_EXPIRED)
        return datetime.now(UTC) + timedelta(seconds=ttl_seconds)

    async def release_reservations(self, reservation_ref: str, reason: str) -> None:
        self._enter("release_reservations", reservation_ref, reason)
        held = self.held.get(reservation_ref)
        if held is not None and held.status == "ACTIVE":
            held.status = "RELEASED"

    async def confirm_reservations(self, reservation_ref: str) -> None:
        self._enter("confirm_reservations", reservation_ref)
        held = self.held.get(reservation_ref)
        if held is not None and held.status == "ACTIVE":
            held.status = "CONFIRMED"
            for r in held.lines:
                self.stock[r.sku] -= r.quantity


class FakePromotionGateway(_Scripted):
    """Percentage coupons ("SAVE10" → 10 %) with a usage limit, reserved per ref."""

    def __init__(self) -> None:
        super().__init__()
        self.percent: dict[str, int] = {}
        self.limit: dict[str, int] = {}
        self.usage: dict[str, dict[str, str]] = {}  # code -> ref -> RESERVED | CONFIRMED

    def add(self, code: str, percent_off: int, usage_limit: int = 0) -> None:
        self.percent[code] = percent_off
        self.limit[code] = usage_limit
        self.usage.setdefault(code, {})

    def reserved_for(self, ref: str) -> dict[str, str]:
        return {code: refs[ref] for code, refs in self.usage.items() if ref in refs}

    def _evaluate(self, codes: Sequence[str], lines: Sequence[PromotionLine], ref: str | None) -> PromotionResult:
        subtotal = sum(ln.unit_price.amount_minor * ln.quantity for ln in lines)
        currency = lines[0].unit_price.currency_code if lines else "USD"
        applied, rejected = [], []
        for code in codes:
            if code not in self.percent:
                rejected.append(RejectedPromotion(code, Reason.PROMOTION_INVALID, "unknown code"))
                continue
            used = {r for r, s in self.usage[code].items() if r != ref}
            if self.limit[code] and len(used) >= self.limit[code]:
                rejected.append(RejectedPromotion(code, Reason.PROMOTION_EXHAUSTED, "used up"))
                continue
            discount = Money(currency, subtotal * self.percent[code] // 100)
            applied.append(AppliedPromotion(code, discount))
        return PromotionResult(applied, rejected)

    async def validate(
        self, codes: Sequence[str], lines: Sequence[PromotionLine], shipping_total: Money, currency_code: str,
        customer_id: str, *, customer_email: str = "",
    ) -> PromotionResult:  # fmt: skip
        self._enter("validate", tuple(codes), tuple(lines))
        return self._evaluate(codes, lines, None)

    async def reserve_usage(
        self, reservation_ref: str, codes: Sequence[str], lines: Sequence[PromotionLine], shipping_total: Money,
        currency_code: str, *, customer_id: str, customer_email: str = "",
    ) -> PromotionResult:  # fmt: skip
        self._enter("reserve_usage", reservation_ref, tuple(codes))
        result = self._evaluate(codes, lines, reservation_ref)
        if result.rejected:
            raise FailedPrecondition("promotion exhausted", reason=result.rejected[0].reason)
        for code in codes:
            self.usage[code].setdefault(reservation_ref, "RESERVED")
        return result

    async def confirm_usage(self, reservation_ref: str) -> None:
        self._enter("confirm_usage", reservation_ref)
        for refs in self.usage.values():
            if refs.get(reservation_ref) == "RESERVED":
                refs[reservation_ref] = "CONFIRMED"

    async def release_usage(self, reservation_ref: str) -> None:
        self._enter("release_usage", reservation_ref)
        for refs in self.usage.values():
            if refs.get(reservation_ref) == "RESERVED":
                del refs[reservation_ref]


class FakePaymentGateway(_Scripted):
    """The sandbox tokens: tok_visa succeeds, tok_chargeDeclined declines, tok_threeDSecure needs action."""

    def __init__(self) -> None:
        super().__init__()
        self.payments: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, str] = {}

    async def authorize(self, request: AuthorizeRequest) -> Payment:
        self._enter("authorize", request)
        if request.idempotency_key in self.by_key:
            return self._payment(self.by_key[request.idempotency_key])
        if request.payment_method in ("tok_chargeDeclined", "tok_insufficientFunds"):
            raise FailedPrecondition("card declined", reason=Reason.PAYMENT_DECLINED,
                                     metadata={"failure_code": "card_declined"})  # fmt: skip
        status = {
            "cod": PaymentStatus.CASH_ON_DELIVERY,
            "tok_threeDSecure": PaymentStatus.REQUIRES_ACTION,
        }.get(request.payment_method, PaymentStatus.AUTHORIZED)
        pid = str(uuid.uuid4())
        self.payments[pid] = {"status": status, "amount": request.amount, "order_id": "", "captures": 0}
        self.by_key[request.idempotency_key] = pid
        return self._payment(pid)

    def _payment(self, pid: str) -> Payment:
        p = self.payments[pid]
        url = f"https://sandbox.test/3ds/{pid}" if p["status"] is PaymentStatus.REQUIRES_ACTION else ""
        return Payment(pid, p["status"], url, amount_minor=p["amount"].amount_minor)

    async def capture(self, payment_id: str, order_id: str) -> Payment:
        self._enter("capture", payment_id, order_id)
        p = self.payments[payment_id]
        if p["status"] is PaymentStatus.AUTHORIZED:
            p.update(status=PaymentStatus.CAPTURED, order_id=order_id, captures=p["captures"] + 1)
        return self._payment(payment_id)

    async def void(self, payment_id: str, reason: str) -> Payment:
        self._enter("void", payment_id, reason)
        p = self.payments[payment_id]
        if p["status"] in (PaymentStatus.AUTHORIZED, PaymentStatus.REQUIRES_ACTION):
            p["status"] = PaymentStatus.VOIDED
        return self._payment(payment_id)

    async def void_by_key(self, authorize_key: str, reason: str) -> Payment | None:
        self._enter("void_by_key", authorize_key, reason)
        pid = self.by_key.get(authorize_key)
        return None if pid is None else await self.void(pid, reason)

    async def refund(self, payment_id: str, idempotency_key: str, reason: str) -> Payment:
        self._enter("refund", payment_id, idempotency_key, reason)
        p = self.payments[payment_id]
        if p["status"] is PaymentStatus.CAPTURED:
            p["status"] = PaymentStatus.REFUNDED
        return self._payment(payment_id)

    async def get(self, payment_id: str, *, refresh: bool = False) -> Payment:
        self._enter("get", payment_id, refresh)
        return self._payment(payment_id)

    def complete_action(self, payment_id: str, *, succeeded: bool = True) -> None:
        """The customer finished (or failed) 3-D Secure at the provider."""
        self.payments[payment_id]["status"] = PaymentStatus.AUTHORIZED if succeeded else PaymentStatus.FAILED

    def statuses(self) -> list[PaymentStatus]:
        return [p["status"] for p in self.payments.values()]


class FakeOrderGateway(_Scripted):
    """Orders idempotent on the checkout session id, like the real service."""

    def __init__(self) -> None:
        super().__init__()
        self.orders: dict[str, dict[str, Any]] = {}  # session id -> order

    async def create_order(self, draft: OrderDraft) -> OrderRef:
        self._enter("create_order", draft)
        if draft.authorized_minor != draft.grand_total_minor:
            raise FailedPrecondition("the authorized amount is not the total", reason=Reason.PAYMENT_AMOUNT_MISMATCH)
        order = self.orders.setdefault(
            draft.checkout_session_id,
            {"order_id": str(uuid.uuid4()), "status": OrderStatus.PENDING_PAYMENT, "draft": draft},
        )
        return OrderRef(order["order_id"], order["status"])

    async def get_order(self, order_id: str) -> OrderRef:
        self._enter("get_order", order_id)
        order = next(o for o in self.orders.values() if o["order_id"] == order_id)
        return OrderRef(order_id, order["status"])

    async def record_payment(self, order_id: str, payment_id: str, outcome: PaymentOutcome, cause: str) -> OrderRef:
        self._enter("record_payment", order_id, payment_id, outcome, cause)
        order = next(o for o in self.orders.values() if o["order_id"] == order_id)
        target = {
            PaymentOutcome.CAPTURED: OrderStatus.CONFIRMED,
            PaymentOutcome.CASH_ON_DELIVERY: OrderStatus.AWAITING_SHIPMENT,
            PaymentOutcome.FAILED: OrderStatus.PAYMENT_FAILED,
        }[outcome]
        if order["status"] is target:
            return OrderRef(order_id, target)  # a repeat of the same outcome changes nothing
        if order["status"] is not OrderStatus.PENDING_PAYMENT:
            raise FailedPrecondition(
                f"order {order_id} is {order['status'].value}",
                reason=Reason.ORDER_STATUS_CONFLICT,
                metadata={"status": order["status"].value},
            )
        order["status"] = {
            PaymentOutcome.CAPTURED: OrderStatus.CONFIRMED,
            PaymentOutcome.CASH_ON_DELIVERY: OrderStatus.AWAITING_SHIPMENT,
            PaymentOutcome.FAILED: OrderStatus.PAYMENT_FAILED,
        }[outcome]
        return OrderRef(order_id, order["status"])


def fake_gateways() -> Gateways:
    return Gateways(
        pricing=FakePricingGateway(),
        inventory=FakeInventoryGateway(),
        promotion=FakePromotionGateway(),
        payment=FakePaymentGateway(),
        order=FakeOrderGateway(),
    )


class FakeIdempotencyStore:
    def __init__(self) -> None:
        self.locks: dict[str, str] = {}
        self.results: dict[str, bytes] = {}
        self.calls = 0  # round trips to the store (begin and end)

    async def acquire(self, key: str) -> str | None:
        if key in self.locks:
            return None
        self.locks[key] = token = uuid.uuid4().hex
        return token

    async def release(self, key: str, token: str) -> None:
        if self.locks.get(key) == token:
            del self.locks[key]

    async def begin(self, key: str) -> tuple[str | None, bytes | None]:
        self.calls += 1
        if (answer := self.results.get(key)) is not None:
            return None, answer
        return await self.acquire(key), None

    async def end(self, key: str, token: str | None, answer: bytes | None) -> None:
        if token is None and answer is None:
            return
        self.calls += 1
        if answer is not None:
            self.results[key] = answer
        if token is not None:
            await self.release(key, token)


# --- data -------------------------------------------------------------------------------------


@dataclass
class _State:
    carts: dict[str, Cart] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)
    compensations: dict[str, FailedCompensation] = field(default_factory=dict)
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    confirm_records: dict[tuple[str, str], ConfirmRecord] = field(default_factory=dict)
    # Session reads by kind: "get" (the whole row, saga decoded) and "get_payment" (the payment event's narrow read).
    session_reads: Counter[str] = field(default_factory=Counter)


class _FakeCarts:
    def __init__(self, state: _State) -> None:
        self._s = state

    async def create(self, cart: Cart) -> Cart:
        now = datetime.now(UTC)
        cart = replace(cart, created_at=now, updated_at=now)
        self._s.carts[cart.cart_id] = cart
        return copy.deepcopy(cart)

    async def get(self, cart_id: str) -> Cart | None:
        return copy.deepcopy(self._s.carts.get(cart_id))

    async def get_head(self, cart_id: str) -> Cart | None:
        cart = self._s.carts.get(cart_id)
        return None if cart is None else replace(cart, items=[])

    async def lock_active(self, cart_id: str) -> Cart | None:
        cart = self._s.carts.get(cart_id)
        if cart is None or cart.status is not CartStatus.ACTIVE:
            return None
        cart.version += 1
        return copy.deepcopy(cart)

    async def put_item_at(self, cart_id: str, item: CartItem, *, version: int) -> Cart | None:
        cart = self._s.carts.get(cart_id)
        if cart is None or cart.status is not CartStatus.ACTIVE or cart.version != version:
            return None
        cart.version += 1
        cart.put(item)
        return replace(cart, items=[])

    async def put_item_or_read(self, cart_id: str, item: CartItem, *, version: int) -> tuple[bool, Cart | None]:
        if await self.put_item_at(cart_id, item, version=version) is None:
            return False, await self.get(cart_id)
        return True, await self.get(cart_id)

    async def upsert_item(self, cart_id: str, item: CartItem) -> None:
        self._s.carts[cart_id].put(item)

    async def delete_item(self, cart_id: str, sku: str) -> bool:
        return self._s.carts[cart_id].drop(sku)

    async def set_prices(self, cart_id: str, prices: dict[str, int], *, version: int) -> int | None:
        cart = self._s.carts[cart_id]
        if cart.version != version:
            return None
        cart.items = [replace(i, unit_price_minor=prices.get(i.sku, i.unit_price_minor)) for i in cart.items]
        cart.version += 1
        return cart.version

    async def transition(
        self, cart_id: str, from_statuses: Collection[CartStatus], to: CartStatus, *, version: int | None = None
    ) -> bool:
        cart = self._s.carts.get(cart_id)
        if cart is None or cart.status not in from_statuses or (version is not None and cart.version != version):
            return False
        cart.status = to
        cart.version += 1
        return True


class _FakeSessions:
    def __init__(self, state: _State) -> None:
        self._s = state

    def _live(self, cart_id: str) -> Session | None:
        return next(
            (
                s
                for s in self._s.sessions.values()
                if s.cart_id == cart_id and s.status in (SessionStatus.OPEN, SessionStatus.CONFIRMING)
            ),
            None,
        )

    def _insert(self, session: Session) -> Session | None:
        if self._live(session.cart_id) is not None:
            return None
        now = datetime.now(UTC)
        self._s.sessions[session.session_id] = replace(copy.deepcopy(session), created_at=now, updated_at=now)
        return copy.deepcopy(self._s.sessions[session.session_id])

    async def create_holding_cart(
        self, session: Session, from_statuses: Collection[CartStatus], *, version: int
    ) -> tuple[bool, Session | None]:
        cart = self._s.carts.get(session.cart_id)
        if cart is None or cart.status not in from_statuses or cart.version != version:
            return False, None
        cart.status = CartStatus.CHECKOUT
        cart.version += 1
        return True, self._insert(session)

    async def get(self, session_id: str) -> Session | None:
        self._s.session_reads["get"] += 1
        return copy.deepcopy(self._s.sessions.get(session_id))

    async def get_payment(self, session_id: str) -> SessionPayment | None:
        self._s.session_reads["get_payment"] += 1
        s = self._s.sessions.get(session_id)
        if s is None:
            return None
        state = s.saga_state
        return SessionPayment(s.status, s.saga_step, state.payment_id, state.payment_status)

    async def get_live_for_cart(self, cart_id: str) -> Session | None:
        return copy.deepcopy(self._live(cart_id))

    async def update_state(
        self,
        session_id: str,
        changes: dict[str, Any],
        preview: Preview | None,
        *,
        unchanged_since: datetime | None = None,
    ) -> Session | None:
        s = self._s.sessions.get(session_id)
        if s is None or s.status is not SessionStatus.OPEN or s.is_expired(datetime.now(UTC)):
            return None
        if unchanged_since is not None and s.updated_at != unchanged_since:
            return None
        for key, value in changes.items():
            setattr(s, key, Address.from_dict(value) if key in ("shipping_address", "billing_address") else value)
        s.preview, s.updated_at = preview, datetime.now(UTC)
        return copy.deepcopy(s)

    async def begin_confirm_with_cart(
        self, session_id: str, idempotency_key: str, fingerprint: str, *, unchanged_since: datetime | None = None
    ) -> tuple[Session, CartStatus | None] | None:
        s = self._s.sessions.get(session_id)
        if s is None or s.status is not SessionStatus.OPEN or s.is_expired(datetime.now(UTC)):
            return None
        if unchanged_since is not None and s.updated_at != unchanged_since:
            return None
        answered = self._s.confirm_records.get((s.customer_id, idempotency_key))
        if answered is not None and answered.session_id == session_id:
            return None
        if any(
            o.customer_id == s.customer_id and o.idempotency_key == idempotency_key and o.session_id != session_id
            for o in self._s.sessions.values()
        ):
            raise AlreadyExists("idempotency key used for another session", reason=Reason.IDEMPOTENCY_KEY_REUSED)
        s.status, s.idempotency_key, s.confirm_fingerprint = SessionStatus.CONFIRMING, idempotency_key, fingerprint
        s.confirm_started_at = s.updated_at = datetime.now(UTC)
        s.saga_step, s.saga_state, s.saga_attempt = SagaStep.VALIDATED, SagaState(), s.saga_attempt + 1
        cart = self._s.carts.get(s.cart_id)
        return copy.deepcopy(s), None if cart is None else cart.status

    def _fenced(self, session_id: str, attempt: int) -> Session | None:
        s = self._s.sessions.get(session_id)
        if s is None or s.status is not SessionStatus.CONFIRMING or s.saga_attempt != attempt:
            return None
        return s

    async def save_progress(self, session_id: str, step: SagaStep, state: SagaState, *, attempt: int) -> bool:
        if (s := self._fenced(session_id, attempt)) is None:
            return False
        s.saga_step, s.saga_state = step, copy.deepcopy(state)
        s.confirm_started_at = datetime.now(UTC)
        return True

    async def renew(self, session_id: str, *, attempt: int) -> bool:
        if (s := self._fenced(session_id, attempt)) is None:
            return False
        s.confirm_started_at = datetime.now(UTC)
        return True

    async def reopen(self, session_id: str, last_error: str, preview: Preview | None, *, attempt: int) -> bool:
        if (s := self._fenced(session_id, attempt)) is None:
            return False
        s.status, s.last_error, s.confirm_fingerprint = SessionStatus.OPEN, last_error, None
        s.preview, s.updated_at = preview, datetime.now(UTC)
        return True

    async def finish(
        self, session_id: str, status: SessionStatus, *, step: SagaStep, state: SagaState, order_id: str = "",
        result: ConfirmResult | None = None, last_error: str = "", attempt: int, end: SessionEnd | None = None,
    ) -> bool:  # fmt: skip
        if (s := self._fenced(session_id, attempt)) is None:
            return False
        s.status, s.saga_step, s.saga_state = status, step, copy.deepcopy(state)
        s.order_id, s.result, s.last_error, s.confirm_fingerprint = order_id, result, last_error, None
        if end is not None:
            if end.kept is not None:
                self._s.confirm_records[(end.kept.customer_id, end.kept.idempotency_key)] = end.kept.record
            for item in end.compensations:
                await _FakeCompensations(self._s).add(item)
            moved = await _FakeCarts(self._s).transition(end.cart_id, {CartStatus.CHECKOUT}, end.cart_to)
            written = (list(end.if_cart_moved) if moved else []) + list(end.events)
            self._s.events.extend((e.event_type, e.aggregate_id, e.data) for e in written)
        return True

    async def claim_stuck(
        self, older_than_seconds: float, limit: int, *, session_id: str | None = None
    ) -> list[Session]:
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        stuck = [
            s
            for s in self._s.sessions.values()
            if s.status is SessionStatus.CONFIRMING
            and s.confirm_started_at is not None
            and s.confirm_started_at < cutoff
            and session_id in (None, s.session_id)
        ][:limit]
        for s in stuck:
            s.confirm_started_at = datetime.now(UTC)
            s.saga_attempt += 1
        return copy.deepcopy(stuck)

    async def await_payment(
        self, session_id: str, *, state: SagaState, order_id: str, result: ConfirmResult, window_seconds: int,
        attempt: int,
    ) -> bool:  # fmt: skip
        if (s := self._fenced(session_id, attempt)) is None:
            return False
        s.status, s.saga_step, s.saga_state = (
            SessionStatus.AWAITING_PAYMENT,
            SagaStep.AWAIT_PAYMENT,
            copy.deepcopy(state),
        )
        s.order_id, s.result, s.confirm_fingerprint = order_id, result, None
        s.expires_at = datetime.now(UTC) + timedelta(seconds=window_seconds)
        s.updated_at = datetime.now(UTC)
        return True

    async def claim_awaiting(self, session_id: str, step: SagaStep, state: SagaState) -> Session | None:
        s = self._s.sessions.get(session_id)
        if s is None or s.status is not SessionStatus.AWAITING_PAYMENT:
            return None
        s.status, s.saga_step, s.saga_state = SessionStatus.CONFIRMING, step, copy.deepcopy(state)
        s.confirm_started_at = datetime.now(UTC)
        s.saga_attempt += 1
        return copy.deepcopy(s)

    async def awaiting_due(self, poll_after_seconds: int, limit: int) -> list[Session]:
        now = datetime.now(UTC)
        cutoff = now - timedelta(seconds=poll_after_seconds)
        due = [
            s
            for s in self._s.sessions.values()
            if s.status is SessionStatus.AWAITING_PAYMENT
            and ((s.updated_at is not None and s.updated_at < cutoff) or s.expires_at <= now)
        ][:limit]
        for s in due:
            s.updated_at = now
        return copy.deepcopy(due)

    async def expire_due(self, limit: int, *, cart_id: str | None = None) -> list[Session]:
        now = datetime.now(UTC)
        due = [
            s
            for s in self._s.sessions.values()
            if s.status is SessionStatus.OPEN and s.is_expired(now) and (cart_id is None or s.cart_id == cart_id)
        ][:limit]
        for s in due:
            s.status = SessionStatus.EXPIRED
        return copy.deepcopy(due)


class _FakeCompensations:
    def __init__(self, state: _State) -> None:
        self._s = state

    async def add(self, item: NewCompensation) -> str:
        cid = str(uuid.uuid4())
        self._s.compensations[cid] = FailedCompensation(
            cid, item.session_id, item.operation, item.payload, 0, "pending", item.error,
            datetime.now(UTC) + timedelta(seconds=BACKOFF_SCHEDULE_SECONDS[0]),
        )  # fmt: skip
        return cid

    async def claim_due(self, limit: int, lease_seconds: int) -> list[FailedCompensation]:
        now = datetime.now(UTC)
        due = [
            c
            for c in self._s.compensations.values()
            if c.status == "pending" and c.next_attempt_at is not None and c.next_attempt_at <= now
        ][:limit]
        leased = [replace(c, next_attempt_at=now + timedelta(seconds=lease_seconds)) for c in due]
        for c in leased:
            self._s.compensations[c.id] = c
        return leased

    def _held(self, item: FailedCompensation) -> FailedCompensation | None:
        c = self._s.compensations.get(item.id)
        return c if c is not None and c.status == "pending" and c.next_attempt_at == item.next_attempt_at else None

    async def mark_done(self, item: FailedCompensation) -> bool:
        if (c := self._held(item)) is None:
            return False
        self._s.compensations[c.id] = replace(c, status="done")
        return True

    async def reschedule(self, item: FailedCompensation, delay_seconds: float, error: str) -> bool:
        if (c := self._held(item)) is None:
            return False
        self._s.compensations[c.id] = replace(
            c, attempts=c.attempts + 1, last_error=error,
            next_attempt_at=datetime.now(UTC) + timedelta(seconds=delay_seconds),
        )  # fmt: skip
        return True

    async def mark_dead(self, item: FailedCompensation, error: str) -> bool:
        if (c := self._held(item)) is None:
            return False
        self._s.compensations[c.id] = replace(c, attempts=c.attempts + 1, status="dead", last_error=error)
        return True


class _FakeConfirmRecords:
    def __init__(self, state: _State) -> None:
        self._s = state

    async def get(self, customer_id: str, idempotency_key: str, max_age_seconds: int) -> ConfirmRecord | None:
        return self._s.confirm_records.get((customer_id, idempotency_key))

    async def put(self, customer_id: str, idempotency_key: str, record: ConfirmRecord) -> None:
        self._s.confirm_records[(customer_id, idempotency_key)] = record


class _FakeTx:
    def __init__(self, state: _State) -> None:
        self.carts = _FakeCarts(state)
        self.sessions = _FakeSessions(state)
        self.compensations = _FakeCompensations(state)
        self.confirm_records = _FakeConfirmRecords(state)
        self._state = state

    async def add_event(self, event_type: str, aggregate_id: str, data: dict[str, Any]) -> None:
        self._state.events.append((event_type, aggregate_id, data))


class FakeUnitOfWork:
    """All repositories over one in-memory state; a block that raises leaves the state as it was."""

    def __init__(self) -> None:
        self.state = _State()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_FakeTx]:
        snapshot = copy.deepcopy(self.state)
        try:
            yield _FakeTx(self.state)
        except BaseException:
            self.state.carts, self.state.sessions = snapshot.carts, snapshot.sessions
            self.state.compensations, self.state.events = snapshot.compensations, snapshot.events
            self.state.confirm_records = snapshot.confirm_records
            raise

    def read(self) -> contextlib.AbstractAsyncContextManager[_FakeTx]:
        return self.transaction()

    def single(self) -> contextlib.AbstractAsyncContextManager[_FakeTx]:
        return self.transaction()

    def statement(self) -> contextlib.AbstractAsyncContextManager[_FakeTx]:
        return self.transaction()

    def compensations(self, status: str = "pending") -> list[FailedCompensation]:
        return [c for c in self.state.compensations.values() if c.status == status]

    def event_types(self) -> list[str]:
        return [e[0] for e in self.state.events]
