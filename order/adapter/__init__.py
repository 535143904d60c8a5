"""Clients of other services. The order service calls none: checkout calls it, and payment outcomes
arrive as events (worker/). Kept so the layer contract in pyproject.toml holds for every service."""
