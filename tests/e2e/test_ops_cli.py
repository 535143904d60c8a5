"""``kassa dlq|sessions|outbox|stock drift|funnel`` against the running mesh, as an operator runs them: a
separate process that finds the mesh from the KASSA_* environment and signs its own admin token."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import pytest
from e2e.support import Rest, confirm, fill_cart, make_catalog, ready_session, stock_of
from e2e.test_ops_rest import _dlq_entry, _sql, stuck_session

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


async def kassa(mesh: Any, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "devstack.cli", *argv,
        env={"PATH": os.environ.get("PATH", ""), **mesh.env, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _session(mesh: Any, skus: list[str], quantities: list[int]) -> str:
    customer = Rest(mesh.gateway_url)
    try:
        await customer.guest()
        return str((await ready_session(customer, await fill_cart(customer, skus, quantities)))["session_id"])
    finally:
        await customer.close()


async def test_kassa_dlq_list_show_park_replay_retry(mesh: Any) -> None:
    skus = await make_catalog(mesh, n=1, on_hand=10)
    sid = await _session(mesh, skus, [2])
    entry = await _dlq_entry(mesh, sid, "release_reservations", {"reservation_ref": sid, "reason": "cli"})

    code, out, _ = await kassa(mesh, "dlq", "list", "--session", sid)
    assert code == 0
    header, row = out.splitlines()
    assert header.split()[:4] == ["ID", "STATUS", "OPERATION", "SESSION"]
    assert row.split()[:4] == [entry, "pending", "release_reservations", sid]
    code, out, _ = await kassa(mesh, "dlq", "list", "--session", sid, "--json")
    assert code == 0 and [e["id"] for e in json.loads(out)] == [entry]
    code, out, _ = await kassa(mesh, "dlq", "show", entry)
    assert code == 0 and f"id            {entry}" in out and f'reservation_ref: "{sid}"' in out

    code, out, err = await kassa(mesh, "dlq", "park", entry)
    assert code == 0 and f"[1/1] park {entry} release_reservations: ok, now parked" in err
    assert (await stock_of(mesh, skus))[skus[0]][1] == 2  # parked: nothing ran
    code, out, err = await kassa(mesh, "dlq", "replay", "--all", "--session", sid)
    assert code == 0, err
    assert f"[1/1] replay {entry} release_reservations: ok, now done" in err and "replay: 1 of 1 succeeded" in out
    assert (await stock_of(mesh, skus))[skus[0]][1] == 0
    code, out, err = await kassa(mesh, "dlq", "retry", entry)
    assert code == 1 and "FAILED_PRECONDITION" in err and "retry: 0 of 1 succeeded" in out
    code, _, err = await kassa(mesh, "dlq", "retry")
    assert code == 2 and "give entry ids, or --all" in err


async def test_kassa_sessions_stuck_and_resolve(mesh: Any) -> None:
    skus = await make_catalog(mesh, n=1, on_hand=10)
    sid = await _session(mesh, skus, [1])
    async with stuck_session(mesh, sid):
        code, out, _ = await kassa(mesh, "sessions", "stuck")
        assert code == 0
        line = next(ln for ln in out.splitlines() if ln.startswith(sid))
        assert line.split()[1:3] == ["validated", "2h00m"]
        code, out, _ = await kassa(mesh, "sessions", "stuck", "--json")
        assert sid in {s["sessionId"] for s in json.loads(out)["sessions"]}
    code, out, err = await kassa(mesh, "sessions", "resolve", sid)
    # The mesh's own recovery worker (every 15 s) may take the session first: then the answer is its outcome,
    # or, when it finished before the command asked, that the session is not stuck any more.
    if code == 0:
        assert f"[1/1] resolve {sid}: cancelled (CANCELLED)" in err and "resolved 1 of 1" in out
    else:
        assert code == 1 and "is CANCELLED, not stuck mid-confirm" in err, err
    assert (await stock_of(mesh, skus))[skus[0]][1] == 0
    status = await _sql(mesh, "SELECT status FROM checkout.checkout_sessions WHERE session_id = %s", sid)
    assert status == [("CANCELLED",)]
    code, _, err = await kassa(mesh, "sessions", "resolve", sid)
    assert code == 1 and "FAILED_PRECONDITION" in err and "not stuck mid-confirm" in err


async def test_kassa_outbox_stock_drift_and_funnel(mesh: Any) -> None:
    code, out, _ = await kassa(mesh, "outbox")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["SERVICE", "UNPUBLISHED"]
    assert [ln.split()[0] for ln in lines[1:]] == ["checkout", "order", "payment", "warehouse", "promotion"]
    code, out, _ = await kassa(mesh, "outbox", "--json")
    assert code == 0 and [s["service"] for s in json.loads(out)] == ["checkout", "order", "payment", "warehouse",
                                                                     "promotion"]  # fmt: skip

    skus = await make_catalog(mesh, n=1, on_hand=10)
    await _sql(mesh, "UPDATE warehouse.stock SET reserved = reserved + 2 WHERE sku = %s", skus[0])
    code, out, _ = await kassa(mesh, "stock", "drift", "--sku", skus[0])
    assert code == 1 and "+2" in out and "reserved_drift" in out and out.rstrip().splitlines()[-1].startswith("drift:")
    code, out, err = await kassa(mesh, "stock", "drift", "--sku", skus[0], "--repair")
    assert code == 0 and "[1/1] repaired" in err and "repaired:" in out.splitlines()[-1]
    code, out, _ = await kassa(mesh, "stock", "drift", "--sku", skus[0], "--json")
    assert code == 0 and json.loads(out)["status"] == "clean"

    customer = Rest(mesh.gateway_url)
    try:
        await customer.guest()
        session = await ready_session(customer, await fill_cart(customer, skus, [1]))
        await confirm(customer, session["session_id"], session["preview"]["grandTotal"])
    finally:
        await customer.close()
    code, out, _ = await kassa(mesh, "funnel")
    assert code == 0 and "carts created" in out and "payments:" in out
    code, out, _ = await kassa(mesh, "funnel", "--json", "--minutes", "30")
    answer = json.loads(out)
    assert int(answer["funnel"]["checkoutsConfirmed"]) >= 1 and int(answer["payments"]["payments"]) >= 1

    # No mesh where it looks: exit 3, said plainly.
    code, _, err = await kassa(mesh, "dlq", "list", env={"KASSA_CHECKOUT_ADDR": "127.0.0.1:1"})
    assert code == 3 and "UNAVAILABLE" in err
