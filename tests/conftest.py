"""Fixtures: a real Homeroom server on a free port, with the demo school, and real clients."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from clients.homeroom import HomeroomClient
from realtime import demo
from realtime.app import create_app
from realtime.config import Settings
from realtime.store import Store, open_store
from realtime.transport.rest import HUB
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


async def sentinel(srv: Server, *clients: HomeroomClient) -> None:
    """:func:`sentinel_to` the signed-in people of these clients."""
    await sentinel_to(srv, {c: int(c.user["id"]) for c in clients})


async def sentinel_to(srv: Server, people: dict[HomeroomClient, int]) -> None:
    """Wait until everything published so far has reached these clients.

    To assert that nothing arrived, a sleep proves little on a busy machine. Instead one
    ``test.sentinel`` event per person goes into their ``user:`` stream, published on commit down
    the same path as every event (store, bus, fanout, their connection); connections deliver in
    order, so once a client has it, whatever was published before it has arrived too.
    """
    token = uuid.uuid4().hex
    hub = srv.app[HUB]
    async with hub.store.transaction() as conn:
        for uid in sorted(set(people.values())):
            await hub.store.append(conn, f"user:{uid}", "test.sentinel", {"token": token})
    for c in people:
        await c.wait_for(lambda e: e["type"] == "test.sentinel" and e["data"]["token"] == token)


async def start_server(
    settings: Settings,
    seed: bool = True,
    routes: Callable[[web.Application], None] | None = None,
) -> Server:
    """The app on its port; ``routes`` adds a test's own routes (a test page) first."""
    store = open_store(settings.database_url)
    await store.migrate()
    info: dict[str, Any] = {}
    if seed and await demo.is_empty(store):
        info = await demo.seed(store)
    await store.close()
    app = create_app(settings)
    if routes is not None:
        routes(app)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    return Server(f"http://127.0.0.1:{settings.port}", settings, app, runner, info, [])


# A server stops within drain_timeout_s + 2 x shutdown_timeout_s (docs/operations.md); past
# this, the test fails naming what its tasks were waiting for, rather than at the suite's limit.
STOP_LIMIT_S = 40.0


async def stop_server(server: Server) -> None:
    for c in server.clients:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(c.close(), 5)
    try:
        async with asyncio.timeout(STOP_LIMIT_S):
            await server.runner.cleanup()
    except TimeoutError:
        stuck = io.StringIO()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.print_stack(limit=8, file=stuck)
        raise AssertionError(
            f"{server.url} did not stop in {STOP_LIMIT_S} s:\n{stuck.getvalue()}"
        ) from None


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": free_port(),
        "database_url": f"sqlite:///{tmp_path}/homeroom.db",
        "storage_dir": f"{tmp_path}/files",
        # Most tests send no photo: their worker processes start with the first one.
        "media_warm_start": False,
        "push_vapid_key_file": f"{tmp_path}/vapid_private.pem",
        "secret": TEST_SECRET,
        # Tests send bursts; the limiter has its own test.
        "rate_burst": 1000,
        "rate_per_s": 1000.0,
        # Every test client signs in from 127.0.0.1; tests/test_signin.py sets real limits.
        "signin_address_burst": 10_000,
        "signin_address_per_s": 1000.0,
        "signin_address_failure_burst": 10_000,
        "register_address_failure_burst": 10_000,
        # Media stays on loopback: ICE talks to peers on 127.0.0.0/8 only (a Chromium outside a
        # loopback-only namespace offers the machine's other addresses too, and may pick one).
        "media_peer_networks": "127.0.0.0/8",
    }
    values.update(overrides)
    return Settings(**values)


# The long end-to-end runs: several server processes behind nginx, nodes killed and restarted,
# Chromium driving the web app and live lessons. `make test` runs everything else (under 15
# minutes on 2 cores), `make test-long` these; CI (.ci/run) runs both.
LONG = (
    "tests/web/",
    "tests/live/",
    "tests/media/test_lossy_viewer.py",
    "tests/media/test_publish_loss.py",
    "tests/media/test_simulcast.py",
    "tests/media/test_relay_layers.py",
    "tests/test_loadbalancer.py",
    "tests/test_node_lost.py",
    "tests/test_workers.py",
    "tests/test_restart.py",
    "tests/test_shutdown.py",
    "tests/test_bus_outage.py",
    "tests/test_store_outage.py",
    "tests/test_uploads_cluster.py",
    "tests/test_poll_deadlines.py",
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "long: a long end-to-end run (`make test-long`)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.relative_to(config.rootpath).as_posix().startswith(LONG):
            item.add_marker(pytest.mark.long)


DATABASES = ["sqlite", "postgresql"]


async def start_on(kind: str, tmp_path: Path, **overrides: Any) -> tuple[Server, str | None]:
    """A server on SQLite or on a fresh PostgreSQL database (its name, to drop afterwards)."""
    name = None
    if kind == "postgresql":
        url, name = postgres_database()
        overrides["database_url"] = url
    return await start_server(make_settings(tmp_path, **overrides)), name


@pytest.fixture(params=DATABASES)
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Server]:
    """A server with the demo school, on SQLite and on PostgreSQL: the same code must hold on
    both, below the store too."""
    srv, name = await start_on(request.param, tmp_path)
    yield srv
    await stop_server(srv)
    if name:
        drop_postgres_database(name)


@pytest.fixture(params=DATABASES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated, empty store on SQLite and on PostgreSQL."""
    name = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.db"
    else:
        url, name = postgres_database()
    s = open_store(url)
    await s.migrate()
    yield s
    await s.close()
    if name:
        drop_postgres_database(name)
