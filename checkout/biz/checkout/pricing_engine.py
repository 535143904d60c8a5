"""Order totals from fresh data: prices, shipping, promotions and tax.

With no promotion code to apply, one QuoteOrder call answers prices, shipping and tax together.

With codes and a shipment, promotions are asked first, with the prices the session holds (StartCheckout's, or
the last refresh's) and the shipping last quoted for the same shipment in this process (on a miss, one
QuoteShipping call quotes it); then one QuoteOrder call answers the fresh prices and shipping and the tax of
the lines and shipping less the discounts. When the fresh prices (and category, brand) and shipping are those
promotions was asked with, promotions and tax got exactly the requests the separate calls below send, so the
totals are theirs: 2 calls instead of 4. When they differ, promotions is asked again with the fresh ones and
CalculateTax taxes the discounted lines, exactly as below (4 calls, 5 on a shipping miss).

The separate calls (codes without a shipment, or ``optimistic=False``): prices (GetProducts, one batch) and
shipping (QuoteShipping, one parcel per warehouse, from the warehouses that hold the reservations) are
fetched in parallel; promotions are validated with lines built from the same GetProducts answer (no
per-item calls); tax is computed on the discounted lines plus shipping. Everything runs under one deadline,
so a slow dependency can't stall a checkout. Nothing is committed here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from checkout.biz.ports import PricingGateway, PromotionGateway
from checkout.model.catalog import (
    Address,
    Parcel,
    Product,
    ProductsResult,
    PromotionLine,
    PromotionResult,
    ReserveLine,
    ShippingQuote,
    TaxLine,
)
from checkout.model.session import Discount, Preview, SessionLine
from kernel.errors import FailedPrecondition, Reason, Unavailable
from kernel.money import Money, allocate

__all__ = ["PricingEngine", "PricingInput"]


@dataclass(frozen=True)
class PricingInput:
    currency_code: str
    customer_id: str
    lines: Sequence[SessionLine]
    shipping_address: Address | None = None
    shipping_method: str = ""
    promotion_codes: Sequence[str] = field(default_factory=tuple)
    # The order's email: a once-per-customer coupon counts its uses too (guests get a new customer id each time).
    customer_email: str = ""


# Shipments whose last shipping quote the engine keeps as its next guess (two ints each).
SHIPMENTS_KEPT = 4096


class PricingEngine:
    """``optimistic``: price a session with codes from the prices it holds, checked by one QuoteOrder (above);
    False keeps the separate calls everywhere (the reference the tests compare the optimistic path with)."""

    def __init__(
        self,
        pricing: PricingGateway,
        promotion: PromotionGateway,
        deadline_seconds: float,
        *,
        optimistic: bool = True,
    ) -> None:
        self._pricing = pricing
        self._promotion = promotion
        self._deadline = deadline_seconds
        self._optimistic = optimistic
        # Shipment (its hash: no address kept) -> the shipping pricing last quoted for it. Only a guess, always
        # checked against a fresh quote, so neither a collision nor a rate changed since can change a total.
        self._shipping_seen: dict[int, int] = {}

    async def compute(self, data: PricingInput) -> Preview:
        try:
            async with asyncio.timeout(self._deadline):
                return await self._compute(data)
        except TimeoutError:
            raise Unavailable(f"computing totals took longer than {self._deadline}s; retry") from None

    async def _compute(self, data: PricingInput) -> Preview:
        ships = data.shipping_address is not None and bool(data.shipping_method)
        if ships and not data.promotion_codes:
            return await self._undiscounted(data)
        if ships and self._optimistic:
            return await self._from_held_prices(data)
        skus = list(dict.fromkeys(ln.sku for ln in data.lines))
        try:
            async with asyncio.TaskGroup() as group:
                products_task = group.create_task(self._pricing.get_products(skus, data.currency_code))
                shipping_task = group.create_task(self._quote_shipping(data)) if ships else None
        except BaseExceptionGroup as failed:
            # The caller wants the dependency's own error (OUT_OF_STOCK, UNAVAILABLE…), not a group.
            raise failed.exceptions[0] from None
        quoted = shipping_task.result() if shipping_task is not None else None
        return await self._discounted(data, products_task.result(), quoted)

    async def _from_held_prices(self, data: PricingInput) -> Preview:
        """Promotions on the held prices and the guessed shipping, then one QuoteOrder that checks both (module
        docstring); the separate calls' second half when the check fails."""
        assert data.shipping_address is not None
        currency = data.currency_code
        shipment = _shipment(data)
        guessed = self._shipping_seen.get(shipment)
        if guessed is None:
            guessed = (await self._quote_shipping(data)).total.amount_minor
        held = list(data.lines)
        promo = await self._promotion.validate(
            list(data.promotion_codes), promotion_lines(held, currency), Money(currency, guessed), currency,
            data.customer_id, customer_email=data.customer_email,
        )  # fmt: skip
        subtotal = sum(ln.line_total_minor for ln in held)
        item_discount, shipping_discount = split_discount(promo, subtotal, guessed)
        quote = await self._pricing.quote_order(
            [ReserveLine(ln.sku, ln.quantity) for ln in held],
            parcels(held),
            data.shipping_address,
            data.shipping_method,
            currency,
            line_discounts=allocate(item_discount, [ln.line_total_minor for ln in held]),
            shipping_discount=shipping_discount,
        )
        _refuse_missing(quote.products)
        assert quote.shipping is not None and quote.tax is not None
        shipping = quote.shipping.amount_minor
        self._remember(shipment, shipping)
        lines = [_refresh(ln, quote.products.products[ln.sku]) for ln in held]
        if shipping != guessed or not _same_for_promotion(held, lines):
            # Promotions was asked about other prices or shipping than pricing's now: ask again with these.
            return await self._discounted(data, quote.products, ShippingQuote(quote.shipping, quote.delivery))
        return Preview(
            currency_code=currency,
            lines=lines,
            subtotal_minor=subtotal,
            discount_minor=item_discount + shipping_discount,
            shipping_minor=shipping,
            tax_minor=quote.tax.amount_minor,
            discounts=discounts(promo, shipping_discount),
            rejected=[(r.code, r.reason, r.message) for r in promo.rejected],
            delivery=quote.delivery,
        )

    def _remember(self, shipment: int, shipping_minor: int) -> None:
        if shipment not in self._shipping_seen and len(self._shipping_seen) >= SHIPMENTS_KEPT:
            del self._shipping_seen[next(iter(self._shipping_seen))]  # the oldest
        self._shipping_seen[shipment] = shipping_minor

    async def _discounted(self, data: PricingInput, found: ProductsResult, quoted: ShippingQuote | None) -> Preview:
        """The totals from fresh products and shipping (None: nothing ships): promotions on the fresh lines, then
        tax on the discounted lines and shipping."""
        currency = data.currency_code
        ships = quoted is not None
        _refuse_missing(found)
        lines = [_refresh(ln, found.products[ln.sku]) for ln in data.lines]
        subtotal = sum(ln.line_total_minor for ln in lines)
        shipping = quoted.total.amount_minor if quoted is not None else 0

        promo = PromotionResult()
        codes = list(data.promotion_codes)
        if codes:
            promo = await self._promotion.validate(
                codes, promotion_lines(lines, currency), Money(currency, shipping), currency, data.customer_id,
                customer_email=data.customer_email,
            )  # fmt: skip
        item_discount, shipping_discount = split_discount(promo, subtotal, shipping)

        tax = 0
        if ships and data.shipping_address is not None:
            shares = allocate(item_discount, [ln.line_total_minor for ln in lines])
            tax_lines = [
                TaxLine(ln.sku, ln.tax_class, Money(currency, ln.line_total_minor - share))
                for ln, share in zip(lines, shares, strict=True)
            ]
            tax = (
                await self._pricing.calculate_tax(
                    tax_lines, data.shipping_address, Money(currency, shipping - shipping_discount), currency
                )
            ).amount_minor
        return Preview(
            currency_code=currency,
            lines=lines,
            subtotal_minor=subtotal,
            discount_minor=item_discount + shipping_discount,
            shipping_minor=shipping,
            tax_minor=tax,
            discounts=discounts(promo, shipping_discount),
            rejected=[(r.code, r.reason, r.message) for r in promo.rejected],
            delivery=quoted.delivery if quoted is not None else None,
        )

    async def _undiscounted(self, data: PricingInput) -> Preview:
        """The same totals as below with no discount (tax on the full line totals), from one call."""
        assert data.shipping_address is not None
        quote = await self._pricing.quote_order(
            [ReserveLine(ln.sku, ln.quantity) for ln in data.lines],
            parcels(data.lines),
            data.shipping_address,
            data.shipping_method,
            data.currency_code,
        )
        _refuse_missing(quote.products)
        assert quote.shipping is not None and quote.tax is not None
        lines = [_refresh(ln, quote.products.products[ln.sku]) for ln in data.lines]
        return Preview(
            currency_code=data.currency_code,
            lines=lines,
            subtotal_minor=sum(ln.line_total_minor for ln in lines),
            discount_minor=0,
            shipping_minor=quote.shipping.amount_minor,
            tax_minor=quote.tax.amount_minor,
            discounts=[],
            rejected=[],
            delivery=quote.delivery,
        )

    async def _quote_shipping(self, data: PricingInput) -> ShippingQuote:
        assert data.shipping_address is not None
        return await self._pricing.quote_shipping(
            parcels(data.lines), data.shipping_address, data.shipping_method, data.currency_code
        )


