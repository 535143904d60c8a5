"""infra.pii: envelope encryption of personal data under rotating keys, KASSA_PII_KEYS, and the masks."""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devstack.mesh import default_specs
from infra.config import DEV_PII_KEYS, ConfigError, Settings
from infra.grpc_errors import status_for
from infra.logs import JsonFormatter
from infra.pii import (
    PiiCipher,
    PiiError,
    PiiKey,
    is_token,
    mask_email,
    new_key_spec,
    parse_keys,
    redact,
)
from kernel.address import Address
from kernel.errors import InvalidArgument

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SECRETS = ("KASSA_JWT_SECRET", "KASSA_SERVICE_SECRET", "KASSA_WEBHOOK_SECRET")


def _key(kid: str) -> PiiKey:
    return PiiKey(kid, os.urandom(32))


OLD, NEW = _key("k2024"), _key("k2025")


@given(st.text(min_size=1, max_size=300))
def test_any_text_round_trips_through_a_token_that_does_not_contain_it(text: str) -> None:
    cipher = PiiCipher([NEW])
    token = cipher.encrypt(text)
    assert is_token(token)
    assert token.startswith("pii1:k2025:")
    assert cipher.decrypt(token) == text
    if len(text) >= 4:
        assert text not in token


def test_each_encryption_is_fresh_and_empty_stays_empty() -> None:
    cipher = PiiCipher([NEW])
    assert cipher.encrypt("ada@example.com") != cipher.encrypt("ada@example.com")  # equal values don't show
    assert cipher.encrypt("") == "" and cipher.decrypt("") == ""
    address = {"name": "Ada", "line1": "1 Main St", "country_code": "GB"}
    assert cipher.decrypt_json(cipher.encrypt_json(address)) == address
    assert cipher.encrypt_json(None) is None and cipher.decrypt_json(None) is None


def test_a_token_that_was_tampered_with_or_is_plain_text_is_refused() -> None:
    cipher = PiiCipher([NEW])
    token = cipher.encrypt("ada@example.com")
    body = token.rsplit(":", 1)[1]
    flipped = body[:-3] + ("A" if body[-3] != "A" else "B") + body[-2:]
    for bad in (f"pii1:k2025:{flipped}", token[:-8], "ada@example.com", token.replace("k2025", "k2024")):
        with pytest.raises(PiiError):
            cipher.decrypt(bad)


def test_rotation_old_tokens_open_new_ones_use_the_current_key_and_reencrypt_moves_them() -> None:
    before = PiiCipher([OLD])
    old_token = before.encrypt("+44 20 7946 0958")
    during = PiiCipher([NEW, OLD])
    assert during.decrypt(old_token) == "+44 20 7946 0958"
    assert during.key_id_of(during.encrypt("x")) == "k2025"
    # A JSON document holding tokens among its values (checkout's saga state) is re-encrypted in place.
    document = json.dumps({"email": old_token, "other": during.encrypt("y"), "n": 1})
    moved, count = during.reencrypt_text(document)
    assert count == 1
    values = json.loads(moved)
    assert during.key_id_of(values["email"]) == "k2025" and during.decrypt(values["email"]) == "+44 20 7946 0958"
    after = PiiCipher([NEW])  # the old key can now go
    assert after.decrypt(values["email"]) == "+44 20 7946 0958"
    with pytest.raises(PiiError, match="k2024"):
        after.decrypt(old_token)


def test_keys_are_parsed_without_ever_echoing_one() -> None:
    spec = f"{new_key_spec('a')}, {new_key_spec('b')}"
    keys = parse_keys(spec)
    assert [k.key_id for k in keys] == ["a", "b"]
    assert base64.b64encode(keys[0].key).decode() not in repr(keys)
    urlsafe = "c:" + base64.urlsafe_b64encode(b"\xfb" * 32).decode().rstrip("=")
    assert parse_keys(urlsafe)[0].key == b"\xfb" * 32
    short = "x:" + base64.b64encode(b"short").decode()
    for bad, problem in [
        ("nokey", "kid:base64key"),
        ("bad id!:AAAA", "kid:base64key"),
        (short, "32 bytes"),
        ("x:***", "base64"),
        (f"{new_key_spec('a')},{new_key_spec('a')}", "twice"),
    ]:
        with pytest.raises(ValueError, match=problem) as refused:
            parse_keys(bad)
        assert short.split(":")[1] not in str(refused.value)


