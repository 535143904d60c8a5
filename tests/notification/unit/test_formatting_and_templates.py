"""Money in the order's currency, delivery windows on business days, and the rendered messages."""

from __future__ import annotations

from datetime import date

import pytest

from kernel.delivery import DeliveryWindow, add_business_days
from kernel.money import Money
from notification.adapter.jinja_renderer import JinjaRenderer
from notification.model.formatting import format_money, format_window
from notification.model.message import DeliveryWindow as Window
from notification.model.message import Kind, Notice, OrderLineView, OrderView

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("money", "text"),
    [
        (Money("USD", 123456), "$1,234.56"),
        (Money("USD", 5), "$0.05"),
        (Money("EUR", 100), "€1.00"),
        (Money("JPY", 1200), "¥1,200"),
        (Money("KRW", 1234567), "₩1,234,567"),
        (Money("SEK", 99950), "999.50 SEK"),
        (Money("GBP", -250), "-£2.50"),
        (Money("CAD", 1000000), "CA$10,000.00"),
    ],
)
def test_money_is_formatted_in_its_own_currency(money: Money, text: str) -> None:
    assert format_money(money) == text


@pytest.mark.parametrize(
    ("start", "days", "expected"),
    [
        (date(2026, 12, 7), 0, date(2026, 12, 7)),  # Monday, same day
        (date(2026, 12, 7), 4, date(2026, 12, 11)),  # Monday + 4 = Friday
        (date(2026, 12, 11), 1, date(2026, 12, 14)),  # Friday + 1 = Monday
        (date(2026, 12, 11), 2, date(2026, 12, 15)),
        (date(2026, 12, 12), 0, date(2026, 12, 14)),  # Saturday: nothing moves before Monday
        (date(2026, 12, 13), 1, date(2026, 12, 14)),  # Sunday + 1 = Monday
        (date(2026, 12, 7), 10, date(2026, 12, 21)),  # two weeks
    ],
)
def test_business_days_skip_weekends(start: date, days: int, expected: date) -> None:
    assert add_business_days(start, days) == expected


def test_a_window_is_its_slowest_parcel_and_refuses_nonsense() -> None:
    assert DeliveryWindow(2, 4).widest(DeliveryWindow(3, 3)) == DeliveryWindow(3, 4)
    assert DeliveryWindow(2, 4).dates_from(date(2026, 12, 11)) == (date(2026, 12, 15), date(2026, 12, 17))
    with pytest.raises(ValueError):
        DeliveryWindow(5, 2)
    assert format_window(date(2026, 12, 15), date(2026, 12, 17)) == "Tue 15 Dec 2026 to Thu 17 Dec 2026"


def _order(**overrides: object) -> OrderView:
    jpy = Money.zero("JPY")
    values: dict[str, object] = {
        "order_id": "0f1e2d3c-aaaa-bbbb-cccc-000000000000",
        "email": "ada@example.com",
        "customer_name": "Ada & <Co>",
        "status": "CONFIRMED",
        "currency_code": "JPY",
        "lines": (OrderLineView("KB-1", "Keyboard <b>", 3, Money("JPY", 1200), Money("JPY", 3600)),),
        "subtotal": Money("JPY", 3600),
        "discount_total": jpy,
        "shipping_total": Money("JPY", 500),
        "tax_total": Money("JPY", 410),
        "grand_total": Money("JPY", 4510),
        "shipping_method": "express",
        "payment_method": "tok_visa",
        "delivery_window": Window(date(2026, 12, 8), date(2026, 12, 9)),
    }
    values.update(overrides)
    return OrderView(**values)  # type: ignore[arg-type]


def test_the_confirmation_shows_lines_totals_and_window_escaped_in_html() -> None:
    order = _order()
    notice = Notice("e1", "OrderConfirmed", Kind.CONFIRMATION, order.order_id)
    rendered = JinjaRenderer().render(Kind.CONFIRMATION, order, notice)
    assert rendered.subject == "Your Kassa order 0F1E2D3C is confirmed"
    assert "3 x Keyboard <b> (KB-1)  ¥1,200 each  ¥3,600" in rendered.text
    assert "Total      ¥4,510" in rendered.text
    assert "Discounts" not in rendered.text
    assert "Estimated delivery: Tue 8 Dec 2026 to Wed 9 Dec 2026" in rendered.text
    assert "Keyboard &lt;b&gt;" in rendered.html and "<b>" not in rendered.html.replace("<body", "")
    assert "Ada &amp; &lt;Co&gt;" in rendered.html
    assert "<strong>¥4,510</strong>" in rendered.html


@pytest.mark.parametrize(
    ("kind", "subject", "phrase"),
    [
        (Kind.PAYMENT_FAILED, "did not go through", "Reason: payment failed: authentication_failed"),
        (Kind.CANCELLED, "was cancelled", "released or refunded"),
        (Kind.SHIPPED, "has shipped", "Tracking number: 1Z9"),
        (Kind.DELIVERED, "was delivered", "was delivered"),
    ],
)
def test_every_kind_renders(kind: Kind, subject: str, phrase: str) -> None:
    order = _order(carrier="DHL", tracking_number="1Z9")
    notice = Notice("e1", "X", kind, order.order_id, cause="payment failed: authentication_failed")
    rendered = JinjaRenderer().render(kind, order, notice)
    assert subject in rendered.subject and phrase in rendered.text
    assert ("Estimated delivery" in rendered.text) == (kind is Kind.SHIPPED)


def test_cash_on_delivery_says_what_to_pay_at_the_door() -> None:
    order = _order(payment_method="cod", delivery_window=None)
    rendered = JinjaRenderer().render(Kind.CONFIRMATION, order, Notice("e", "OrderConfirmed", Kind.CONFIRMATION, "o"))
    assert "you pay ¥4,510 in cash on delivery" in rendered.text
    assert "Estimated delivery" not in rendered.text


@pytest.mark.parametrize(
    ("outcome", "overrides", "says", "never"),
    [
        ("CAPTURED", {}, "your payment of ¥4,510 is in", "reserved"),
        ("AUTHORIZED", {}, "reserved ¥4,510 on your card; it will be charged when your order ships", "is in"),
        ("CASH_ON_DELIVERY", {"payment_method": "cod"}, "in cash on delivery; nothing has been charged", "is in"),
        ("CAPTURED", {"grand_total": Money.zero("JPY")}, "there is nothing to pay", "is in"),
        ("", {}, "its total is ¥4,510", "is in"),
    ],
)
def test_the_confirmation_words_the_payment_as_it_stands(
    outcome: str, overrides: dict[str, object], says: str, never: str
) -> None:
    order = _order(**overrides)
    notice = Notice("e", "OrderConfirmed", Kind.CONFIRMATION, order.order_id, payment_outcome=outcome)
    rendered = JinjaRenderer().render(Kind.CONFIRMATION, order, notice)
    assert says in rendered.text and never not in rendered.text
    assert never not in rendered.html
