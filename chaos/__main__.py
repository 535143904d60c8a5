"""``python -m chaos`` (``make chaos``): many checkouts under a seeded fault schedule, then every invariant.

Examples::

    python -m chaos                                   # 2,000 checkouts, a random seed (printed)
    python -m chaos --checkouts 200 --seed 42         # the CI run; the same seed replays the same faults
    python -m chaos --transport rest --concurrency 8 --json chaos.json

Exit status: 0 when every invariant held, 1 when one did not (the seed and its replay command are
appended to ``.kassa/chaos/failing-seeds.txt``), 2 on a usage error, 130 when interrupted. Everything the run
started is stopped on the way out, by its own pids.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
import sys
from pathlib import Path
from types import FrameType

from bench.args import positive
from chaos.plan import make_plan
from chaos.report import format_report, record_failure, write_json
from chaos.run import CHAOS_ENV, Options, run_chaos
from chaos.stack import private_stack

# Beside the local stack's data (git-ignored): a failing seed is a note for whoever runs it next, not a change.
FAILING_SEEDS = Path(__file__).resolve().parent.parent / ".kassa" / "chaos" / "failing-seeds.txt"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m chaos",
        description="Checkouts over gRPC and REST while processes die and servers restart; then DESIGN.md §4.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkouts", type=positive(int, 100_000), default=2000, help="customers to run")
    p.add_argument("--seed", type=int, help="fixes the fault schedule and the customers (default: random, printed)")
    p.add_argument("--concurrency", type=positive(int, 256), default=12, help="customers in flight")
    p.add_argument("--transport", choices=("grpc", "rest", "both"), default="both")
    p.add_argument("--max-seconds", type=positive(float, 7200), default=1800.0, help="bound of the load phase")
    p.add_argument("--recovery-seconds", type=positive(float, 3600), default=240.0, help="bound of the recovery window")
    p.add_argument("--rpc-timeout", type=positive(float, 120), default=10.0, help="client deadline of each call")
    p.add_argument("--no-faults", action="store_true", help="no KASSA_FAULTS rules (outside actions still run)")
    p.add_argument("--no-actions", action="store_true", help="no kills or restarts (KASSA_FAULTS still set)")
    p.add_argument("--no-dlq-nudge", action="store_true", help="leave the DLQ's backoff alone in the recovery window")
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.add_argument("--keep", action="store_true", help="keep the stack's files and logs even when the run passed")
    p.add_argument("--quiet", action="store_true", help="no stack start-up lines")
    return p


def _log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(raw)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    options = Options(
        checkouts=args.checkouts,
        seed=seed,
        concurrency=args.concurrency,
        transport=args.transport,
        max_seconds=args.max_seconds,
        recovery_seconds=args.recovery_seconds,
        rpc_timeout=args.rpc_timeout,
        nudge_dlq=not args.no_dlq_nudge,
    )
    plan = make_plan(seed, args.checkouts, faults=not args.no_faults, actions=not args.no_actions)
    _log(f"chaos: seed {seed}; {len(plan.actions)} outside actions; KASSA_FAULTS={plan.faults or '(none)'}")
    signal.signal(signal.SIGTERM, _interrupt)
    passed = False
    try:
        with private_stack(
            {**CHAOS_ENV, **plan.env()},
            log=(lambda _: None) if args.quiet else _log,
            keep=lambda: args.keep or not passed,
        ) as stack:
            outcome = asyncio.run(run_chaos(stack, options, plan, _log))
            passed = outcome.passed
            _say(format_report(outcome, raw))
            if args.json:
                write_json(args.json, outcome, raw)
            if not passed:
                record_failure(FAILING_SEEDS, outcome, raw)
                _say(f"chaos: FAIL; seed {seed} appended to {FAILING_SEEDS}")
            _log("chaos: stopping the stack ...")
    except KeyboardInterrupt:
        _log("chaos: interrupted; everything it started has been stopped")
        return 130
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
