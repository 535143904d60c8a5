"""A sandbox card processor: an HTTP server that behaves like a provider's test mode.

It simulates an external system, so it keeps its state in memory and shares no
code with the payment service beyond the webhook signature scheme.
"""

from devstack.sandbox.app import SandboxConfig, create_app
from devstack.sandbox.server import running_sandbox

__all__ = ["SandboxConfig", "create_app", "running_sandbox"]
