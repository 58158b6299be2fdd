"""The fuzzing suite, bounded: every Socket.IO event (ROUTES, sync and the live-session routes)
and every REST endpoint, as every role, with payloads from the schemas and hostile mutations
(tests/fuzzing.py says what is checked). Reproducible (derandomized) so that the suite is
stable; ``make fuzz`` (bench/fuzz.py) runs the same checks long and at random."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzzing import Target

pytestmark = pytest.mark.timeout(240)

BOUNDED = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    t = Target(tmp_path_factory.mktemp("fuzz"))
    yield t
    t.close()


def test_every_socket_event_as_every_role(target: Target) -> None:
    @BOUNDED
    @given(case=target.socket_cases())
    def check(case: tuple[str, str, Any]) -> None:
        role, event, payload = case
        assert target.check_socket(role, event, payload) is None

    check()
    # Past the schemas too: some requests were accepted, and refusals came from the actions.
    assert target.outcomes["socket ok"] > 0 and target.outcomes["socket forbidden"] > 0


def test_every_rest_endpoint_as_every_role(target: Target) -> None:
    @BOUNDED
    @given(case=target.rest_cases())
    def check(case: tuple[str, Any, str, str, str]) -> None:
        role, endpoint, path, _unused, body = case
        assert target.check_rest(role, endpoint, path, body) is None

    check()


def test_the_routes_fuzzed_are_the_whole_protocol(target: Target) -> None:
    from realtime.app import GATEWAY
    from realtime.transport.socket import ROUTES

    gateway = target.server.app[GATEWAY]
    assert set(target.socket_routes) == {"sync", *ROUTES, *gateway.sid_routes}
