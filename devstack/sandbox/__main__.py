"""``python -m devstack.sandbox``: serve the sandbox provider on KASSA_SANDBOX_ADDR (default 127.0.0.1:8090)."""

from __future__ import annotations

import uvicorn

from devstack.sandbox.app import SandboxConfig, create_app
from infra import faults
from infra.config import ConfigError, Settings
from infra.logs import setup_logging


def main() -> None:
    setup_logging("sandbox")
    try:
        settings = Settings.from_env()
        config = SandboxConfig.from_env()
        port = int(settings.addr("sandbox").rsplit(":", 1)[1])
        # A bad KASSA_FAULTS rule refuses to start, so a typo never turns a chaos run into a calm one.
        faults.load()
        settings.require()  # in production, no development or committed webhook secret
    except (ConfigError, faults.FaultConfigError, ValueError, IndexError) as exc:
        raise SystemExit(f"sandbox: {exc}") from exc
    uvicorn.run(
        create_app(settings, config),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        ws="none",
        log_config=None,
        access_log=False,  # a line per request is a cost on every payment; errors are still logged
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