def _shipment(data: PricingInput) -> int:
    """What a shipping quote depends on, hashed."""
    return hash((tuple(parcels(data.lines)), data.shipping_address, data.shipping_method, data.currency_code))


def _same_for_promotion(held: Sequence[SessionLine], fresh: Sequence[SessionLine]) -> bool:
    """Whether promotion lines, subtotal and discount shares built from ``held`` are those built from ``fresh``."""
    return all(
        (h.unit_price_minor, h.category, h.brand) == (f.unit_price_minor, f.category, f.brand)
        for h, f in zip(held, fresh, strict=True)
    )


def _refuse_missing(found: ProductsResult) -> None:
    if found.missing_skus:
        raise FailedPrecondition(
            f"no longer sold: {', '.join(found.missing_skus)}",
            reason=Reason.OUT_OF_STOCK,
            metadata={"skus": ",".join(found.missing_skus)},
        )


def _refresh(line: SessionLine, product: Product) -> SessionLine:
    return replace(
        line,
        name=product.name,
        unit_price_minor=product.unit_price.amount_minor,
        weight_grams=product.weight_grams,
        tax_class=product.tax_class,
        category=product.category,
        brand=product.brand,
    )


def parcels(lines: Sequence[SessionLine]) -> list[Parcel]:
    """One parcel per warehouse, shipped from that warehouse's address."""
    by_warehouse: dict[str, Parcel] = {}
    for ln in lines:
        weight = ln.weight_grams * ln.quantity
        known = by_warehouse.get(ln.warehouse_id)
        by_warehouse[ln.warehouse_id] = (
            Parcel(ln.warehouse_id, ln.origin, weight)
            if known is None
            else replace(known, weight_grams=known.weight_grams + weight)
        )
    return list(by_warehouse.values())


