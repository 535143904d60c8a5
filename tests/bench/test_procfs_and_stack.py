"""/proc accounting and stack description of the bench, over a fake /proc tree (pure but for tmp files)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bench.cpu import CpuMeter, ProcStat, machine_cpu, parse_proc_stat, read_proc_stat, tree_cpu_seconds
from bench.stack import Target, find_service_pids, parse_pids, require_loopback, running_target

pytestmark = pytest.mark.unit


def stat_line(pid: int, comm: str, ppid: int, *, utime: int, stime: int, cutime: int = 0, cstime: int = 0) -> str:
    # fields 3.. : state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
    return f"{pid} ({comm}) S {ppid} 1 1 0 -1 4194560 10 0 0 0 {utime} {stime} {cutime} {cstime} 20 0 1 0 100\n"


def fake_proc(root: Path, processes: dict[int, str], cmdlines: dict[int, list[str]] | None = None,
              environs: dict[int, dict[str, str]] | None = None) -> Path:  # fmt: skip
    for pid, line in processes.items():
        d = root / str(pid)
        d.mkdir(parents=True)
        (d / "stat").write_text(line)
        (d / "cmdline").write_bytes("\0".join((cmdlines or {}).get(pid, ["sleep"])).encode() + b"\0")
        env = (environs or {}).get(pid, {})
        (d / "environ").write_bytes(b"".join(f"{k}={v}\0".encode() for k, v in env.items()))
    (root / "stat").write_text("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n")
    (root / "self").mkdir(exist_ok=True)
    return root


def test_parse_proc_stat_survives_spaces_and_parentheses_in_the_name() -> None:
    stat = parse_proc_stat(stat_line(42, "postgres: x (idle) ", 7, utime=150, stime=50, cutime=3, cstime=2))
    assert stat == ProcStat(pid=42, ppid=7, utime=150, stime=50, cutime=3, cstime=2)
    assert stat.own_ticks == 200
    assert stat.all_ticks == 205


def test_tree_cpu_counts_live_descendants_and_reaped_children() -> None:
    stats = {
        10: ProcStat(10, 1, 100, 0, 40, 10),  # postmaster: 100 own + 50 from exited backends
        11: ProcStat(11, 10, 20, 5, 0, 0),  # a backend
        12: ProcStat(12, 11, 3, 2, 0, 0),  # its child
        13: ProcStat(13, 1, 999, 0, 0, 0),  # not ours
    }
    assert tree_cpu_seconds(10, stats, ticks_per_s=100) == pytest.approx((150 + 25 + 5) / 100)
    assert tree_cpu_seconds(99, stats) is None


def test_cpu_meter_and_machine_share_over_a_fake_proc(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {5: stat_line(5, "python", 1, utime=100, stime=100)})
    assert read_proc_stat(5, proc) is not None
    assert read_proc_stat(6, proc) is None
    meter = CpuMeter({"checkout": 5, "gone": 6}, proc=proc)
    meter.start()
    (proc / "5" / "stat").write_text(stat_line(5, "python", 1, utime=300, stime=100))
    (proc / "stat").write_text("cpu  200 0 50 900 50 0 0 0 0 0\n")
    meter.stop()
    seconds = meter.seconds()
    assert seconds["checkout"] == pytest.approx(200 / os.sysconf("SC_CLK_TCK"))
    assert seconds["gone"] is None
    assert meter.machine_busy_share() == pytest.approx(100 / 200)
    machine = machine_cpu(proc)
    assert machine is not None
    assert (machine.busy_ticks, machine.total_ticks) == (250, 1200)


def test_parse_pids() -> None:
    assert parse_pids("checkout=12, order=13,") == {"checkout": 12, "order": 13}
    for bad in ("checkout", "checkout=x", "=3"):
        with pytest.raises(ValueError, match="name=pid"):
            parse_pids(bad)


def test_find_service_pids_matches_the_module_and_the_address(tmp_path: Path) -> None:
    py = "/venv/bin/python"
    proc = fake_proc(
        tmp_path,
        {pid: stat_line(pid, "python", 1, utime=1, stime=1) for pid in (20, 21, 22, 23, 24)},
        cmdlines={
            20: [py, "-m", "checkout"],
            21: [py, "-m", "checkout"],  # another mesh's checkout
            22: [py, "-m", "devstack.sandbox"],
            23: [py, "-m", "pytest", "checkout"],
            24: [py, "-m", "order"],
        },
        environs={
            20: {"KASSA_CHECKOUT_ADDR": "127.0.0.1:6000"},
            21: {"KASSA_CHECKOUT_ADDR": "127.0.0.1:50051"},
            22: {"KASSA_SANDBOX_ADDR": "127.0.0.1:6001"},
            24: {},  # default address
        },
    )
    env = {
        "KASSA_CHECKOUT_ADDR": "127.0.0.1:6000",
        "KASSA_SANDBOX_ADDR": "127.0.0.1:6001",
        "KASSA_ORDER_ADDR": "127.0.0.1:50052",
    }
    assert find_service_pids(env, proc) == {"sandbox": 22, "order": 24, "checkout": 20}


def test_running_target_prefers_flags_over_the_environment() -> None:
    target = running_target(
        {"KASSA_CHECKOUT_ADDR": "127.0.0.1:7000", "KASSA_JWT_SECRET": "s3", "KASSA_DATABASE_URL": "postgresql://x"},
        addrs={"checkout": None, "order": "127.0.0.1:7002"},
        gateway_url="http://localhost:7080/",
        jwt_secret=None,
        database_url=None,
        pids="checkout=5",
    )
    assert target.addr("checkout") == "127.0.0.1:7000"
    assert target.addr("order") == "127.0.0.1:7002"
    assert target.addr("pricing") == "127.0.0.1:50055"
    assert target.gateway_url == "http://localhost:7080"
    assert target.jwt_secret == "s3"
    assert target.database_url == "postgresql://x"
    assert target.pids == {"checkout": 5}
    assert not target.self_started


def test_require_loopback_refuses_other_hosts() -> None:
    ok = Target(env={"KASSA_CHECKOUT_ADDR": "127.0.0.1:1", "KASSA_GATEWAY_ADDR": "[::1]:2"})
    require_loopback(ok, names=("checkout", "gateway"))
    remote = Target(env={"KASSA_CHECKOUT_ADDR": "10.1.2.3:50051", "KASSA_GATEWAY_ADDR": "127.0.0.1:8080"})
    with pytest.raises(ValueError, match=re.escape("checkout=10.1.2.3:50051")):
        require_loopback(remote, names=("checkout", "gateway"))
    remote_db = Target(env={"KASSA_GATEWAY_ADDR": "127.0.0.1:8080"}, database_url="postgresql://u@192.0.2.1/kassa")
    with pytest.raises(ValueError, match="database-url"):
        require_loopback(remote_db, names=("gateway",))


def test_find_service_pids_names_each_replica_of_a_service(tmp_path: Path) -> None:
    py = "/venv/bin/python"
    listed = "127.0.0.1:6000,127.0.0.1:6010"
    proc = fake_proc(
        tmp_path,
        {pid: stat_line(pid, "python", 1, utime=1, stime=1) for pid in (30, 31, 32, 33)},
        cmdlines={
            30: [py, "-m", "checkout"],
            31: [py, "-m", "checkout"],
            32: [py, "-m", "gateway"],
            33: [py, "-m", "gateway"],
        },
        environs={
            30: {"KASSA_CHECKOUT_ADDR": listed, "KASSA_REPLICA": "1"},
            31: {"KASSA_CHECKOUT_ADDR": listed, "KASSA_REPLICA": "0"},
            # Two gateways on one address that say nothing of replicas: which is which is unknown, so neither.
            32: {"KASSA_GATEWAY_ADDR": "127.0.0.1:6080"},
            33: {"KASSA_GATEWAY_ADDR": "127.0.0.1:6080"},
        },
    )
    env = {"KASSA_CHECKOUT_ADDR": listed, "KASSA_GATEWAY_ADDR": "127.0.0.1:6080"}
    assert find_service_pids(env, proc) == {"checkout.0": 31, "checkout.1": 30}


def test_require_loopback_checks_every_replica_of_a_list() -> None:
    ok = Target(env={"KASSA_CHECKOUT_ADDR": "127.0.0.1:1,127.0.0.1:2", "KASSA_GATEWAY_ADDR": "127.0.0.1:3"})
    require_loopback(ok, names=("checkout", "gateway"))
    mixed = Target(env={"KASSA_CHECKOUT_ADDR": "127.0.0.1:1,10.1.2.3:2", "KASSA_GATEWAY_ADDR": "127.0.0.1:3"})
    with pytest.raises(ValueError, match=re.escape("checkout=127.0.0.1:1,10.1.2.3:2")):
        require_loopback(mixed, names=("checkout", "gateway"))
