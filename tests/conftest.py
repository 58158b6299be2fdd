"""Fixtures: a real Homeroom server on a free port, with the demo school, and real clients."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from clients.homeroom import HomeroomClient
from realtime import demo
from realtime.app import create_app
from realtime.config import Settings
from realtime.store import open_store
from tests.services import drop_postgres_database, postgres_database

TEST_SECRET = "test-secret-0123456789-abcdefghijklmnop"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    settings: Settings
    app: web.Application
    runner: web.AppRunner
    demo: dict[str, Any]
    clients: list[HomeroomClient]

    def uid(self, username: str) -> int:
        return int(self.demo["users"][username])

    @property
    def class_id(self) -> int:
        return int(self.demo["class_id"])

    async def client(
        self, username: str | None = None, *, connect: bool = True, **kw: Any
    ) -> HomeroomClient:
        c = HomeroomClient(self.url, serializer=self.settings.serializer, **kw)
        self.clients.append(c)
        if username is not None:
            await c.login(username, demo.DEMO_PASSWORD)
            if connect:
                await c.connect()
        return c


async def start_server(settings: Settings, seed: bool = True) -> Server:
    store = open_store(settings.database_url)
    await store.migrate()
    info: dict[str, Any] = {}
    if seed and await demo.is_empty(store):
        info = await demo.seed(store)
    await store.close()
    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    return Server(f"http://127.0.0.1:{settings.port}", settings, app, runner, info, [])


async def stop_server(server: Server) -> None:
    for c in server.clients:
        with contextlib.suppress(Exception):
            await c.close()
    await server.runner.cleanup()


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": free_port(),
        "database_url": f"sqlite:///{tmp_path}/homeroom.db",
        "storage_dir": f"{tmp_path}/files",
        # Most tests send no photo: their worker processes start with the first one.
        "media_warm_start": False,
        "secret": TEST_SECRET,
        # Tests send bursts; the limiter has its own test.
        "rate_burst": 1000,
        "rate_per_s": 1000.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    srv = await start_server(make_settings(tmp_path))
    yield srv
    await stop_server(srv)


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_store_server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Server]:
    """The same server on SQLite and on PostgreSQL."""
    name = None
    overrides: dict[str, Any] = {}
    if request.param == "postgresql":
        url, name = postgres_database()
        overrides["database_url"] = url
    srv = await start_server(make_settings(tmp_path, **overrides))
    yield srv
    await stop_server(srv)
    if name:
        drop_postgres_database(name)
