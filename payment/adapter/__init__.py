"""Clients of external systems (the payment providers) implementing the biz ports."""
