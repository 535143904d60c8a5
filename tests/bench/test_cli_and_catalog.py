"""Option checking, the split of the load over processes, and the catalog plan (pure)."""

from __future__ import annotations

import argparse

import pytest

from bench.__main__ import UsageError, _sampling, build_parser, validate, worker_specs
from bench.invariants import sqlalchemy_to_libpq
from bench.seed import plan_catalog, product_price_minor
from bench.stack import Target

pytestmark = pytest.mark.unit


def parse(*argv: str) -> argparse.Namespace:
    args = build_parser().parse_args(list(argv))
    validate(args)
    return args


def test_defaults_are_a_30_second_closed_loop_over_grpc() -> None:
    args = parse()
    assert (args.mode, args.transport, args.concurrency, args.duration, args.skus) == (
        "closed",
        "grpc",
        16,
        30.0,
        10_000,
    )
    assert (args.hot_skus, args.hot_fraction) == (5, 0.05)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mode", "open"], "needs --rate"),
        (["--mode", "open", "--rate", "5", "--checkouts", "3"], "closed loop"),
        (["--rate", "5"], "--mode open"),
        (["--checkouts", "10", "--duration", "5"], "not both"),
        (["--duration", "0"], "--duration"),
        (["--duration", "99999"], "--duration"),
        (["--concurrency", "0"], "--concurrency"),
        (["--skus", "2"], "--skus"),
        (["--hot-fraction", "1.5"], "--hot-fraction"),
        (["--procs", "0"], "--procs"),
        (["--replicas", "0"], "--replicas"),
        (["--replicas", "2", "--use-running"], "--replicas is for the private stack"),
    ],
)
def test_contradictory_or_unbounded_options_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse(*argv)


def target() -> Target:
    return Target(
        env={"KASSA_CHECKOUT_ADDR": "127.0.0.1:1", "KASSA_GATEWAY_ADDR": "127.0.0.1:2", "KASSA_JWT_SECRET": "s"}
    )


@pytest.mark.parametrize(
    ("ratio", "env"),
    [
        ("1", {}),
        ("0", {"OTEL_TRACES_EXPORTER": "none"}),
        ("0.1", {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}),
    ],
)
def test_trace_ratio_becomes_the_private_meshs_sampling(ratio: str, env: dict[str, str]) -> None:
    assert _sampling(parse("--trace-ratio", ratio).trace_ratio) == env


@pytest.mark.parametrize("ratio", ["-0.1", "1.5", "x"])
def test_trace_ratio_outside_0_to_1_is_refused(ratio: str) -> None:
    with pytest.raises(SystemExit):
        parse("--trace-ratio", ratio)


def test_worker_specs_split_concurrency_and_checkouts() -> None:
    plan = plan_catalog("BENCH-T", 10, 1)
    specs = worker_specs(parse("--concurrency", "5", "--checkouts", "11", "--procs", "2"), target(), plan, "T", 1)
    assert [s.concurrency for s in specs] == [3, 2]
    assert [s.checkouts for s in specs] == [6, 5]
    assert {s.procs for s in specs} == {2}
    assert specs[0].gateway_url == "http://127.0.0.1:2"
    assert specs[0].jwt_secret == "s"


def test_worker_specs_never_start_idle_processes() -> None:
    plan = plan_catalog("BENCH-T", 10, 0)
    assert len(worker_specs(parse("--concurrency", "1", "--procs", "4"), target(), plan, "T", 1)) == 1
    assert len(worker_specs(parse("--checkouts", "1", "--procs", "4"), target(), plan, "T", 1)) == 1
    open_specs = worker_specs(parse("--mode", "open", "--rate", "10", "--procs", "3"), target(), plan, "T", 1)
    assert [s.index for s in open_specs] == [0, 1, 2]
    assert all(s.rate == 10 and s.procs == 3 for s in open_specs)


def test_catalog_plan_names_are_unique_and_carry_the_prefix() -> None:
    plan = plan_catalog("BENCH-ABC", 10_000, 5, on_hand=7, hot_stock=3)
    assert len(set(plan.skus)) == 10_000
    assert plan.skus[0] == "BENCH-ABC-00000"
    assert plan.skus[-1] == "BENCH-ABC-09999"
    assert plan.hot_skus == tuple(f"BENCH-ABC-HOT-{i}" for i in range(5))
    assert not set(plan.skus) & set(plan.hot_skus)
    assert (plan.on_hand, plan.hot_stock) == (7, 3)
    with pytest.raises(ValueError):
        plan_catalog("X", 2, 0)


def test_prices_are_positive_usd_minor_units_and_stable() -> None:
    prices = [product_price_minor(i) for i in range(10_000)]
    assert min(prices) >= 500
    assert max(prices) < 20_500
    assert product_price_minor(42) == product_price_minor(42)


def test_sqlalchemy_urls_become_libpq_urls() -> None:
    assert (
        sqlalchemy_to_libpq("postgresql+psycopg://postgres@127.0.0.1:5/kassa")
        == "postgresql://postgres@127.0.0.1:5/kassa"
    )
    assert sqlalchemy_to_libpq("postgresql://u@h/db") == "postgresql://u@h/db"
