"""Periodic sweeps: the failed-compensation drain, saga recovery, session expiry and the payment poll, each a loop
built with infra.worker.every around one pass of a use case."""
