"""deploy/observability and the metrics ports of deploy/k8s and compose.yaml, checked offline.

The dashboard is valid JSON, the alert rules and scrape configs valid YAML; every PromQL expression parses
(promql-parser, the Rust parser of GreptimeDB: no promtool wheel exists) and names only metrics that this code
registers. tests/e2e/test_metrics.py checks the same names against the /metrics of a running mesh.
"""

from __future__ import annotations

import importlib
import json
import re
from typing import Any

import pytest
import yaml
from deployment.test_k8s import KUSTOMIZATIONS, render
from metrics_support import OBSERVABILITY, SYNTHETIC, observability_queries, parse, promql_names
from prometheus_client import REGISTRY, generate_latest

from infra.config import DATABASE_SERVICES, DEFAULT_ADDRS
from infra.metrics import METRICS_PORT_OFFSET

SERVICES = DATABASE_SERVICES  # the seven gRPC services
_DURATION = re.compile(r"^\d+[smhdw]$")
# Every module that defines metrics (each process imports its own; here all of them go into one registry).
METRIC_MODULES = (
    "infra.metrics", "gateway.metrics", "checkout.adapter.funnel", "checkout.data.gauges", "payment.data.outcomes",
    "warehouse.worker.drift", "warehouse.worker.sweeper", "notification.data.gauges",
)  # fmt: skip


def _port(service: str) -> int:
    return int(DEFAULT_ADDRS[service].rsplit(":", 1)[1])


def _registered_names() -> set[str]:
    """What this code's metrics expose: every module that defines some, imported into one registry."""
    for module in METRIC_MODULES:
        importlib.import_module(module)
    return parse(generate_latest(REGISTRY).decode()).names


def test_every_query_parses_and_names_only_metrics_the_code_registers() -> None:
    queries = observability_queries()
    assert len(queries) > 40
    known = _registered_names() | SYNTHETIC
    for where, expr in queries:
        try:
            names = promql_names(expr)
        except ValueError as exc:
            pytest.fail(f"{where}: {exc}")
        assert names, where
        assert names <= known, f"{where} names metrics nothing registers: {sorted(names - known)}"


def test_the_alert_rules_are_complete() -> None:
    rules = [r for g in yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert "for" not in rule or _DURATION.match(rule["for"]), rule["alert"]
    # What issue 13 asks to alert on.
    wanted = {
        "kassa_payment_outcomes_total", "kassa_dlq_depth", "kassa_outbox_oldest_unsent_age_seconds",
        "kassa_checkout_stuck_sessions", "kassa_warehouse_stock_drift_rows", "grpc_server_handled_total",
        "grpc_server_handling_seconds_bucket", "kassa_http_requests_total", "kassa_admission_refusals_total",
    }  # fmt: skip
    alerted = set().union(*(promql_names(r["expr"]) for r in rules))
    assert wanted <= alerted, wanted - alerted


def test_the_dashboard_is_a_grafana_dashboard_over_a_prometheus_datasource() -> None:
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_the_local_scrape_config_reaches_every_service_and_the_gateway_with_a_token() -> None:
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    assert all((OBSERVABILITY / f).exists() for f in config["rule_files"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {group["labels"]["service"]: group["targets"] for group in jobs["kassa-services"]["static_configs"]}
    assert targets == {s: [f"127.0.0.1:{_port(s) + METRICS_PORT_OFFSET}"] for s in SERVICES}
    assert "authorization" not in jobs["kassa-services"]
    gateway = jobs["kassa-gateway"]
    assert gateway["authorization"]["type"] == "Bearer" and gateway["authorization"]["credentials_file"]
    assert gateway["static_configs"][0]["targets"] == [DEFAULT_ADDRS["gateway"]]


def test_the_kubernetes_scrape_config_keeps_the_annotated_pods_and_the_gateway_with_a_token() -> None:
    config = yaml.safe_load((OBSERVABILITY / "prometheus-kubernetes.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    keep = jobs["kassa-services"]["relabel_configs"][0]
    assert keep["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
    assert (keep["action"], keep["regex"]) == ("keep", "true")
    assert jobs["kassa-gateway"]["authorization"]["type"] == "Bearer"
    for job in jobs.values():
        for relabel in job["relabel_configs"]:
            re.compile(relabel.get("regex", ".*"))


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=lambda p: p.parent.name + "/" + p.name)
def test_each_service_pod_serves_metrics_on_its_grpc_port_plus_1000_and_is_annotated(kustomization: Any) -> None:
    deployments = {o["metadata"]["name"]: o for o in render(kustomization) if o["kind"] == "Deployment"}
    for service in SERVICES:
        pod = deployments[service]["spec"]["template"]
        metrics = _port(service) + METRICS_PORT_OFFSET
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true", service
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(metrics), service
        (container,) = pod["spec"]["containers"]
        assert {"name": "metrics", "containerPort": metrics, "protocol": "TCP"} in container["ports"], service
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env[f"KASSA_{service.upper()}_METRICS_ADDR"] == f"0.0.0.0:{metrics}", service
    # The gateway's /metrics wants a token: the annotation-driven job must not scrape it (it would only get 401).
    gateway = deployments["gateway"]["spec"]["template"]["metadata"]
    assert "prometheus.io/scrape" not in gateway.get("annotations", {})


def test_compose_binds_each_services_metrics_port_inside_its_network_only() -> None:
    compose = yaml.safe_load((OBSERVABILITY.parents[1] / "compose.yaml").read_text())
    for service in SERVICES:
        env = compose["services"][service]["environment"]
        assert env[f"KASSA_{service.upper()}_METRICS_ADDR"] == f"0.0.0.0:{_port(service) + METRICS_PORT_OFFSET}"
        assert not compose["services"][service].get("ports"), service
