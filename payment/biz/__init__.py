"""Payment use cases, one module each, over the ports in :mod:`payment.biz.ports`."""
