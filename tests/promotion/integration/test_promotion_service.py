"""PromotionService over gRPC against real Postgres: limits under concurrency, idempotency, validation."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import timestamp_pb2
from helpers import bearer, unique
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.grpc_errors import error_info
from kassa.common.v1 import money_pb2
from kassa.promotion.v1 import promotion_pb2 as ppb
from kassa.promotion.v1 import promotion_service_pb2 as pb
from kassa.promotion.v1.promotion_service_pb2_grpc import PromotionServiceStub

pytestmark = pytest.mark.integration


def usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="USD", amount_minor=amount)


def ts(dt: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(dt)
    return out


LINES = [
    ppb.PromotionLine(sku="KB-001", category="keyboards", brand="Acme", quantity=2, unit_price=usd(5000)),
    ppb.PromotionLine(sku="MS-001", category="mice", brand="Acme", quantity=1, unit_price=usd(2500)),
]


async def create(stub: PromotionServiceStub, token: str, **fields: Any) -> ppb.Promotion:
    values: dict[str, Any] = {
        "code": unique("PROMO").upper(),
        "name": "Test promotion",
        "type": ppb.PROMOTION_TYPE_PERCENTAGE,
        "percent_off": 10,
        "combinable": True,
    }
    values.update(fields)
    resp = await stub.CreatePromotion(
        pb.CreatePromotionRequest(promotion=ppb.Promotion(**values)), metadata=bearer(token)
    )
    return resp.promotion


def reserve_request(ref: str, codes: list[str], customer_id: str = "cust-1") -> pb.ReservePromotionUsageRequest:
    return pb.ReservePromotionUsageRequest(
        reservation_ref=ref,
        codes=codes,
        lines=LINES,
        shipping_total=usd(499),
        currency_code="USD",
        customer_id=customer_id,
    )


async def counts(db: AsyncEngine, code: str) -> tuple[int, int]:
    async with db.connect() as conn:
        row = (
            await conn.execute(
                sa.text("SELECT used_count, reserved_count FROM promotion.promotions WHERE code = :c"), {"c": code}
            )
        ).one()
    return row.used_count, row.reserved_count


def failure(err: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    info = error_info(err)
    assert info is not None
    return err.code(), info.reason, dict(info.metadata)


# -- CreatePromotion -------------------------------------------------------------------------------


async def test_create_promotion_upper_cases_the_code_and_refuses_duplicates(
    promotion_stub: PromotionServiceStub, admin_token: str
) -> None:
    code = unique("welcome").upper()
    created = await create(promotion_stub, admin_token, code=f"  {code.lower()} ", usage_limit=5)
    assert created.code == code
    assert created.promotion_id
    assert created.usage_limit == 5
    assert created.usage_count == 0
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await create(promotion_stub, admin_token, code=code)
    assert failure(exc_info.value)[:2] == (grpc.StatusCode.ALREADY_EXISTS, "PROMOTION_INVALID")


NOW = datetime.now(UTC)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"code": "x"}, "promotion.code"),
        ({"code": "has space"}, "promotion.code"),
        ({"name": ""}, "promotion.name"),
        ({"type": ppb.PROMOTION_TYPE_UNSPECIFIED}, "promotion.type"),
        ({"percent_off": 0}, "promotion.percent_off"),
        ({"percent_off": 101}, "promotion.percent_off"),
        ({"type": ppb.PROMOTION_TYPE_FIXED_AMOUNT, "percent_off": 0}, "promotion.amount_off"),
        (
            {"type": ppb.PROMOTION_TYPE_FIXED_AMOUNT, "percent_off": 0, "amount_off": usd(500), "currency_code": "EUR"},
            "promotion.amount_off.currency_code",
        ),
        (
            {"type": ppb.PROMOTION_TYPE_FIXED_AMOUNT, "percent_off": 0, "amount_off": usd(0)},
            "promotion.amount_off.amount_minor",
        ),
        ({"type": ppb.PROMOTION_TYPE_FREE_SHIPPING}, "promotion.percent_off"),
        (
            {"type": ppb.PROMOTION_TYPE_BUY_X_GET_Y, "percent_off": 0},
            "promotion.conditions.buy_quantity",
        ),
        ({"currency_code": "usd"}, "promotion.currency_code"),
        ({"usage_limit": -1}, "promotion.usage_limit"),
        ({"usage_limit_per_customer": -1}, "promotion.usage_limit_per_customer"),
        ({"min_subtotal": money_pb2.Money(amount_minor=100)}, "promotion.min_subtotal.currency_code"),
        ({"starts_at": ts(NOW), "ends_at": ts(NOW - timedelta(days=1))}, "promotion.ends_at"),
        ({"conditions": ppb.PromotionConditions(skus=["ok", "not ok"])}, "promotion.conditions.skus[1]"),
        # Control characters (a NUL came back INTERNAL), amounts past MAX_AMOUNT_MINOR, timestamps past
        # 9999-12-31 (ToDatetime raised ValueError: INTERNAL).
        ({"name": "Ten off\x00"}, "promotion.name"),
        ({"name": "x" * 201}, "promotion.name"),
        ({"conditions": ppb.PromotionConditions(categories=["toys\x00"])}, "promotion.conditions.categories[0]"),
        ({"conditions": ppb.PromotionConditions(brands=["\x1bAcme"])}, "promotion.conditions.brands[0]"),
        ({"conditions": ppb.PromotionConditions(skus=["SKU-1\n"])}, "promotion.conditions.skus[0]"),
        (
            {"type": ppb.PROMOTION_TYPE_FIXED_AMOUNT, "percent_off": 0, "amount_off": usd(2**63 - 1)},
            "promotion.amount_off.amount_minor",
        ),
        ({"min_subtotal": usd(2**62)}, "promotion.min_subtotal.amount_minor"),
        ({"starts_at": timestamp_pb2.Timestamp(seconds=2**62)}, "promotion.starts_at"),
        ({"ends_at": timestamp_pb2.Timestamp(seconds=-(2**40))}, "promotion.ends_at"),
        ({"ends_at": timestamp_pb2.Timestamp(seconds=1, nanos=-1)}, "promotion.ends_at"),
        ({"conditions": ppb.PromotionConditions(categories=["toys"] * 1001)}, "promotion.conditions.categories"),
    ],
)
async def test_create_promotion_names_the_bad_field(
    promotion_stub: PromotionServiceStub,
    admin_token: str,
    promotion_db: AsyncEngine,
    fields: dict[str, Any],
    field: str,
) -> None:
    fields.setdefault("code", unique("BAD").upper())
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await create(promotion_stub, admin_token, **fields)
    assert failure(exc_info.value) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", {"field": field})
    async with promotion_db.connect() as conn:
        stored = await conn.scalar(
            sa.text("SELECT count(*) FROM promotion.promotions WHERE code = :c"), {"c": fields["code"].strip().upper()}
        )
    assert stored == 0


async def test_create_promotion_needs_admin(promotion_stub: PromotionServiceStub, customer_token: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await create(promotion_stub, customer_token)
    assert exc_info.value.code() == grpc.StatusCode.PERMISSION_DENIED


# -- ValidatePromotions ----------------------------------------------------------------------------


async def test_validate_applies_and_rejects_per_code_and_reserves_nothing(
    promotion_stub: PromotionServiceStub, admin_token: str, service_token: str, promotion_db: AsyncEngine
) -> None:
    pct = await create(promotion_stub, admin_token, usage_limit=1)
    ship = await create(promotion_stub, admin_token, type=ppb.PROMOTION_TYPE_FREE_SHIPPING, percent_off=0)
    expired = await create(
        promotion_stub, admin_token, starts_at=ts(NOW - timedelta(days=2)), ends_at=ts(NOW - timedelta(days=1))
    )
    unknown = unique("NOPE").upper()
    request = pb.ValidatePromotionsRequest(
        codes=[pct.code.lower(), pct.code, ship.code, expired.code, unknown],
        lines=LINES,
        shipping_total=usd(499),
        currency_code="USD",
        customer_id="cust-v",
    )
    for _ in range(2):
        resp = await promotion_stub.ValidatePromotions(request, metadata=bearer(service_token))
        assert [(a.code, a.discount.amount_minor, a.free_shipping) for a in resp.applied] == [
            (pct.code, 1250, False),
            (ship.code, 499, True),
        ]
        assert {r.code: r.reason for r in resp.rejected} == {
            expired.code: "PROMOTION_INVALID",
            unknown: "PROMOTION_INVALID",
        }
        assert resp.discount_total == usd(1250 + 499)
        assert resp.free_shipping is True
    assert await counts(promotion_db, pct.code) == (0, 0)


async def test_validate_reports_exhausted(
    promotion_stub: PromotionServiceStub, admin_token: str, service_token: str
) -> None:
    promo = await create(promotion_stub, admin_token, usage_limit=1)
    await promotion_stub.ReservePromotionUsage(
        reserve_request(unique("ref"), [promo.code]), metadata=bearer(service_token)
    )
    resp = await promotion_stub.ValidatePromotions(
        pb.ValidatePromotionsRequest(codes=[promo.code], lines=LINES, currency_code="USD"),
        metadata=bearer(service_token),
    )
    assert [(r.code, r.reason) for r in resp.rejected] == [(promo.code, "PROMOTION_EXHAUSTED")]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"currency_code": "US"}, "currency_code"),
        ({"codes": ["OK", " "]}, "codes[1]"),
        ({"codes": [f"C{i}" for i in range(11)]}, "codes"),
        ({"lines": [ppb.PromotionLine(sku="A", quantity=0, unit_price=usd(1))]}, "lines[0].quantity"),
        ({"lines": [ppb.PromotionLine(sku="A", quantity=1, unit_price=usd(-1))]}, "lines[0].unit_price.amount_minor"),
        (
            {"lines": [ppb.PromotionLine(sku="A", quantity=1, unit_price=money_pb2.Money(currency_code="EUR"))]},
            "lines[0].unit_price.currency_code",
        ),
        ({"shipping_total": money_pb2.Money(currency_code="EUR", amount_minor=1)}, "shipping_total.currency_code"),
        ({"codes": ["OK\x00"]}, "codes[0]"),
        ({"customer_id": "cust\x00"}, "customer_id"),
        ({"lines": [ppb.PromotionLine(sku="A\n", quantity=1, unit_price=usd(1))]}, "lines[0].sku"),
        ({"lines": [ppb.PromotionLine(sku="A", category="t\x00", quantity=1, unit_price=usd(1))]}, "lines[0].category"),
        (
            {"lines": [ppb.PromotionLine(sku="A", quantity=1, unit_price=usd(2**63 - 1))]},
            "lines[0].unit_price.amount_minor",
        ),
        ({"lines": [ppb.PromotionLine(sku="A", quantity=1_000_000, unit_price=usd(99_999_999_999))]}, "lines[0]"),
    ],
)
async def test_validate_names_the_bad_field(
    promotion_stub: PromotionServiceStub, service_token: str, changes: dict[str, Any], field: str
) -> None:
    values: dict[str, Any] = {"codes": ["ANY"], "lines": LINES, "shipping_total": usd(0), "currency_code": "USD"}
    values.update(changes)
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await promotion_stub.ValidatePromotions(pb.ValidatePromotionsRequest(**values), metadata=bearer(service_token))
    assert failure(exc_info.value) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", {"field": field})


async def test_usage_rpcs_are_internal(promotion_stub: PromotionServiceStub, customer_token: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await promotion_stub.ReservePromotionUsage(reserve_request("ref", ["X"]), metadata=bearer(customer_token))
    assert exc_info.value.code() == grpc.StatusCode.PERMISSION_DENIED


# -- ReservePromotionUsage -------------------------------------------------------------------------


async def test_usage_limit_holds_under_concurrent_reservations(
    promotion_stub: PromotionServiceStub, admin_token: str, service_token: str, promotion_db: AsyncEngine
) -> None:
    promo = await create(promotion_stub, admin_token, usage_limit=3)

    async def attempt(i: int) -> grpc.aio.AioRpcError | pb.ReservePromotionUsageResponse:
        try:
            return await promotion_stub.ReservePromotionUsage(
                reserve_request(unique(f"ref{i}"), [promo.code], customer_id=f"cust-{i}"),
                metadata=bearer(service_token),
            )
        except grpc.aio.AioRpcError as err:
            return err

    results = await asyncio.gather(*(attempt(i) for i in range(10)))
    ok = [r for r in results if isinstance(r, pb.ReservePromotionUsageResponse)]
    failed = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(ok) == 3
    assert len(failed) == 7
    for err in failed:
        assert failure(err) == (grpc.StatusCode.FAILED_PRECONDITION, "PROMOTION_EXHAUSTED", {"code": promo.code})
    assert await counts(promotion_db, promo.code) == (0, 3)


async def test_per_customer_limit_holds_under_concurrency(
    promotion_stub: PromotionServiceStub, admin_token: str, service_token: str
) -> None:
    promo = await create(promotion_stub, admin_token, usage_limit_per_customer=1)
    customer = unique("cust")

    async def attempt(customer_id: str) -> bool:
        try:
            await promotion_stub.ReservePromotionUsage(
                reserve_request(unique("ref"), [promo.code], customer_id=customer_id), metadata=bearer(service_token)
            )
        except grpc.aio.AioRpcError as err:
            assert failure(err)[1] == "PROMOTION_EXHAUSTED"
            return False
        return True

    results = await asyncio.gather(*(attempt(customer) for _ in range(5)))
    assert results.count(True) == 1
    assert await attempt(unique("other-cust")) is True


async def test_reserve_is_idempotent_by_reference(
    promotion_stub: PromotionServiceStub, admin_token: str, service_token: str, promotion_db: AsyncEngine
) -> None:
    pct = await create(promotion_stub, admin_token, usage_limit=10)
    ship = await create(promotion_stub, admin_token, type=ppb.PROMOTION_TYPE_FREE_SHIPPING, percent_off=0)
    ref = unique("session")
    first = await promotion_stub.ReservePromotionUsage(
        reserve_request(ref, [pct.code, ship.code.lower()]), metadata=bearer(service_token)
    )
    again = await promotion_stub.ReservePromotionUsage(
        reserve_request(ref, [pct.code, ship.code]), metadata=bearer(service_token)
    )
    assert again == first
    assert first.discount_total == usd(1250 + 499)
    assert first.free_shipping is True
    assert [a.code for a in first.applied] == [pct.code, ship.code]
    assert await counts(promotion_db, pct.code) == (0, 1)
    assert await counts(promotion_db, ship.code) == (0, 1)

    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await promotion_stub.ReservePromotionUsage(reserve_request(ref, [pct.code]), metadata=bearer(service_token))
    assert failure(exc_info.value)[:2] == (grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")


async def test_concurrent_retries_of_one_reference_count_once(
    promotion_stub: PromotionServiceStub, admin_token: str, service_token: str, promotion_db: AsyncEngine
) -> None:
    promo = await create(promotion_stub, admin_token)
    ref = unique("session")
    results = await asyncio.gather(
        *(
            promotion_stub.ReservePromotionUsage(reserve_request(ref, [promo.code]), metadata=bearer(service_token))
            for _ in range(5)
        )
    )
    assert all(r == results[0] for r in results)
    assert await counts(promotion_db, promo.code) == (0, 1)


async def test_a_failed_multi_code_reservation_leaves_nothing_reserved(
    promotion_stub: PromotionServiceStub, admin_token: str, service_token: str, promotion_db: AsyncEngine
) -> None:
    good = await create(promotion_stub, admin_token, code="A" + unique("GOOD").upper())
    full = await create(promotion_stub, admin_token, code="Z" + unique("FULL").upper(), usage_limit=1)
    await promotion_stub.ReservePromotionUsage(
        reserve_request(unique("ref"), [full.code]), metadata=bearer(service_token)
    )
    ref = unique("ref")
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await promotion_stub.ReservePromotionUsage(
            reserve_request(ref, [good.code, full.code]), metadata=bearer(service_token)
        )
    assert failure(exc_info.value) == (grpc.StatusCode.FAILED_PRECONDITION, "PROMOTION_EXHAUSTED", {"code": full.code})
    assert await counts(promotion_db, good.code) == (0, 0)
    assert await counts(promotion_db, full.code) == (0, 1)
    # Nothing was recorded for the reference either: confirming it confirms nothing.
    confirmed = await promotion_stub.ConfirmPromotionUsage(
        pb.ConfirmPromotionUsageRequest(reservation_ref=ref), metadata=bearer(service_token)
    )
    assert confirmed.confirmed == 0


async def test_an_invalid_code_fails_the_whole_reservation(
    promotion_stub: PromotionServiceStub, admin_token: str, service_token: str, promotion_db: AsyncEngine
) -> None:
    good = await create(promotion_stub, admin_token)
    unknown = unique("NOPE").upper()
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await promotion_stub.ReservePromotionUsage(
            reserve_request(unique("ref"), [good.code, unknown]), metadata=bearer(service_token)
        )
    assert failure(exc_info.value) == (grpc.StatusCode.FAILED_PRECONDITION, "PROMOTION_INVALID", {"code": unknown})
    assert await counts(promotion_db, good.code) == (0, 0)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"reservation_ref": ""}, "reservation_ref"),
        ({"customer_id": ""}, "customer_id"),
        ({"reservation_ref": "ref\x00"}, "reservation_ref"),
        ({"customer_id": "cust\x00"}, "customer_id"),
    ],
)
async def test_reserve_names_the_bad_field(
    promotion_stub: PromotionServiceStub, service_token: str, changes: dict[str, Any], field: str
) -> None:
    request = reserve_request("ref", ["X"])
    for key, value in changes.items():
        setattr(request, key, value)
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await promotion_stub.ReservePromotionUsage(request, metadata=bearer(service_token))
    assert failure(exc_info.value) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", {"field": field})


# -- Confirm / Release -----------------------------------------------------------------------------


async def outbox_events(db: AsyncEngine, ref: str) -> list[tuple[str, str, dict[str, Any]]]:
    async with db.connect() as conn:
        rows = (
            await conn.execute(
                sa.text(
                    "SELECT event_type, subject, payload FROM promotion.outbox"
                    " WHERE aggregate_id = :r ORDER BY created_at"
                ),
                {"r": ref},
            )
        ).all()
    return [
        (r.event_type, r.subject, r.payload if isinstance(r.payload, dict) else json.loads(r.payload)) for r in rows
    ]


async def test_confirm_is_idempotent_and_publishes_once(
    promotion_stub: PromotionServiceStub, admin_token: str, service_token: str, promotion_db: AsyncEngine
) -> None:
    promo = await create(promotion_stub, admin_token, usage_limit=5)
    ref = unique("session")
    await promotion_stub.ReservePromotionUsage(
        reserve_request(ref, [promo.code], customer_id="cust-c"), metadata=bearer(service_token)
    )
    for _ in range(3):
        resp = await promotion_stub.ConfirmPromotionUsage(
            pb.ConfirmPromotionUsageRequest(reservation_ref=ref), metadata=bearer(service_token)
        )
        assert resp.confirmed == 1
    assert await counts(promotion_db, promo.code) == (1, 0)
    # A confirmed use is not given back by a late release.
    released = await promotion_stub.ReleasePromotionUsage(
        pb.ReleasePromotionUsageRequest(reservation_ref=ref), metadata=bearer(service_token)
    )
    assert released.released == 0
    assert await counts(promotion_db, promo.code) == (1, 0)

    events = await outbox_events(promotion_db, ref)
    assert [(e[0], e[1]) for e in events] == [("PromotionUsageConfirmed", "kassa.promotion.PromotionUsageConfirmed")]
    data = events[0][2]["data"]
    assert data["reservation_ref"] == ref
    assert data["customer_id"] == "cust-c"
    assert [p["code"] for p in data["promotions"]] == [promo.code]


async def test_release_is_idempotent_and_gives_the_use_back(
    promotion_stub: PromotionServiceStub, admin_token: str, service_token: str, promotion_db: AsyncEngine
) -> None:
    promo = await create(promotion_stub, admin_token, usage_limit=1)
    ref = unique("session")
    await promotion_stub.ReservePromotionUsage(reserve_request(ref, [promo.code]), metadata=bearer(service_token))
    for _ in range(2):
        resp = await promotion_stub.ReleasePromotionUsage(
            pb.ReleasePromotionUsageRequest(reservation_ref=ref), metadata=bearer(service_token)
        )
        assert resp.released == 1
    assert await counts(promotion_db, promo.code) == (0, 0)
    assert [e[0] for e in await outbox_events(promotion_db, ref)] == ["PromotionUsageReleased"]

    # A released reservation cannot be confirmed...
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await promotion_stub.ConfirmPromotionUsage(
            pb.ConfirmPromotionUsageRequest(reservation_ref=ref), metadata=bearer(service_token)
        )
    assert failure(exc_info.value)[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "PROMOTION_INVALID")
    # ...but the same reference may reserve again (a new checkout attempt), and the freed use is there.
    again = await promotion_stub.ReservePromotionUsage(
        reserve_request(ref, [promo.code]), metadata=bearer(service_token)
    )
    assert [a.code for a in again.applied] == [promo.code]
    assert await counts(promotion_db, promo.code) == (0, 1)


async def test_confirmed_events_reach_the_outbox_publisher(
    promotion_stub: PromotionServiceStub, admin_token: str, service_token: str, promotion_db: AsyncEngine
) -> None:
    promo = await create(promotion_stub, admin_token)
    ref = unique("session")
    await promotion_stub.ReservePromotionUsage(reserve_request(ref, [promo.code]), metadata=bearer(service_token))
    await promotion_stub.ConfirmPromotionUsage(
        pb.ConfirmPromotionUsageRequest(reservation_ref=ref), metadata=bearer(service_token)
    )
    status = None
    for _ in range(100):
        async with promotion_db.connect() as conn:
            status = await conn.scalar(
                sa.text("SELECT status FROM promotion.outbox WHERE aggregate_id = :r"), {"r": ref}
            )
        if status == "sent":
            break
        await asyncio.sleep(0.1)
    assert status == "sent"
