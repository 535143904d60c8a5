"""Request validation helpers: each refusal names the request field (DESIGN.md §4.6).

Country codes and skus are checked by the shared rules (kernel.validation.check_country, check_sku)."""

from __future__ import annotations

from kernel.errors import InvalidArgument
from kernel.validation import check_text

__all__ = ["MAX_LABEL_LENGTH", "MAX_NAME_LENGTH", "MAX_PARCEL_WEIGHT_GRAMS", "MAX_WEIGHT_GRAMS", "check_label",
           "check_weight"]  # fmt: skip

MAX_NAME_LENGTH = 200
MAX_LABEL_LENGTH = 128
# Ten tonnes: past any product a parcel service carries.
MAX_WEIGHT_GRAMS = 10_000_000
# A parcel holds up to 999 units of each of a cart's (at most 100) lines, so 10^12 g; at any per-kg rate a
# total over 1000 parcels stays far inside int64.
MAX_PARCEL_WEIGHT_GRAMS = 1_000_000_000_000


def check_label(field: str, value: str, *, max_length: int = MAX_LABEL_LENGTH, required: bool = False) -> str:
    """A product's name, category or brand: storable text (kernel.validation.check_text), stripped."""
    return check_text(field, value, max_length=max_length, required=required).strip()


def check_weight(field: str, grams: int, maximum: int = MAX_WEIGHT_GRAMS) -> int:
    if grams < 0:
        raise InvalidArgument(field, "must not be negative")
    if grams > maximum:
        raise InvalidArgument(field, f"must be at most {maximum:,} grams")
    return grams
