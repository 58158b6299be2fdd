"""Live-session tests: a real server whose ICE gathers on 127.0.0.1 only, and aiortc clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from media.ice import configure_host_addresses
from tests.conftest import Server, make_settings, start_server, stop_server


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    configure_host_addresses(["127.0.0.1"])
    yield
    configure_host_addresses(None)


@pytest.fixture
async def live_server(tmp_path: Path) -> AsyncIterator[Server]:
    srv = await start_server(
        make_settings(tmp_path, ice_host_addresses="127.0.0.1", session_grace_s=2)
    )
    yield srv
    await stop_server(srv)
