"""CatalogMirror: AddCartItem's products from checkout's copy of pricing's catalog, kept by SyncProducts."""

from __future__ import annotations

import logging

import pytest

from checkout.adapter.catalog_mirror import IDLE_SECONDS, CatalogMirror
from checkout.model.catalog import CatalogEntry, CatalogPage
from kernel.errors import Unavailable
from tests.checkout.unit.test_recent_products import Catalog, Clock, price

MAX_AGE = 5.0


class Feed:
    """SyncProducts over a :class:`Catalog`: the products written since a token, two to a page."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.version = 0
        self.written: dict[str, int] = {}
        self.asked: list[tuple[str, str]] = []
        # Popped one per call: an exception is raised, None answers.
        self.fail: list[BaseException | None] = []

    def write(self, sku: str, amount: int, currency: str = "USD") -> None:
        self.catalog.prices[(sku, currency)] = amount
        self.version += 1
        self.written[sku] = self.version

    async def sync_products(self, sync_token: str, page_token: str) -> CatalogPage:
        self.asked.append((sync_token, page_token))
        if self.fail and (planned := self.fail.pop(0)) is not None:
            raise planned
        since = int(sync_token or 0)
        changed = sorted(sku for sku, version in self.written.items() if version > since)
        start = int(page_token or 0)
        entries = [
            CatalogEntry(sku, f"Product {sku}", "c", "b", 100, "standard", {
                currency: amount for (s, currency), amount in self.catalog.prices.items() if s == sku
            })
            for sku in changed[start : start + 2]
        ]  # fmt: skip
        if start + 2 < len(changed):
            return CatalogPage(entries, str(start + 2), "")
        return CatalogPage(entries, "", str(self.version))


def mirror_of(*products: tuple[str, int], max_entries: int = 100) -> tuple[CatalogMirror, Feed, Catalog, Clock]:
    catalog, clock = Catalog(), Clock()
    feed = Feed(catalog)
    for sku, amount in products:
        feed.write(sku, amount)
    return CatalogMirror(feed, catalog, MAX_AGE, max_entries=max_entries, clock=clock), feed, catalog, clock


async def test_after_a_sync_every_product_is_answered_from_the_copy_without_asking_pricing() -> None:
    mirror, feed, catalog, _ = mirror_of(("A", 100), ("B", 200), ("C", 300))
    assert await mirror.sync_once() is False  # the worker waits sync_seconds before the next
    assert feed.asked == [("", ""), ("", "2")]  # the whole catalog, every page
    for sku, amount in (("A", 100), ("B", 200), ("C", 300)):
        assert price(await mirror.get_products([sku], "USD"), sku) == amount
    both = await mirror.get_products(["A", "C"], "USD")
    assert (price(both, "A"), price(both, "C"), both.missing_skus) == (100, 300, [])
    assert catalog.calls == []


async def test_the_next_sync_asks_only_for_what_changed_since_and_shows_it() -> None:
    mirror, feed, _, _ = mirror_of(("A", 100), ("B", 200))
    await mirror.sync_once()
    feed.write("A", 150)
    feed.write("D", 400)
    assert price(await mirror.get_products(["A"], "USD"), "A") == 100  # until the next sync
    await mirror.sync_once()
    assert feed.asked[-1] == ("2", "")
    assert price(await mirror.get_products(["A"], "USD"), "A") == 150
    assert price(await mirror.get_products(["D"], "USD"), "D") == 400


async def test_before_the_first_sync_and_once_the_copy_is_older_than_max_age_pricing_answers() -> None:
    mirror, feed, catalog, clock = mirror_of(("A", 100))
    assert not mirror.fresh()
    assert price(await mirror.get_products(["A"], "USD"), "A") == 100
    assert catalog.calls == [(("A",), "USD")]

    await mirror.sync_once()
    feed.write("A", 120)  # pricing changed it; the syncs from now on fail
    feed.fail = [Unavailable("pricing is down")] * 3
    clock.now += MAX_AGE - 0.1
    assert price(await mirror.get_products(["A"], "USD"), "A") == 100  # under max_age old: the copy
    assert await mirror.sync_once() is False
    clock.now += 0.1
    assert not mirror.fresh()
    assert price(await mirror.get_products(["A"], "USD"), "A") == 120  # no price older than max_age
    assert catalog.calls[-1] == (("A",), "USD")

    feed.fail = []
    await mirror.sync_once()
    calls = len(catalog.calls)
    assert price(await mirror.get_products(["A"], "USD"), "A") == 120
    assert len(catalog.calls) == calls


async def test_what_the_copy_cannot_price_is_asked_of_pricing_and_only_that() -> None:
    mirror, feed, catalog, _ = mirror_of(("A", 100))
    await mirror.sync_once()
    feed.write("NEW", 500)  # created since the last sync
    mixed = await mirror.get_products(["A", "NEW", "NOPE"], "USD")
    assert (price(mixed, "A"), price(mixed, "NEW"), mixed.missing_skus) == (100, 500, ["NOPE"])
    assert catalog.calls == [(("NEW", "NOPE"), "USD")]
    # No price in the cart's currency: pricing says what it says of that (missing), the copy never decides it.
    eur = await mirror.get_products(["A"], "EUR")
    assert eur.missing_skus == ["A"]
    assert catalog.calls[-1] == (("A",), "EUR")


async def test_a_sync_that_fails_halfway_starts_again_from_the_same_token_and_an_outage_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mirror, feed, _, clock = mirror_of(("A", 100), ("B", 200), ("C", 300))
    await mirror.sync_once()
    for sku in ("A", "B", "C"):
        feed.write(sku, 999)
    down = Unavailable("pricing is down")
    feed.fail = [None, down, down]  # the first page answers, the second fails, then the next sync's first
    clock.now += 1
    with caplog.at_level(logging.INFO, logger="kassa.checkout.catalog"):
        assert await mirror.sync_once() is False
        assert feed.asked[-2:] == [("3", ""), ("3", "2")]
        assert mirror.age() == 1  # still the age of the last complete sync
        assert price(await mirror.get_products(["A"], "USD"), "A") == 999  # the page it got is newer: kept
        await mirror.sync_once()
        assert feed.asked[-1] == ("3", "")
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert "pricing is down" in caplog.text
        await mirror.sync_once()
        assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    assert feed.asked[-2:] == [("3", ""), ("3", "2")]
    assert mirror.age() == 0
    assert price(await mirror.get_products(["C"], "USD"), "C") == 999


async def test_a_catalog_larger_than_max_entries_is_not_kept(caplog: pytest.LogCaptureFixture) -> None:
    mirror, feed, catalog, _ = mirror_of(("A", 100), ("B", 200), ("C", 300), max_entries=2)
    with caplog.at_level(logging.WARNING, logger="kassa.checkout.catalog"):
        await mirror.sync_once()
    assert "more than 2 products" in caplog.text
    assert not mirror.fresh()
    assert price(await mirror.get_products(["A"], "USD"), "A") == 100
    assert catalog.calls == [(("A",), "USD")]
    asked = len(feed.asked)
    await mirror.sync_once()
    assert len(feed.asked) == asked  # given up: no more syncs


def test_it_syncs_often_enough_to_stay_fresh_through_a_failed_sync() -> None:
    feed = Feed(Catalog())
    assert CatalogMirror(feed, feed.catalog, 5).sync_seconds == 1.0
    assert CatalogMirror(feed, feed.catalog, 1.5).sync_seconds == 0.5
    with pytest.raises(ValueError):
        CatalogMirror(feed, feed.catalog, 0)


async def test_the_copy_stops_syncing_while_no_cart_asks_and_catches_up_after() -> None:
    mirror, feed, catalog, clock = mirror_of(("A", 100))
    await mirror.sync_once()
    clock.now += IDLE_SECONDS + 1
    feed.write("A", 130)
    asked = len(feed.asked)
    await mirror.sync_once()
    assert len(feed.asked) == asked  # idle: nothing asked of pricing
    # The first cart after the pause: the copy is stale, so the fallback answers; the next sync catches up.
    assert price(await mirror.get_products(["A"], "USD"), "A") == 130
    assert catalog.calls == [(("A",), "USD")]
    await mirror.sync_once()
    assert feed.asked[-1] == ("1", "")
    assert price(await mirror.get_products(["A"], "USD"), "A") == 130
    assert len(catalog.calls) == 1