def test_development_falls_back_to_the_committed_key_and_production_refuses_it() -> None:
    assert Settings.from_env({"KASSA_ENV": "development"}).pii_cipher().current_key_id == "dev"
    with pytest.raises(ConfigError, match="KASSA_PII_KEYS is not set"):
        Settings.from_env({}).pii_cipher()
    with pytest.raises(ConfigError, match="development key committed"):
        Settings.from_env({"KASSA_PII_KEYS": f"{new_key_spec('live')},{DEV_PII_KEYS}"}).pii_cipher()
    typed = "typed:" + base64.b64encode(b"my-very-own-production-pii-key-1").decode()
    with pytest.raises(ConfigError, match="printable text"):
        Settings.from_env({"KASSA_PII_KEYS": typed}).pii_cipher()
    zeros = "zeros:" + base64.b64encode(bytes(32)).decode()
    with pytest.raises(ConfigError, match="different bytes"):
        Settings.from_env({"KASSA_PII_KEYS": zeros}).pii_cipher()
    with pytest.raises(ConfigError, match="KASSA_PII_KEYS: key 'short' must be 32 bytes"):
        Settings.from_env({"KASSA_PII_KEYS": "short:AAAA"})
    spec = new_key_spec("live")
    settings = Settings.from_env({"KASSA_PII_KEYS": spec})
    assert settings.pii_cipher().current_key_id == "live"
    assert spec.split(":")[1] not in repr(settings)
    # The processes that keep no personal data start without the keys (they never get them).
    assert Settings.from_env({}).pii_keys == ""


# -- masks ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown", "hidden"),
    [
        ("customer ada.lovelace+shop@example.co.uk failed", "a***@example.co.uk", "ada.lovelace"),
        ("call +1 (555) 010-0199 first", "***99", "010-0199"),
        ("call 020 7946 0958", "***58", "7946"),
        ("Authorization: Bearer abc.def.ghi", "Bearer [redacted]", "abc.def"),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln here", "[jwt]", "eyJzdWIi"),
        ("method tok_chargeDeclined", "tok_***", "chargeDeclined"),
    ],
)
def test_redact_masks_emails_and_phones_and_drops_credentials(text: str, shown: str, hidden: str) -> None:
    masked = redact(text)
    assert shown in masked and hidden not in masked


@pytest.mark.parametrize(
    "text",
    [
        "order 123e4567-e89b-12d3-a456-426614174000 at 2025-06-01 12:00:00+00:00",
        "listening on 127.0.0.1:50051, 10.0.0.12 and [::1]:8080",
        "at most 1000000000 g, unix time 1718000000, 555-0100 is not grouped enough",
        "must be at most 99,999,999,999 minor units; 3 of 12 lines; retry in 0.500 s",
        "sku KB-001 x 2, session 6f1c0b1e, attempt 12345",
    ],
)
def test_redact_leaves_ids_times_addresses_of_machines_and_amounts_alone(text: str) -> None:
    assert redact(text) == text


def test_mask_email_keeps_the_domain_only() -> None:
    assert mask_email("ada@example.com") == "a***@example.com"
    assert mask_email("not an email") == "***"


def test_json_logs_mask_messages_tracebacks_and_fields(capsys: pytest.CaptureFixture[str]) -> None:
    formatter = JsonFormatter("test")
    try:
        raise ValueError("bad email pii-scan@example.com, phone +49 151 1234 5678")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "kassa.test", logging.ERROR, __file__, 1, "refused %s for %s", ("ada@example.com", "+1 555 010 0199"), exc_info
    )
    record.fields = {"email": "grace@example.org", "count": 3}
    line = formatter.format(record)
    entry = json.loads(line)
    for plain in ("ada@example.com", "pii-scan@example.com", "grace@example.org", "1234 5678", "010 0199"):
        assert plain not in line
    assert entry["msg"] == "refused a***@example.com for ***99"
    assert entry["email"] == "g***@example.org" and entry["count"] == 3
    assert "p***@example.com" in entry["exc"]


def test_an_error_message_quoting_input_masks_it() -> None:
    status = status_for(InvalidArgument("lines[0].quantity", "Couldn't parse integer: ada@example.com +1 555 010 0199"))
    assert status.details == "lines[0].quantity: Couldn't parse integer: a***@example.com ***99"


def test_an_address_never_shows_in_a_repr() -> None:
    address = Address(name="Ada Lovelace", line1="12 Secret Street", city="London", country_code="GB", phone="+44 1")
    assert repr(address) == str(address) == "Address(country_code='GB', <other fields hidden>)"
    assert "Secret" not in f"{[address]!r} {address}"


# -- the processes that keep personal data refuse to start without their keys --------------------------------


@pytest.mark.parametrize("service", ["order", "checkout"])
@pytest.mark.parametrize(
    ("pii_keys", "refusal"),
    [("", "KASSA_PII_KEYS is not set"), (DEV_PII_KEYS, "the development key committed in the Kassa repository")],
)
def test_order_and_checkout_refuse_to_start_in_production_without_real_keys(
    service: str, pii_keys: str, refusal: str
) -> None:
    spec = next(s for s in default_specs({}) if s.name == service)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    env.update(
        {
            "KASSA_DATABASE_URL": "postgresql+psycopg://k@127.0.0.1:1/k",
            "KASSA_REDIS_URL": "redis://127.0.0.1:1/0",
            "KASSA_NATS_URL": "nats://127.0.0.1:1",
            **{name: secrets.token_urlsafe(48) for name in SECRETS},
            # Port 1 is never bound by a test: a process that got as far as serving would fail differently.
            f"KASSA_{service.upper()}_ADDR": "127.0.0.1:1",
        }
    )
    if pii_keys:
        env["KASSA_PII_KEYS"] = pii_keys
    done = subprocess.run(spec.argv, env=env, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
    assert done.returncode != 0
    assert refusal in done.stderr, done.stderr[-2000:]
