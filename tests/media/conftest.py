from __future__ import annotations

from collections.abc import Iterator

import pytest

from media.ice import configure_host_addresses, host_addresses


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    """Every peer in these tests gathers host candidates on 127.0.0.1 only."""
    configure_host_addresses(["127.0.0.1"])
    assert host_addresses() == ["127.0.0.1"]
    yield
    configure_host_addresses(None)
