"""Stopping and starting the test server in place: same port, same database, same demo ids."""

from __future__ import annotations

from tests.conftest import Server, start_server


async def stop(server: Server) -> None:
    """Stop like a crash would: every connection drops without a goodbye, the port closes."""
    runner = server.runner
    # Open WebSockets would hold a graceful shutdown for a minute: cut them, and do not wait.
    runner._shutdown_timeout = 0.5  # type: ignore[attr-defined]
    if runner.server is not None:
        for conn in runner.server.connections:
            conn.force_close()
    await runner.cleanup()


async def start(server: Server) -> None:
    """Start again on the same settings (port, database); the fixture's teardown stops it."""
    fresh = await start_server(server.settings, seed=False)
    server.app = fresh.app
    server.runner = fresh.runner


async def restart(server: Server) -> None:
    await stop(server)
    await start(server)
