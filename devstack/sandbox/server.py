"""Run the sandbox in-process on a free loopback port (tests, local tools)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette

from devstack.localstack import free_port
from devstack.sandbox.app import SandboxApi, SandboxConfig, create_app
from infra.config import Settings

__all__ = ["RunningSandbox", "running_sandbox", "serving"]


@dataclass(frozen=True)
class RunningSandbox:
    url: str
    app: Starlette

    @property
    def api(self) -> SandboxApi:
        api: SandboxApi = self.app.state.api
        return api


@contextlib.asynccontextmanager
async def serving(
    app: Starlette, *, on_stop: Callable[[], None] | None = None, port: int | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (``port``, or a free one) until the block exits; yields the base URL."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            http="httptools",
            ws="none",
            lifespan="on",
            log_config=None,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server exited while starting")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        if on_stop is not None:
            on_stop()
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def running_sandbox(
    settings: Settings, config: SandboxConfig | None = None, *, port: int | None = None
) -> AsyncIterator[RunningSandbox]:
    """Serve the sandbox over real HTTP until the block exits (again on ``port`` to restart one)."""
    app = create_app(settings, config or SandboxConfig())
    api: SandboxApi = app.state.api
    async with serving(app, on_stop=api.stop_stalling, port=port) as url:
        yield RunningSandbox(url, app)
