"""A postal address as a value object. Pure, no I/O; biz and model may import it.

The one domain twin of ``kassa.common.v1.Address`` that every service shares (protobuf
conversions live in :mod:`infra.pb`). Fields are plain strings, empty when unknown; validating
them is each use case's business.

An address is personal data: its ``repr`` (what a log line, an assertion or a traceback shows) names
the country only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Address"]


@dataclass(frozen=True, slots=True)
class Address:
    name: str = ""
    line1: str = ""
    line2: str = ""
    city: str = ""
    region: str = ""
    postal_code: str = ""
    # ISO 3166-1 alpha-2, upper case, for example "US".
    country_code: str = ""
    phone: str = ""

    def __repr__(self) -> str:
        return f"Address(country_code={self.country_code!r}, <other fields hidden>)"

    def to_dict(self) -> dict[str, str]:
        # Spelled out: dataclasses.asdict deep-copies field by field, and this is on every checkout's write path.
        return {"name": self.name, "line1": self.line1, "line2": self.line2, "city": self.city, "region": self.region,
                "postal_code": self.postal_code, "country_code": self.country_code, "phone": self.phone}  # fmt: skip

    @staticmethod
    def from_dict(data: Mapping[str, str] | None) -> Address | None:
        """The inverse of :meth:`to_dict`; None (or an empty mapping) stands for no address."""
        return Address(**data) if data else None
