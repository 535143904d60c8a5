"""Who is calling, as the domain sees it (the service layer builds it from the verified token)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Actor"]


@dataclass(frozen=True, slots=True)
class Actor:
    subject: str
    privileged: bool = False

    def owns(self, customer_id: str) -> bool:
        """Customers see only their own carts and sessions; admins and services see all."""
        return self.privileged or self.subject == customer_id
