"""``python -m warehouse.reconcile [--repair] [--sku SKU ...]``: check stock.reserved against the reservations.

The operator's entry (``kassa stock check`` runs it as a subprocess): it opens its own engine on
``KASSA_DATABASE_URL`` (or ``--database-url``), runs :class:`warehouse.biz.reconcile_stock.ReconcileStock`
once and prints one line per finding. Exit codes: 0 no drift (or all of it repaired), 1 drift found and
not repaired, 2 an oversell (active reservations above on_hand) or another row only an operator can
fix, 3 the check could not run (usage, configuration or database error).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import NoReturn, TextIO

from infra.db import create_engine
from warehouse.biz.reconcile_stock import ReconcileStock
from warehouse.data.repositories import SqlUnitOfWork
from warehouse.model.reconciliation import ReconcileReport, ReconcileStatus

__all__ = ["EXIT_CODES", "format_report", "main"]

EXIT_CODES: dict[ReconcileStatus, int] = {
    ReconcileStatus.CLEAN: 0,
    ReconcileStatus.REPAIRED: 0,
    ReconcileStatus.DRIFT: 1,
    ReconcileStatus.OVERSOLD: 2,
}
EXIT_FAILED = 3

_HEADER = ("sku", "warehouse", "on_hand", "reserved", "active", "drift", "problems", "action")


class _Parser(argparse.ArgumentParser):
    """Usage errors exit with EXIT_FAILED: 2 already means an oversell here."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_FAILED, f"{self.prog}: error: {message}\n")


def format_report(report: ReconcileReport, *, repair: bool) -> str:
    """A table of the findings (if any) and a one-line verdict."""
    repaired = {(a.sku, a.warehouse_id) for a in report.repaired}
    rows = []
    for f in report.findings:
        if not f.repairable:
            action = "needs an operator (on_hand untouched)"
        elif (f.sku, f.warehouse_id) in repaired:
            action = f"repaired: reserved {f.reserved} -> {f.active_reserved}"
        else:
            action = "run with --repair" if not repair else "unchanged"
        problems = ",".join(p.value for p in f.problems)
        rows.append(
            (f.sku, f.warehouse_id, f.on_hand, f.reserved, f.active_reserved, f"{f.drift:+d}", problems, action)
        )
    lines: list[str] = []
    if rows:
        cells = [tuple(str(c) for c in row) for row in [_HEADER, *rows]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(_HEADER))]
        for row in cells:
            lines.append(
                "  ".join(
                    c.rjust(w) if c.lstrip("+-").isdigit() else c.ljust(w) for c, w in zip(row, widths, strict=True)
                ).rstrip()
            )
    verdict = {
        ReconcileStatus.CLEAN: "no drift",
        ReconcileStatus.REPAIRED: f"{len(report.repaired)} row(s) repaired",
        ReconcileStatus.DRIFT: f"{len(report.findings)} row(s) drifted, not repaired",
        ReconcileStatus.OVERSOLD: f"{len(report.unrepairable)} row(s) oversold or unrepairable",
    }[report.status]
    lines.append(f"checked {report.checked} stock row(s): {verdict}")
    return "\n".join(lines)


async def _run(database_url: str, *, repair: bool, skus: Sequence[str] | None) -> ReconcileReport:
    engine = create_engine(database_url, pool_size=1, application_name="kassa-warehouse-reconcile")
    try:
        return await ReconcileStock(SqlUnitOfWork(engine))(repair=repair, skus=skus)
    finally:
        await engine.dispose()


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    parser = _Parser(prog="python -m warehouse.reconcile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repair", action="store_true", help="set reserved to the recomputed units where safe")
    parser.add_argument("--sku", action="append", dest="skus", metavar="SKU", help="only this sku (repeatable)")
    parser.add_argument("--database-url", help="default: $KASSA_DATABASE_URL")
    args = parser.parse_args(argv)
    out = out or sys.stdout
    url = args.database_url or os.environ.get("KASSA_DATABASE_URL")
    if not url:
        sys.stderr.write("warehouse.reconcile: no database: set KASSA_DATABASE_URL or pass --database-url\n")
        return EXIT_FAILED
    try:
        report = asyncio.run(_run(url, repair=args.repair, skus=args.skus))
    except Exception as exc:
        sys.stderr.write(f"warehouse.reconcile: the check failed: {type(exc).__name__}: {exc}\n")
        return EXIT_FAILED
    out.write(format_report(report, repair=args.repair) + "\n")
    return EXIT_CODES[report.status]


if __name__ == "__main__":
    sys.exit(main())
