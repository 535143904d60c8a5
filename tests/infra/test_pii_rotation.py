"""``kassa pii rotate``: after a key rotation, every token an old key sealed is sealed again under the new one,
in plain columns and inside JSON documents, so the old key can be dropped."""

from __future__ import annotations

import base64
import json
import os
import uuid

import pytest
import sqlalchemy as sa
from helpers import scratch_database

from devstack.cli import main
from infra.config import Settings
from infra.migrate import migrate
from infra.pii import PiiCipher, PiiKey, is_token, parse_keys

pytestmark = pytest.mark.integration


def _spec(kid: str, key: bytes) -> str:
    return f"{kid}:{base64.b64encode(key).decode()}"


def test_rotate_reencrypts_old_tokens_in_columns_and_json_and_leaves_the_rest(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = PiiKey("k-old", os.urandom(32)), PiiKey("k-new", os.urandom(32))
    before = PiiCipher([old])
    email = before.encrypt("ada@example.com")
    document = {"draft": {"email": before.encrypt("ada@example.com"), "notes": ""}, "pii1:x": "pii1:nope"}
    with scratch_database(str(settings.database_url)) as url:
        migrate(url, ["order"], pii=before)
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("CREATE TABLE orders.scratch (id int PRIMARY KEY, tok text, j jsonb, plain text)"))
                conn.execute(
                    sa.text("INSERT INTO orders.scratch VALUES (:id, :tok, CAST(:j AS jsonb), :plain)"),
                    [
                        {"id": i, "tok": email, "j": json.dumps(document), "plain": "pii1:k-old:short"}
                        for i in range(450)  # more than one batch
                    ],
                )
            keys = f"{_spec('k-new', new.key)},{_spec('k-old', old.key)}"
            monkeypatch.setenv("KASSA_PII_KEYS", keys)
            monkeypatch.setenv("KASSA_ENV", "production")
            assert main(["pii", "rotate", "--database-url", url]) == 0
            assert "re-encrypted 900 values under 'k-new'" in capsys.readouterr().out
            after = PiiCipher([new])  # the old key is no longer needed
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT tok, j, plain FROM orders.scratch")).all()
            assert len(rows) == 450
            for row in rows:
                assert after.decrypt(row.tok) == "ada@example.com" and after.key_id_of(row.tok) == "k-new"
                assert after.decrypt(row.j["draft"]["email"]) == "ada@example.com"
                assert row.j["pii1:x"] == "pii1:nope" and row.plain == "pii1:k-old:short"  # no tokens: untouched
            assert main(["pii", "rotate", "--database-url", url]) == 0  # a second run finds nothing
            assert "re-encrypted 0 values" in capsys.readouterr().out
        finally:
            engine.dispose()


def test_rotate_stops_at_a_token_no_configured_key_opens(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stranger = PiiCipher([PiiKey("k-lost", os.urandom(32))])
    with scratch_database(str(settings.database_url)) as url:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("CREATE SCHEMA orders; CREATE TABLE orders.scratch (t text)"))
                conn.execute(sa.text("INSERT INTO orders.scratch VALUES (:t)"), {"t": stranger.encrypt("x")})
        finally:
            engine.dispose()
        monkeypatch.setenv("KASSA_PII_KEYS", f"k-new:{base64.b64encode(os.urandom(32)).decode()}")
        assert main(["pii", "rotate", "--database-url", url]) == 1
        assert "k-lost" in capsys.readouterr().err


def test_new_key_prints_an_entry_production_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pii", "new-key", f"k-{uuid.uuid4().hex[:6]}"]) == 0
    entry = capsys.readouterr().out.strip()
    (key,) = parse_keys(entry)
    assert Settings.from_env({"KASSA_PII_KEYS": entry}).pii_cipher().current_key_id == key.key_id
    assert is_token(PiiCipher([key]).encrypt("x"))
    assert main(["pii", "new-key", "not a key id"]) == 2
