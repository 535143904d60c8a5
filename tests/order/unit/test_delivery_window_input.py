"""CreateOrder's delivery window: a bad one is INVALID_ARGUMENT naming the field that is wrong."""

from __future__ import annotations

import pytest

from kassa.common.v1 import delivery_pb2
from kassa.order.v1 import order_service_pb2
from kernel.errors import InvalidArgument
from order.service.convert import new_order_from_pb


@pytest.mark.parametrize(
    ("low", "high", "field"),
    [
        (-1, 3, "delivery_window.min_business_days"),
        (4, 3, "delivery_window.max_business_days"),
        (1, 61, "delivery_window.max_business_days"),
    ],
)
def test_a_bad_window_names_the_field_that_is_wrong(low: int, high: int, field: str) -> None:
    request = order_service_pb2.CreateOrderRequest(
        delivery_window=delivery_pb2.DeliveryWindow(min_business_days=low, max_business_days=high)
    )
    with pytest.raises(InvalidArgument) as refused:
        new_order_from_pb(request)
    assert refused.value.field == field
