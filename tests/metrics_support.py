"""Scraping ``/metrics`` in tests: the samples of one or more endpoints, and the names a scrape exposes."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import yaml
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


# -- deploy/observability: the PromQL of the dashboard and the alert rules ------------------------------------

OBSERVABILITY = Path(__file__).resolve().parents[1] / "deploy" / "observability"
# Series Prometheus makes itself for each target, not found in any /metrics.
SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
# Grafana's variables, replaced by something PromQL parses.
_GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$grpc_service": ".*"}


def observability_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard target and alert rule in deploy/observability."""
    out: list[tuple[str, str]] = []
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in _GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            out.append((f"dashboard panel {panel['title']!r}", expr))
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            out.append((f"alert {rule['alert']}", rule["expr"]))
    return out


def promql_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects (raises ValueError when it is no valid PromQL)."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            return
        for attribute in ("lhs", "rhs", "expr", "param", "vector_selector", "args"):
            child = getattr(node, attribute, None)
            for item in child if isinstance(child, list | tuple) else [child]:
                if item is not None and not isinstance(item, str | int | float):
                    walk(item)

    walk(promql_parser.parse(expr))
    return names
