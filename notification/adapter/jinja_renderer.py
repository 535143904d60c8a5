"""JinjaRenderer: the Renderer port with Jinja2 templates (``notification/templates``), plain text and HTML.

HTML templates (``*.html``) are autoescaped, so a product name or a carrier's tracking number can never
inject markup into a customer's mail; the text templates are not (there is nothing to escape). Undefined
names fail the render (StrictUndefined) rather than leave a blank where a total should be. Amounts are
formatted in the order's own currency (``notification.model.formatting``).
"""

from __future__ import annotations

import jinja2

from notification.model.formatting import format_money, format_window
from notification.model.message import Kind, Notice, OrderView, Rendered, payment_terms

__all__ = ["SUBJECTS", "JinjaRenderer"]

SUBJECTS: dict[Kind, str] = {
    Kind.CONFIRMATION: "Your Kassa order {ref} is confirmed",
    Kind.PAYMENT_FAILED: "Payment for your Kassa order {ref} did not go through",
    Kind.CANCELLED: "Your Kassa order {ref} was cancelled",
    Kind.SHIPPED: "Your Kassa order {ref} has shipped",
    Kind.DELIVERED: "Your Kassa order {ref} was delivered",
    Kind.REFUNDED: "A refund for your Kassa order {ref}",
}
# Messages that still look ahead to the delivery.
_SHOW_WINDOW = frozenset({Kind.CONFIRMATION, Kind.SHIPPED})


class JinjaRenderer:
    def __init__(self, loader: jinja2.BaseLoader | None = None) -> None:
        self._env = jinja2.Environment(
            loader=loader or jinja2.PackageLoader("notification", "templates"),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self._env.filters["money"] = format_money

    def render(self, kind: Kind, order: OrderView, notice: Notice) -> Rendered:
        subject = SUBJECTS[kind].format(ref=order.order_id[:8].upper())
        window = order.delivery_window
        context = {
            "order": order,
            "notice": notice,
            "payment": payment_terms(notice, order).value,
            "subject": subject,
            "window": format_window(window.earliest, window.latest) if window and kind in _SHOW_WINDOW else "",
        }
        text = self._env.get_template(f"{kind.value}.txt").render(context)
        html = self._env.get_template(f"{kind.value}.html").render(context)
        return Rendered(subject=subject, text=text, html=html)
