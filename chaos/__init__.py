"""``make chaos``: kill anything mid-checkout, lose nothing — measured (issue 9).

A private stack (Postgres, Redis, NATS) and a supervised mesh on free ports; customers over gRPC and
REST who retry like real clients; a fault schedule fixed by a seed (processes SIGKILLed, crashes and
errors at named points through ``KASSA_FAULTS``, a misbehaving provider, Redis flushed and restarted,
NATS restarted, Postgres backends terminated); a bounded recovery window; then ``devstack.check`` proves
DESIGN.md §4 on every service's tables and the provider's ledger.

Modules: ``plan`` (the seeded schedule, pure), ``stack`` (start/stop), ``client`` (one API over two
transports), ``customer`` (personas and retries), ``inject`` (the outside faults), ``faultlog`` (what
fired, from the logs), ``recovery`` (the window), ``run`` (all of it), ``report`` and ``__main__``.
"""
