"""A copy of pricing's catalog in checkout: AddCartItem with no pricing call at all.

A cart shows each line at the price of the moment it was added; StartCheckout and ConfirmCheckout price every
line afresh (and ConfirmCheckout refuses a total the customer did not see), so a cart line may carry a price
up to ``max_age_seconds`` old and nothing is ever charged at it, as with :mod:`checkout.adapter.recent_products`.
That cache helps only with products many carts add at once; this copy answers for the whole catalog.

:meth:`CatalogMirror.sync_once` (a worker runs it every ``sync_seconds``) asks pricing for what changed since
the last sync (PricingService.SyncProducts, every page; the whole catalog the first time), usually nothing; it
stops syncing while no cart asks for a product. The copy answers only while its last complete sync began less
than ``max_age_seconds`` ago, and only for skus it holds with a price in the cart's currency. Anything else (a
product created since the last sync, an unknown sku, a copy gone stale because pricing can't be reached or
nothing asked for a while, a catalog past ``max_entries``) is asked of ``fallback`` as before, so the copy
never answers what pricing would not have answered a moment ago.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

from prometheus_client import Counter, Gauge

from checkout.biz.ports import CatalogFeed, ProductLookup
from checkout.model.catalog import CatalogEntry, Product, ProductsResult

__all__ = ["CATALOG_COPY_AGE", "CATALOG_LOOKUPS", "CatalogMirror"]

log = logging.getLogger("kassa.checkout.catalog")

CATALOG_LOOKUPS = Counter(
    "kassa_checkout_catalog_lookups",
    "Products carts asked for, by what answered: checkout's copy of the catalog, or the lookup behind it (the copy "
    "stale, the product new since the last sync or unknown)",
    ["answered_by"],
)
CATALOG_COPY_AGE = Gauge(
    "kassa_checkout_catalog_copy_age_seconds",
    "Seconds since the last complete sync of checkout's copy of the catalog began (+Inf before the first)",
)

# Ten times the bench's catalog; each entry is a few hundred bytes.
MAX_ENTRIES = 500_000
# No cart asked for a product this long: the copy stops syncing (an idle mesh sleeps) until one does.
IDLE_SECONDS = 60.0


class CatalogMirror:
    """``get_products`` from a copy of the catalog kept by :meth:`sync_once`, else from ``fallback``."""

    def __init__(
        self,
        feed: CatalogFeed,
        fallback: ProductLookup,
        max_age_seconds: float,
        *,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_age_seconds <= 0 or max_entries <= 0:
            raise ValueError("max_age_seconds and max_entries must be positive")
        self._feed = feed
        self._fallback = fallback
        self._max_age = max_age_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, CatalogEntry] = {}
        self._sync_token = ""
        # When the last complete sync began (clock()); None before the first or once the copy gave up.
        self._synced_at: float | None = None
        self._given_up = False
        self._failing = False
        self._last_asked = clock()
        self._from_copy = CATALOG_LOOKUPS.labels("copy")
        self._from_fallback = CATALOG_LOOKUPS.labels("fallback")
        CATALOG_COPY_AGE.set_function(self.age)

    @property
    def sync_seconds(self) -> float:
        """How often to sync: often enough that a sync that fails once leaves the copy still fresh."""
        return min(1.0, self._max_age / 3)

    def age(self) -> float:
        """Seconds since the last complete sync began; infinite before the first (or once the copy gave up)."""
        return math.inf if self._synced_at is None else self._clock() - self._synced_at

    def fresh(self) -> bool:
        return self.age() < self._max_age

    async def get_products(self, skus: Sequence[str], currency_code: str) -> ProductsResult:
        self._last_asked = self._clock()
        known: dict[str, Product] = {}
        wanted: list[str] = []
        fresh = self.fresh()
        for sku in skus:
            entry = self._entries.get(sku) if fresh else None
            product = entry.priced(currency_code) if entry is not None else None
            if product is None:
                wanted.append(sku)
            else:
                known[sku] = product
        self._from_copy.inc(len(known))
        if not wanted:
            return ProductsResult(products=known, missing_skus=[])
        self._from_fallback.inc(len(wanted))
        asked = await self._fallback.get_products(wanted, currency_code)
        return ProductsResult(products={**known, **asked.products}, missing_skus=list(asked.missing_skus))

    async def sync_once(self) -> bool:
        """One sync, every page of it; False: wait ``sync_seconds`` for the next. A failure is logged once per
        outage and leaves the copy as fresh as its last complete sync (the next sync starts over). Skipped while no cart
        asked for a product for ``IDLE_SECONDS``: the first that does then goes to the fallback, and the next
        sync brings the copy up to date."""
        began = self._clock()
        if self._given_up or (self._synced_at is not None and began - self._last_asked > IDLE_SECONDS):
            return False
        token, page_token = self._sync_token, ""
        while True:
            try:
                page = await self._feed.sync_products(token, page_token)
            except Exception:
                self._failed()
                return False
            for entry in page.entries:
                self._entries[entry.sku] = entry
            if len(self._entries) > self._max_entries:
                self._give_up()
                return False
            if not page.next_page_token:
                break
            page_token = page.next_page_token
        self._sync_token = page.next_sync_token
        self._synced_at = began
        if self._failing:
            log.info("checkout's copy of the catalog is synced again")
            self._failing = False
        return False

    def _failed(self) -> None:
        """Said once per outage, not every second: carts are priced by the fallback once the copy is stale."""
        if not self._failing:
            log.warning(
                "syncing checkout's copy of the catalog failed; it is tried again every %.1f s, and AddCartItem asks "
                "pricing once the copy is %.0f s old",
                self.sync_seconds,
                self._max_age,
                exc_info=True,
            )
        self._failing = True

    def _give_up(self) -> None:
        log.warning(
            "pricing's catalog holds more than %d products: checkout keeps no copy of it, and AddCartItem asks "
            "pricing for each product as before",
            self._max_entries,
        )
        self._given_up = True
        self._entries.clear()
        self._synced_at = None