def promotion_lines(lines: Sequence[SessionLine], currency: str) -> list[PromotionLine]:
    """One line per sku (a sku split across warehouses is still one line for the promotion)."""
    merged: dict[str, PromotionLine] = {}
    for ln in lines:
        known = merged.get(ln.sku)
        merged[ln.sku] = (
            PromotionLine(ln.sku, ln.category, ln.brand, ln.quantity, Money(currency, ln.unit_price_minor))
            if known is None
            else replace(known, quantity=known.quantity + ln.quantity)
        )
    return list(merged.values())


def discounts(promo: PromotionResult, shipping_discount: int) -> list[Discount]:
    """Per-code amounts that add up to the discount total (free shipping counts once, as the shipping)."""
    out: list[Discount] = []
    shipping_left = shipping_discount
    for applied in promo.applied:
        if applied.free_shipping:
            out.append(Discount(applied.code, shipping_left))
            shipping_left = 0
        else:
            out.append(Discount(applied.code, applied.discount.amount_minor))
    return out


def split_discount(promo: PromotionResult, subtotal: int, shipping: int) -> tuple[int, int]:
    """(discount on items, discount on shipping): items never go below zero, free shipping is the shipping total."""
    item = sum(a.discount.amount_minor for a in promo.applied if not a.free_shipping)
    return max(0, min(item, subtotal)), shipping if promo.free_shipping else 0
