"""Checkout's domain: carts, checkout sessions, saga state and the values exchanged with other services.

Dataclasses only: no I/O, no gRPC, no SQLAlchemy.
"""
