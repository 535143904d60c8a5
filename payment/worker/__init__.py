"""Payment's background loops: the consumer of order events (the outbox publisher is infra's)."""
