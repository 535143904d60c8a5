"""A flash sale through the real gateway and mesh: 120 buyers, 40 at a time, every one gets a guest token,
a cart and the hot product in it; none is turned away with 503 (issue 11, item 4). Before admission
queued, a static limit of 16 refused some of them at once on a mesh with headroom."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from e2e.support import make_catalog

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

BUYERS = 120
IN_FLIGHT = 40


async def test_a_flash_sale_of_120_buyers_40_at_a_time_gets_every_one_a_cart_without_a_503(mesh: Any) -> None:
    (hot,) = await make_catalog(mesh, n=1, on_hand=BUYERS)
    statuses: Counter[int] = Counter()
    carts: list[str] = []
    gate = asyncio.Semaphore(IN_FLIGHT)
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)

    async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=60, limits=limits, trust_env=False) as http:

        async def buyer() -> None:
            async with gate:
                guest = await http.post("/v1/auth/guest", json={})
                statuses[guest.status_code] += 1
                if guest.status_code != 200:
                    return
                auth = {"Authorization": f"Bearer {guest.json()['token']}"}
                cart = await http.post("/v1/carts", json={"currencyCode": "USD"}, headers=auth)
                statuses[cart.status_code] += 1
                if cart.status_code != 200:
                    return
                cart_id = cart.json()["cart"]["cartId"]
                item = await http.post(f"/v1/carts/{cart_id}/items", json={"sku": hot, "quantity": 1}, headers=auth)
                statuses[item.status_code] += 1
                if item.status_code == 200:
                    carts.append(cart_id)

        await asyncio.gather(*(buyer() for _ in range(BUYERS)))

    assert statuses[503] == 0, statuses
    assert statuses == Counter({200: 3 * BUYERS})
    assert len(set(carts)) == BUYERS
