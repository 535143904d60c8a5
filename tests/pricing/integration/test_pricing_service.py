"""PricingService over gRPC against real Postgres: catalog, shipping, tax, and field-named refusals."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, date, datetime
from typing import Any

import grpc
import pytest
from helpers import bearer, unique

from infra.grpc_errors import error_info
from kassa.common.v1 import address_pb2, money_pb2
from kassa.pricing.v1 import pricing_service_pb2 as pb
from kassa.pricing.v1.pricing_service_pb2_grpc import PricingServiceStub

pytestmark = pytest.mark.integration


def usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="USD", amount_minor=amount)


def eur(amount: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="EUR", amount_minor=amount)


def product(sku: str, *prices: money_pb2.Money, **fields: Any) -> pb.Product:
    values: dict[str, Any] = {
        "sku": sku,
        "name": f"Product {sku}",
        "category": "gadgets",
        "brand": "Acme",
        "weight_grams": 1200,
        "tax_class": "standard",
    }
    values.update(fields)
    return pb.Product(prices=list(prices) or [usd(1999)], **values)


def address(country: str) -> address_pb2.Address:
    return address_pb2.Address(name="A", line1="1 Main St", city="Town", postal_code="1", country_code=country)


async def expect_invalid(call: Awaitable[Any], field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await call
    err = exc_info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    info = error_info(err)
    assert info is not None
    assert info.reason == "INVALID_ARGUMENT"
    assert info.metadata["field"] == field


# -- GetProducts / UpsertProducts -----------------------------------------------------------------


async def test_upsert_then_get_prices_in_the_requested_currency(
    pricing_stub: PricingServiceStub, admin_token: str, customer_token: str
) -> None:
    a, b, unknown = unique("SKU"), unique("SKU"), unique("SKU")
    await pricing_stub.UpsertProducts(
        pb.UpsertProductsRequest(products=[product(a, usd(1999), eur(1899)), product(b, eur(500))]),
        metadata=bearer(admin_token),
    )
    resp = await pricing_stub.GetProducts(
        pb.GetProductsRequest(skus=[a, b, unknown], currency_code="USD"), metadata=bearer(customer_token)
    )
    assert [p.product.sku for p in resp.products] == [a]
    found = resp.products[0]
    assert found.unit_price == usd(1999)
    assert found.product.weight_grams == 1200
    assert found.product.tax_class == "standard"
    assert {(m.currency_code, m.amount_minor) for m in found.product.prices} == {("USD", 1999), ("EUR", 1899)}
    # b has no USD price; unknown is not in the catalog.
    assert list(resp.missing_skus) == [b, unknown]


async def test_upsert_replaces_the_price_list(pricing_stub: PricingServiceStub, admin_token: str) -> None:
    sku = unique("SKU")
    await pricing_stub.UpsertProducts(
        pb.UpsertProductsRequest(products=[product(sku, usd(1000), eur(900))]), metadata=bearer(admin_token)
    )
    await pricing_stub.UpsertProducts(
        pb.UpsertProductsRequest(products=[product(sku, usd(1100), name="Renamed")]), metadata=bearer(admin_token)
    )
    in_eur = await pricing_stub.GetProducts(
        pb.GetProductsRequest(skus=[sku], currency_code="EUR"), metadata=bearer(admin_token)
    )
    assert list(in_eur.missing_skus) == [sku]
    in_usd = await pricing_stub.GetProducts(
        pb.GetProductsRequest(skus=[sku], currency_code="USD"), metadata=bearer(admin_token)
    )
    assert in_usd.products[0].unit_price == usd(1100)
    assert in_usd.products[0].product.name == "Renamed"


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"sku": "has space"}, "products[1].sku"),
        ({"name": "  "}, "products[1].name"),
        ({"weight_grams": -1}, "products[1].weight_grams"),
        ({"tax_class": "luxury"}, "products[1].tax_class"),
        ({"prices": []}, "products[1].prices"),
        (
            {"prices": [usd(100), money_pb2.Money(currency_code="usd", amount_minor=1)]},
            "products[1].prices[1].currency_code",
        ),
        (
            {"prices": [usd(100), money_pb2.Money(currency_code="XXX", amount_minor=1)]},
            "products[1].prices[1].currency_code",
        ),
        ({"prices": [usd(100), usd(200)]}, "products[1].prices[1].currency_code"),
        ({"prices": [usd(100), eur(-1)]}, "products[1].prices[1].amount_minor"),
        # What Postgres can't store (NUL) or a field must not hold; amounts and weights past their caps.
        ({"sku": "SKU-1\n"}, "products[1].sku"),
        ({"name": "Bad\x00"}, "products[1].name"),
        ({"name": "x" * 201}, "products[1].name"),
        ({"category": "gadg\x00ets"}, "products[1].category"),
        ({"brand": "\x1b[31mAcme"}, "products[1].brand"),
        ({"weight_grams": 2**62}, "products[1].weight_grams"),
        ({"weight_grams": 10_000_001}, "products[1].weight_grams"),
        ({"prices": [usd(100), eur(2**63 - 1)]}, "products[1].prices[1].amount_minor"),
    ],
)
async def test_upsert_refuses_bad_fields_and_writes_nothing(
    pricing_stub: PricingServiceStub, admin_token: str, bad: dict[str, Any], field: str
) -> None:
    good_sku = unique("SKU")
    values = {"sku": unique("SKU"), "name": "Bad", "weight_grams": 1, "tax_class": "standard", "prices": [usd(1)]}
    values.update(bad)
    request = pb.UpsertProductsRequest(products=[product(good_sku), pb.Product(**values)])
    await expect_invalid(pricing_stub.UpsertProducts(request, metadata=bearer(admin_token)), field)
    resp = await pricing_stub.GetProducts(pb.GetProductsRequest(skus=[good_sku]), metadata=bearer(admin_token))
    assert list(resp.missing_skus) == [good_sku]


async def test_upsert_refuses_duplicate_skus(pricing_stub: PricingServiceStub, admin_token: str) -> None:
    sku = unique("SKU")
    request = pb.UpsertProductsRequest(products=[product(sku), product(sku)])
    await expect_invalid(pricing_stub.UpsertProducts(request, metadata=bearer(admin_token)), "products[1].sku")


async def test_upsert_needs_admin(pricing_stub: PricingServiceStub, customer_token: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await pricing_stub.UpsertProducts(
            pb.UpsertProductsRequest(products=[product(unique("SKU"))]), metadata=bearer(customer_token)
        )
    assert exc_info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_get_products_refuses_bad_input(pricing_stub: PricingServiceStub, customer_token: str) -> None:
    await expect_invalid(
        pricing_stub.GetProducts(
            pb.GetProductsRequest(skus=["A"], currency_code="DOLLAR"), metadata=bearer(customer_token)
        ),
        "currency_code",
    )
    await expect_invalid(
        pricing_stub.GetProducts(
            pb.GetProductsRequest(skus=["A", ""], currency_code="USD"), metadata=bearer(customer_token)
        ),
        "skus[1]",
    )


async def test_get_products_needs_credentials(pricing_stub: PricingServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc_info:
        await pricing_stub.GetProducts(pb.GetProductsRequest(skus=["A"]))
    assert exc_info.value.code() == grpc.StatusCode.UNAUTHENTICATED


# -- QuoteShipping ---------------------------------------------------------------------------------


async def test_quote_shipping_prices_each_parcel_from_its_own_origin(
    pricing_stub: PricingServiceStub, customer_token: str
) -> None:
    request = pb.QuoteShippingRequest(
        parcels=[
            pb.Parcel(warehouse_id="wh-us", origin=address("US"), weight_grams=1000),
            pb.Parcel(warehouse_id="wh-de", origin=address("DE"), weight_grams=2001),
        ],
        destination=address("US"),
        shipping_method="standard",
        currency_code="USD",
    )
    resp = await pricing_stub.QuoteShipping(request, metadata=bearer(customer_token))
    # US -> US: 499 + 1 kg * 100. DE -> US: 499 + 3 kg * 100 + 1000 surcharge.
    assert resp.shipping_total == usd(599 + 1799)
    # The order arrives with its slowest parcel: DE -> US is international standard, 7 to 14 business days.
    window = resp.delivery_window
    assert (window.min_business_days, window.max_business_days) == (7, 14)
    earliest, latest = date.fromisoformat(window.earliest_date), date.fromisoformat(window.latest_date)
    today = datetime.now(UTC).date()
    assert today < earliest < latest and earliest.weekday() < 5 and latest.weekday() < 5
    assert (latest - today).days >= 14 + 2 * 2  # 14 business days span at least two weekends


async def test_quote_express_in_eur(pricing_stub: PricingServiceStub, service_token: str) -> None:
    request = pb.QuoteShippingRequest(
        parcels=[pb.Parcel(warehouse_id="wh-de", origin=address("DE"), weight_grams=500)],
        destination=address("DE"),
        shipping_method="express",
        currency_code="EUR",
    )
    resp = await pricing_stub.QuoteShipping(request, metadata=bearer(service_token))
    assert resp.shipping_total == eur(1499 + 250)
    assert (resp.delivery_window.min_business_days, resp.delivery_window.max_business_days) == (1, 2)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"shipping_method": "overnight"}, "shipping_method"),
        ({"currency_code": ""}, "currency_code"),
        ({"currency_code": "JPY"}, "currency_code"),
        ({"destination": address_pb2.Address()}, "destination.country_code"),
        ({"destination": address("usa")}, "destination.country_code"),
        (
            {"parcels": [pb.Parcel(origin=address("US"), weight_grams=1), pb.Parcel(weight_grams=1)]},
            "parcels[1].origin.country_code",
        ),
        ({"parcels": [pb.Parcel(origin=address("US"), weight_grams=-5)]}, "parcels[0].weight_grams"),
    ],
)
async def test_quote_shipping_refuses_bad_fields(
    pricing_stub: PricingServiceStub, customer_token: str, changes: dict[str, Any], field: str
) -> None:
    values: dict[str, Any] = {
        "parcels": [pb.Parcel(warehouse_id="wh", origin=address("US"), weight_grams=100)],
        "destination": address("US"),
        "shipping_method": "standard",
        "currency_code": "USD",
    }
    values.update(changes)
    request = pb.QuoteShippingRequest(**values)
    await expect_invalid(pricing_stub.QuoteShipping(request, metadata=bearer(customer_token)), field)


# -- CalculateTax ----------------------------------------------------------------------------------


async def test_calculate_tax_per_line_and_shipping_at_the_standard_rate(
    pricing_stub: PricingServiceStub, service_token: str
) -> None:
    request = pb.CalculateTaxRequest(
        lines=[
            pb.TaxLine(sku="A", tax_class="standard", amount=eur(4999)),
            pb.TaxLine(sku="B", tax_class="reduced", amount=eur(3499)),
            pb.TaxLine(sku="C", tax_class="zero", amount=eur(5000)),
        ],
        destination=address("DE"),
        shipping_total=eur(499),
        currency_code="EUR",
    )
    resp = await pricing_stub.CalculateTax(request, metadata=bearer(service_token))
    # 4999 * 19% = 949.81 -> 950; 3499 * 7% = 244.93 -> 245; zero -> 0; shipping 499 * 19% = 94.81 -> 95.
    assert [(line.sku, line.tax.amount_minor) for line in resp.lines] == [("A", 950), ("B", 245), ("C", 0)]
    assert resp.tax_total == eur(950 + 245 + 95)


async def test_calculate_tax_unlisted_country_is_untaxed(pricing_stub: PricingServiceStub, service_token: str) -> None:
    request = pb.CalculateTaxRequest(
        lines=[pb.TaxLine(sku="A", tax_class="standard", amount=usd(10_000))],
        destination=address("BR"),
        shipping_total=usd(499),
        currency_code="USD",
    )
    resp = await pricing_stub.CalculateTax(request, metadata=bearer(service_token))
    assert resp.tax_total == usd(0)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"currency_code": "??"}, "currency_code"),
        ({"destination": address_pb2.Address()}, "destination.country_code"),
        ({"lines": [pb.TaxLine(sku="A", tax_class="luxury", amount=usd(1))]}, "lines[0].tax_class"),
        ({"lines": [pb.TaxLine(sku="A", tax_class="standard", amount=eur(1))]}, "lines[0].amount.currency_code"),
        ({"lines": [pb.TaxLine(sku="A", tax_class="standard", amount=usd(-1))]}, "lines[0].amount.amount_minor"),
        ({"shipping_total": eur(499)}, "shipping_total.currency_code"),
        ({"lines": [pb.TaxLine(sku="A", tax_class="standard", amount=usd(2**63 - 1))]}, "lines[0].amount.amount_minor"),
        ({"shipping_total": usd(2**62)}, "shipping_total.amount_minor"),
    ],
)
async def test_calculate_tax_refuses_bad_fields(
    pricing_stub: PricingServiceStub, service_token: str, changes: dict[str, Any], field: str
) -> None:
    values: dict[str, Any] = {
        "lines": [pb.TaxLine(sku="A", tax_class="standard", amount=usd(100))],
        "destination": address("US"),
        "shipping_total": usd(0),
        "currency_code": "USD",
    }
    values.update(changes)
    request = pb.CalculateTaxRequest(**values)
    await expect_invalid(pricing_stub.CalculateTax(request, metadata=bearer(service_token)), field)


# -- QuoteOrder -------------------------------------------------------------------------------------


async def test_quote_order_answers_what_the_three_calls_answer(
    pricing_stub: PricingServiceStub, admin_token: str, service_token: str
) -> None:
    """Same products, shipping and tax as GetProducts + QuoteShipping + CalculateTax on undiscounted lines,
    with a sku split over two warehouses taxed (and rounded) line by line."""
    a, b = unique("QO-A"), unique("QO-B")
    await pricing_stub.UpsertProducts(
        pb.UpsertProductsRequest(
            products=[
                product(a, eur(4999), usd(5333), weight_grams=700),
                product(b, eur(3499), usd(1999), weight_grams=2500, tax_class="reduced"),
            ]
        ),
        metadata=bearer(admin_token),
    )
    md = bearer(service_token)
    lines = [pb.QuoteOrderLine(sku=a, quantity=1), pb.QuoteOrderLine(sku=b, quantity=3),
             pb.QuoteOrderLine(sku=a, quantity=2)]  # fmt: skip
    parcels = [
        pb.Parcel(warehouse_id="wh-de", origin=address("DE"), weight_grams=700 + 7500),
        pb.Parcel(warehouse_id="wh-us", origin=address("US"), weight_grams=1400),
    ]
    for currency, destination in (("EUR", "DE"), ("USD", "US"), ("EUR", "BR")):
        quoted = await pricing_stub.QuoteOrder(
            pb.QuoteOrderRequest(lines=lines, parcels=parcels, destination=address(destination),
                                 shipping_method="express", currency_code=currency),
            metadata=md,
        )  # fmt: skip
        products = await pricing_stub.GetProducts(
            pb.GetProductsRequest(skus=[a, b], currency_code=currency), metadata=md
        )
        shipping = await pricing_stub.QuoteShipping(
            pb.QuoteShippingRequest(parcels=parcels, destination=address(destination), shipping_method="express",
                                    currency_code=currency),
            metadata=md,
        )  # fmt: skip
        price = {p.product.sku: p for p in products.products}
        taxed = await pricing_stub.CalculateTax(
            pb.CalculateTaxRequest(
                lines=[
                    pb.TaxLine(
                        sku=ln.sku,
                        tax_class=price[ln.sku].product.tax_class,
                        amount=money_pb2.Money(
                            currency_code=currency, amount_minor=price[ln.sku].unit_price.amount_minor * ln.quantity
                        ),
                    )
                    for ln in lines
                ],
                destination=address(destination),
                shipping_total=shipping.shipping_total,
                currency_code=currency,
            ),
            metadata=md,
        )
        assert list(quoted.products) == list(products.products)
        assert list(quoted.missing_skus) == []
        assert quoted.shipping_total == shipping.shipping_total
        assert quoted.tax_total == taxed.tax_total
        assert quoted.tax_total.amount_minor > 0 or destination == "BR"


async def test_quote_order_taxes_the_lines_and_shipping_less_their_discounts(
    pricing_stub: PricingServiceStub, admin_token: str, service_token: str
) -> None:
    """With per-line discounts and a shipping discount: the same products and shipping as without them, and the
    tax CalculateTax answers for the discounted lines and shipping (a discount past its total leaves zero)."""
    a, b = unique("QOD-A"), unique("QOD-B")
    await pricing_stub.UpsertProducts(
        pb.UpsertProductsRequest(
            products=[product(a, usd(5333), weight_grams=700), product(b, usd(1999), tax_class="reduced")]
        ),
        metadata=bearer(admin_token),
    )
    md = bearer(service_token)
    parcels = [pb.Parcel(warehouse_id="wh-us", origin=address("US"), weight_grams=5000)]
    # line totals 5333, 5997, 10666; discounts 1001, 333, 20000 (past the line: taxed as 0)
    lines = [
        pb.QuoteOrderLine(sku=a, quantity=1, discount=usd(1001)),
        pb.QuoteOrderLine(sku=b, quantity=3, discount=usd(333)),
        pb.QuoteOrderLine(sku=a, quantity=2, discount=usd(20000)),
    ]
    plain = [pb.QuoteOrderLine(sku=ln.sku, quantity=ln.quantity) for ln in lines]
    for shipping_discount in (None, usd(0), usd(250), usd(10**9)):
        base = {"parcels": parcels, "destination": address("US"), "shipping_method": "express", "currency_code": "USD"}
        undiscounted = await pricing_stub.QuoteOrder(pb.QuoteOrderRequest(lines=plain, **base), metadata=md)
        quoted = await pricing_stub.QuoteOrder(
            pb.QuoteOrderRequest(lines=lines, shipping_discount=shipping_discount, **base), metadata=md
        )
        shipping = undiscounted.shipping_total.amount_minor
        left = shipping - min(shipping, shipping_discount.amount_minor if shipping_discount is not None else 0)
        taxed = await pricing_stub.CalculateTax(
            pb.CalculateTaxRequest(
                lines=[pb.TaxLine(sku=a, tax_class="standard", amount=usd(5333 - 1001)),
                       pb.TaxLine(sku=b, tax_class="reduced", amount=usd(5997 - 333)),
                       pb.TaxLine(sku=a, tax_class="standard", amount=usd(0))],
                destination=address("US"), shipping_total=usd(left), currency_code="USD",
            ),
            metadata=md,
        )  # fmt: skip
        assert list(quoted.products) == list(undiscounted.products)
        assert quoted.shipping_total == undiscounted.shipping_total  # before its discount
        assert quoted.delivery_window == undiscounted.delivery_window
        assert quoted.tax_total == taxed.tax_total
        assert quoted.tax_total.amount_minor < undiscounted.tax_total.amount_minor


async def test_quote_order_reports_missing_skus_without_totals(
    pricing_stub: PricingServiceStub, service_token: str
) -> None:
    gone = unique("QO-GONE")
    quoted = await pricing_stub.QuoteOrder(
        pb.QuoteOrderRequest(
            lines=[pb.QuoteOrderLine(sku=gone, quantity=1)],
            parcels=[pb.Parcel(warehouse_id="wh", origin=address("US"), weight_grams=100)],
            destination=address("US"),
            shipping_method="standard",
            currency_code="USD",
        ),
        metadata=bearer(service_token),
    )
    assert list(quoted.missing_skus) == [gone]
    assert not quoted.HasField("shipping_total") and not quoted.HasField("tax_total")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"lines": []}, "lines"),
        ({"lines": [pb.QuoteOrderLine(sku="", quantity=1)]}, "lines[0].sku"),
        ({"lines": [pb.QuoteOrderLine(sku="A", quantity=1), pb.QuoteOrderLine(sku="B", quantity=0)]},
         "lines[1].quantity"),
        ({"shipping_method": "overnight"}, "shipping_method"),
        ({"currency_code": "??"}, "currency_code"),
        ({"destination": address_pb2.Address()}, "destination.country_code"),
        ({"parcels": [pb.Parcel(origin=address("US"), weight_grams=-5)]}, "parcels[0].weight_grams"),
        ({"parcels": [pb.Parcel(origin=address("US"), weight_grams=2**62)]}, "parcels[0].weight_grams"),
        ({"parcels": [pb.Parcel(origin=address("US"), weight_grams=10**12 + 1)]}, "parcels[0].weight_grams"),
        ({"destination": address("US\n")}, "destination.country_code"),
        ({"lines": [pb.QuoteOrderLine(sku="A", quantity=1, discount=money_pb2.Money(currency_code="USD",
                                                                                  amount_minor=-1))]},
         "lines[0].discount.amount_minor"),
        ({"lines": [pb.QuoteOrderLine(sku="A", quantity=1), pb.QuoteOrderLine(sku="B", quantity=1, discount=eur(5))]},
         "lines[1].discount.currency_code"),
        ({"lines": [pb.QuoteOrderLine(sku="A", quantity=1, discount=money_pb2.Money(amount_minor=5))]},
         "lines[0].discount.currency_code"),
        ({"lines": [pb.QuoteOrderLine(sku="A", quantity=1, discount=usd(10**15))]},
         "lines[0].discount.amount_minor"),
        ({"shipping_discount": eur(100)}, "shipping_discount.currency_code"),
        ({"shipping_discount": money_pb2.Money(currency_code="USD", amount_minor=-100)},
         "shipping_discount.amount_minor"),
    ],
)  # fmt: skip
async def test_quote_order_refuses_bad_fields(
    pricing_stub: PricingServiceStub, service_token: str, changes: dict[str, Any], field: str
) -> None:
    values: dict[str, Any] = {
        "lines": [pb.QuoteOrderLine(sku="A", quantity=1)],
        "parcels": [pb.Parcel(warehouse_id="wh", origin=address("US"), weight_grams=100)],
        "destination": address("US"),
        "shipping_method": "standard",
        "currency_code": "USD",
    }
    values.update(changes)
    await expect_invalid(pricing_stub.QuoteOrder(pb.QuoteOrderRequest(**values), metadata=bearer(service_token)), field)


async def test_quote_order_refuses_totals_no_payment_could_carry(
    pricing_stub: PricingServiceStub, admin_token: str, service_token: str
) -> None:
    """A thousand lines of a million units at the highest price: the tax passed int64 and came back INTERNAL."""
    sku = unique("SKU")
    await pricing_stub.UpsertProducts(
        pb.UpsertProductsRequest(products=[product(sku, usd(99_999_999_999))]), metadata=bearer(admin_token)
    )
    request = pb.QuoteOrderRequest(
        lines=[pb.QuoteOrderLine(sku=sku, quantity=1_000_000)] * 1000,
        parcels=[pb.Parcel(warehouse_id="wh", origin=address("US"), weight_grams=100)],
        destination=address("US"),
        shipping_method="standard",
        currency_code="USD",
    )
    await expect_invalid(pricing_stub.QuoteOrder(request, metadata=bearer(service_token)), "lines")


async def test_a_parcel_of_999_units_of_a_heavy_product_is_quoted(
    pricing_stub: PricingServiceStub, service_token: str
) -> None:
    """Checkout sums a line's weight into its warehouse's parcel: 999 units of the heaviest product must pass."""
    request = pb.QuoteShippingRequest(
        parcels=[pb.Parcel(warehouse_id="wh", origin=address("US"), weight_grams=999 * 10_000_000)],
        destination=address("US"),
        shipping_method="standard",
        currency_code="USD",
    )
    quoted = await pricing_stub.QuoteShipping(request, metadata=bearer(service_token))
    assert quoted.shipping_total.amount_minor > 0
