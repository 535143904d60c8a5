"""The developer stack: what runs Kassa on one machine and operates it from a terminal — the local stack of
real servers from wheels (``devstack.localstack``), the mesh supervisor (``devstack.mesh``), the ``kassa``
command (``devstack.cli``, ``devstack.ops_cli``, ``devstack.check``), seed data, the demo, the SMTP sink, the
development certificates and the sandbox payment provider (``devstack.sandbox``). No service and no runtime
module imports it (import contract)."""
