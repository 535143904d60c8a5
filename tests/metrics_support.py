"""Scraping ``/metrics`` in tests: the samples of one or more endpoints, and the names a scrape exposes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

# The sample names a family without samples yet (a labelled metric nobody moved) will have, by its type.
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum"),
    "gauge": ("",),
    "untyped": ("",),
    "info": ("_info",),
}


@dataclass
class Scrape:
    """What one or more scrapes exposed: every sample, and every metric name (including families that have
    no samples yet)."""

    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    names: set[str] = field(default_factory=set)

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels`` (0 when there is none)."""
        return sum(v for n, ls, v in self.samples if n == name and all(ls.get(k) == x for k, x in labels.items()))

    def label_values(self, name: str, label: str) -> set[str]:
        return {ls[label] for n, ls, _ in self.samples if n == name and label in ls}


def parse(text: str, into: Scrape | None = None) -> Scrape:
    scrape = into or Scrape()
    for family in text_string_to_metric_families(text):
        scrape.names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        for sample in family.samples:
            scrape.names.add(sample.name)
            scrape.samples.append((sample.name, dict(sample.labels), sample.value))
    return scrape


async def scrape(urls: Iterable[str], token: str | None = None) -> Scrape:
    """GET each URL (the replicas of one service, say) and parse them all into one Scrape; any non-200 fails."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    out = Scrape()
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        for url in urls:
            resp = await http.get(url, headers=headers)
            assert resp.status_code == 200, (url, resp.status_code, resp.text[:300])
            assert resp.headers["content-type"].startswith("text/plain"), resp.headers["content-type"]
            parse(resp.text, out)
    return out
