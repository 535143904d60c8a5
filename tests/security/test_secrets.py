"""Production is the default, and in production no process starts with a secret anyone could know.

Development mode is chosen explicitly (``KASSA_ENV=development``): by the local mesh and by the tests.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest

from devstack.localstack import StackEndpoints
from devstack.mesh import default_specs, mesh_env
from infra.config import (
    DEV_JWT_SECRET,
    DEV_SERVICE_SECRET,
    DEV_WEBHOOK_SECRET,
    ConfigError,
    Settings,
    secret_problem,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SECRET_VARIABLES = (
    "KASSA_JWT_SECRET",
    "KASSA_JWT_SECRET_PREVIOUS",
    "KASSA_SERVICE_SECRET",
    "KASSA_SERVICE_SECRET_PREVIOUS",
    "KASSA_WEBHOOK_SECRET",
    "KASSA_WEBHOOK_SECRET_PREVIOUS",
)
ENDPOINTS = StackEndpoints("postgresql+psycopg://k@127.0.0.1:1/k", "redis://127.0.0.1:1/0", "nats://127.0.0.1:1")


def _random() -> str:
    return secrets.token_urlsafe(48)


def _production(**overrides: str) -> dict[str, str]:
    """A production environment whose secrets are all fine, with ``overrides`` on top (KASSA_ENV unset)."""
    env = {
        "KASSA_JWT_SECRET": _random(),
        "KASSA_SERVICE_SECRET": _random(),
        "KASSA_WEBHOOK_SECRET": _random(),
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v}


def _refusal(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env).require()
    return str(refused.value)


def test_production_is_the_default_and_has_no_secret_of_its_own() -> None:
    settings = Settings.from_env({})
    assert settings.environment == "production"
    assert not settings.is_development
    assert (settings.jwt_secret, settings.service_secret, settings.webhook_secret) == ("", "", "")
    message = _refusal({})
    for variable in ("KASSA_JWT_SECRET", "KASSA_SERVICE_SECRET", "KASSA_WEBHOOK_SECRET"):
        assert f"{variable}" in message
    assert "KASSA_ENV=development" in message  # says how to run locally instead


def test_good_secrets_start_and_development_is_only_ever_chosen_explicitly() -> None:
    Settings.from_env(_production()).require()
    Settings.from_env({**_production(), "KASSA_ENV": "production"}).require()
    dev = Settings.from_env({"KASSA_ENV": "development"})
    dev.require()
    assert (dev.jwt_secret, dev.service_secret, dev.webhook_secret) == (
        DEV_JWT_SECRET,
        DEV_SERVICE_SECRET,
        DEV_WEBHOOK_SECRET,
    )
    with pytest.raises(ConfigError, match="KASSA_ENV"):
        Settings.from_env({"KASSA_ENV": "prod"})


@pytest.mark.parametrize("variable", SECRET_VARIABLES)
@pytest.mark.parametrize("value", [DEV_JWT_SECRET, DEV_SERVICE_SECRET, DEV_WEBHOOK_SECRET])
def test_a_development_secret_is_refused_in_production(variable: str, value: str) -> None:
    message = _refusal(_production(**{variable: value}))
    assert f"{variable} is a development value committed in the Kassa repository" in message


@pytest.mark.parametrize("variable", SECRET_VARIABLES)
def test_a_short_secret_is_refused_in_production(variable: str) -> None:
    message = _refusal(_production(**{variable: secrets.token_urlsafe(31)[:31]}))
    assert f"{variable} is shorter than 32 bytes" in message


@pytest.mark.parametrize(
    "value",
    [
        "my-production-secret-please-keep-it-safe-ok",
        "CHANGEME-changeme-CHANGEME-changeme-CHANGEME",
        "a" * 64,
        "0123012301230123012301230123012301230123",
    ],
)
def test_a_secret_a_person_made_up_is_refused(value: str) -> None:
    assert secret_problem(value) is not None
    assert "KASSA_JWT_SECRET" in _refusal(_production(KASSA_JWT_SECRET=value))


def test_one_secret_for_two_purposes_is_refused() -> None:
    """Whoever holds the customer key (an identity provider) or the webhook key (the payment provider)
    must not be able to sign service tokens, nor each other's."""
    shared = _random()
    assert "KASSA_JWT_SECRET and KASSA_SERVICE_SECRET" in _refusal(
        _production(KASSA_JWT_SECRET=shared, KASSA_SERVICE_SECRET=shared)
    )
    assert "KASSA_JWT_SECRET and KASSA_SERVICE_SECRET" in _refusal(
        _production(KASSA_JWT_SECRET_PREVIOUS=shared, KASSA_SERVICE_SECRET=shared)
    )
    assert "KASSA_SERVICE_SECRET and KASSA_WEBHOOK_SECRET" in _refusal(
        _production(KASSA_WEBHOOK_SECRET_PREVIOUS=shared, KASSA_SERVICE_SECRET_PREVIOUS=shared)
    )


