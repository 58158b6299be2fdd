"""Cluster nodes as real ``homeroom serve`` processes, configured like the in-process ones."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.conftest import (
    TEST_SECRET,
    Server,
    free_port,
    make_settings,
    start_server,
    stop_server,
)
from tests.services import drop_postgres_database, postgres_database
from tests.test_restart import ServerProcess


@contextlib.asynccontextmanager
async def two_nodes(
    tmp_path: Path, redis_url: str, **extra: Any
) -> AsyncIterator[tuple[Server, Server]]:
    """Two in-process nodes on a fresh PostgreSQL database and a Redis channel of their own
    (node A seeds the demo school)."""
    db_url, db_name = postgres_database()
    channel = f"homeroom-nodes-{uuid.uuid4().hex[:12]}"
    servers: list[Server] = []
    try:
        for name in ("a", "b"):
            settings = make_settings(
                tmp_path / name,
                database_url=db_url,
                redis_url=redis_url,
                bus_channel=channel,
                **extra,
            )
            servers.append(await start_server(settings, seed=name == "a"))
        servers[1].demo = servers[0].demo
        yield servers[0], servers[1]
    finally:
        for srv in reversed(servers):
            await stop_server(srv)
        drop_postgres_database(db_name)


def node_process(
    tmp_path: Path, name: str, port: int | None = None, **settings: Any
) -> ServerProcess:
    """A node named ``name`` (not started) on its own port, with these settings (the shared
    database, Redis and channel, heartbeat...) and the tests' usual ones."""
    port = free_port() if port is None else port
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "node_name": name,
        "secret": TEST_SECRET,
        "media_warm_start": False,
        "storage_dir": f"{tmp_path}/{name}-files",
        "rate_burst": 1000,
        "rate_per_s": 1000.0,
        "media_peer_networks": "127.0.0.0/8",  # media on loopback only (tests/conftest.py)
        **settings,
    }
    lines = []
    for key, value in values.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        else:
            lines.append(f"{key} = {value}")
    config = tmp_path / f"{name}.toml"
    config.write_text("\n".join(lines) + "\n")
    return ServerProcess(config, port, tmp_path / f"{name}.log")


class Balancer:
    """A TCP load balancer for tests: each new connection goes to the next backend that
    accepts it (round robin), and stays there, as a WebSocket behind nginx or HAProxy does.
    A stopped node refuses connections, so clients reconnect to the others. ``failover``: every
    connection goes to the first backend that accepts it instead (the others are spares)."""

    def __init__(self, ports: list[int], *, failover: bool = False) -> None:
        self.ports = ports
        self.failover = failover
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._next = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        start = 0 if self.failover else self._next
        self._next += 1
        for i in range(len(self.ports)):
            port = self.ports[(start + i) % len(self.ports)]
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            await asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
            )
            return
        writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
