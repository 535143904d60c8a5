"""Who is calling, as the domain sees it. Pure, no I/O; biz and model may import it.

The service layer builds it from the verified token (``infra.auth``): the token's subject, and whether the
caller is privileged (an admin or another Kassa service) rather than a customer.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Caller"]


@dataclass(frozen=True, slots=True)
class Caller:
    subject: str
    privileged: bool = False

    def owns(self, customer_id: str) -> bool:
        """Customers see only what is theirs (carts, sessions, orders); admins and services see all."""
        return self.privileged or self.subject == customer_id