def test_with_a_jwks_url_the_customer_secret_is_optional_and_the_url_must_be_https() -> None:
    Settings.from_env(_production(KASSA_JWT_SECRET="", KASSA_JWT_JWKS_URL="https://id.example.org/jwks")).require()
    Settings.from_env(_production(KASSA_JWT_SECRET="", KASSA_JWT_JWKS_URL="http://127.0.0.1:9/jwks")).require()
    message = _refusal(_production(KASSA_JWT_SECRET="", KASSA_JWT_JWKS_URL="http://id.example.org/jwks"))
    assert "KASSA_JWT_JWKS_URL must be an https:// URL" in message
    # The service secret is needed whatever verifies customers.
    assert "KASSA_SERVICE_SECRET is not set" in _refusal(
        _production(KASSA_SERVICE_SECRET="", KASSA_JWT_JWKS_URL="https://id.example.org/jwks")
    )


def test_the_local_mesh_chooses_development_mode_explicitly() -> None:
    env = mesh_env(ENDPOINTS)
    assert env["KASSA_ENV"] == "development"
    settings = Settings.from_env(env)
    settings.require("database_url", "redis_url", "nats_url")
    assert settings.service_secret == DEV_SERVICE_SECRET
    assert settings.service_secret != settings.jwt_secret


# -- the processes themselves ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", default_specs({}), ids=lambda spec: spec.name)
def test_every_process_refuses_to_start_in_production_with_a_development_secret(spec) -> None:
    """``python -m <service>`` with KASSA_ENV unset and the committed JWT secret exits before serving anything."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    env.update(
        {
            "KASSA_DATABASE_URL": ENDPOINTS.database_url,
            "KASSA_REDIS_URL": ENDPOINTS.redis_url,
            "KASSA_NATS_URL": ENDPOINTS.nats_url,
            **_production(KASSA_JWT_SECRET=DEV_JWT_SECRET),
            # Port 1 is never bound by a test: if a process got as far as binding, it would fail differently.
            f"KASSA_{spec.name.upper()}_ADDR": "127.0.0.1:1",
        }
    )
    done = subprocess.run(spec.argv, env=env, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
    assert done.returncode != 0
    assert "refusing to start in production mode" in done.stderr, done.stderr[-2000:]
    assert "KASSA_JWT_SECRET is a development value" in done.stderr


# -- nothing committed in this repository passes as a production secret ----------------------------------------

# A value given to a secret: `X_SECRET = "…"`, `"KASSA_X_SECRET": "…"`, `jwt_secret="…"`,
# `setenv("KASSA_…SECRET", "…")`, `KASSA_X_SECRET=…` in shell or docs, and the first argument of the
# functions that sign or verify.
_ASSIGNED = re.compile(r"""(?i)secret\w*["']?\s*(?::\s*str\s*)?[:=,]\s*["']([^"'\s{}$]{8,})["']""")
_SHELL = re.compile(r"""KASSA_\w*SECRET\w*=["']?([^\s"'$]{8,})""")
_SIGNER = re.compile(
    r"""\b(?:mint_token|mint_service_token|JwtVerifier|ServiceCredentials|sign|verify|SandboxProvider)\(\s*["']([^"']{8,})["']"""
)
_TEXT_SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".conf", ".cfg", ".ini", ".sh", ".json", ".txt", ".env"}


def _committed_secret_values() -> dict[str, str]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    untracked = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    found: dict[str, str] = {}
    for name in {*listed.split(), *untracked.split()}:
        path = ROOT / name
        if not (path.suffix in _TEXT_SUFFIXES or path.name in {"Makefile", "Dockerfile"}) or name.startswith("gen/"):
            continue
        if name.startswith("third_party/") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for pattern in (_ASSIGNED, _SHELL, _SIGNER):
            for match in pattern.finditer(text):
                found.setdefault(match.group(1), name)
    return found


def test_the_scan_finds_the_committed_development_secrets() -> None:
    values = _committed_secret_values()
    assert {DEV_JWT_SECRET, DEV_SERVICE_SECRET, DEV_WEBHOOK_SECRET} <= set(values)


def test_no_secret_written_in_this_repository_is_accepted_in_production() -> None:
    """Defaults, docs, examples and test keys are public: each must be refused as a production secret."""
    accepted = {value: where for value, where in _committed_secret_values().items() if secret_problem(value) is None}
    assert not accepted, f"committed secret values a production service would accept: {accepted}"
