"""Payment's background loops: the consumer of order events and the sweeper (the outbox publisher is infra's)."""
