"""``python -m bench``: full checkouts per second, latency and invariants of the whole Kassa mesh.

The bench seeds a large catalog through the admin gRPC APIs, drives complete checkouts (guest token,
cart, three items, StartCheckout, UpdateCheckoutState, PreviewOrder, ConfirmCheckout) from load
generator processes separate from the mesh, over gRPC straight to checkout or over REST through the
gateway, in a closed loop (fixed concurrency: the maximum) or an open loop (fixed arrival rate: does
the mesh hold DESIGN.md §6's 167 checkouts/s), and then checks the DESIGN.md §4 invariants on what the
run left behind.

Modules: ``stack`` (start a private stack or describe a running one), ``seed`` (the catalog),
``schedule`` (pure load arithmetic), ``flow`` (one checkout over gRPC or REST), ``load`` (the load
generator processes), ``cpu`` (/proc accounting), ``stats`` (percentiles), ``invariants``, ``report``
and ``__main__`` (the command line).
"""
