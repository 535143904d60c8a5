"""``kassa pii rotate``: seal again, under the current key, every personal-data token an older key sealed.

A key rotation (infra.pii): put the new key first in KASSA_PII_KEYS with the old ones after it, restart
order and checkout (new values now use the new key, old ones still open), run this, then drop the old keys.

It needs no list of columns: it looks at every text and jsonb column of the services' schemas and rewrites
the tokens it finds in them (a column that is one token, or a JSON document holding tokens among its
values, as checkout's saga state does), one short transaction per batch of rows. Rows are locked while
they are rewritten, so a service writing the same row waits for the batch; a value a service writes
meanwhile is under the current key already. Running it twice is harmless: the second run finds nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import sqlalchemy as sa

from infra.pii import TOKEN_VERSION, PiiCipher

__all__ = ["rotate"]

_BATCH = 200
_COLUMNS = sa.text(
    "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns"
    " WHERE table_schema = ANY(:schemas) AND data_type IN ('text', 'jsonb', 'character varying')"
    " ORDER BY table_schema, table_name, ordinal_position"
)


def _old_token_regex(current_key_id: str) -> str:
    """A Postgres regex matching a token under any key but the current one (infra.pii.TOKEN_PATTERN's shape)."""
    return rf"(^|[^A-Za-z0-9_]){TOKEN_VERSION}:(?!{current_key_id}:)[A-Za-z0-9_-]{{1,32}}:[A-Za-z0-9_-]{{60,}}"


def rotate(
    database_url: str, cipher: PiiCipher, schemas: Iterable[str], *, log: Callable[[str], None] = print
) -> dict[str, int]:
    """Re-encrypt old tokens in ``schemas``; how many tokens each ``schema.table.column`` had re-encrypted."""
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool, hide_parameters=True)
    pattern = _old_token_regex(cipher.current_key_id)
    done: dict[str, int] = {}
    try:
        with engine.connect() as conn:
            columns = conn.execute(_COLUMNS, {"schemas": list(schemas)}).all()
        for schema, table, column, data_type in columns:
            value = f'"{column}"::text'
            # Keyset over ctid: a row rewritten gets a new ctid but no longer matches, and a row whose match
            # was no token after all (nothing to re-encrypt) is passed over, so every loop ends.
            select = sa.text(
                f'SELECT ctid, {value} AS v FROM "{schema}"."{table}" WHERE ctid > CAST(:after AS tid)'
                f" AND {value} ~ :pattern ORDER BY ctid LIMIT {_BATCH} FOR UPDATE"
            )
            update = sa.text(f'UPDATE "{schema}"."{table}" SET "{column}" = CAST(:v AS {data_type}) WHERE ctid = :ctid')
            after, count = "(0,0)", 0
            while True:
                with engine.begin() as conn:
                    rows = conn.execute(select, {"after": after, "pattern": pattern}).all()
                    if not rows:
                        break
                    changes = []
                    for row in rows:
                        text, n = cipher.reencrypt_text(row.v)
                        if n:
                            changes.append({"v": text, "ctid": row.ctid})
                            count += n
                    if changes:
                        conn.execute(update, changes)
                    after = str(rows[-1].ctid)
            if count:
                name = f"{schema}.{table}.{column}"
                done[name] = count
                log(f"{name}: {count} re-encrypted under {cipher.current_key_id!r}")
    finally:
        engine.dispose()
    return done
