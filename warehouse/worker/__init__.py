"""Background loops of the warehouse: the reservation sweeper (the outbox publisher comes from infra)."""
