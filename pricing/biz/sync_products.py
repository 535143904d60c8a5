"""SyncProducts: the catalog as it changed since an earlier sync, a page at a time, for a copy kept elsewhere."""

from __future__ import annotations

from pricing.biz.ports import UnitOfWork
from pricing.model.catalog import SyncCursor, SyncPage

__all__ = ["SyncProducts"]


class SyncProducts:
    """One page of a sync.

    Each product records the transaction that last wrote it. A sync's first page takes the database's
    snapshot (``until``) before it reads anything, and every page returns the products written by
    transactions that ``since`` (the snapshot of the sync before) did not show committed. So a product whose
    transaction committed by ``until`` is in this sync, and one that commits later, even if it began earlier
    or its sku was paged past, is in the next: nothing is missed whatever order transactions commit in, and a
    product may come twice, which a copy applies as the same state again.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, cursor: SyncCursor, page_size: int) -> SyncPage:
        async with self._uow.read() as tx:
            until = cursor.until if cursor.until is not None else await tx.products.snapshot()
            found = await tx.products.changed(cursor.since, cursor.after, page_size + 1)
        page = found[:page_size]
        more = SyncCursor(cursor.since, until, page[-1].sku) if len(found) > page_size else None
        return SyncPage(page, more, until)
