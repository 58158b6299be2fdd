"""The garbage-collector policy of a serving node (realtime/collector.py), on CPython's real
collector: full collections stop walking long-lived objects, cycles left among them are
reclaimed by maintenance passes, and those wait for a quiet moment."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator

import pytest

from realtime.collector import CollectorPolicy


class Node:
    """Stands for a connection's objects: tracked, and in a reference cycle with itself."""

    def __init__(self) -> None:
        self.me = self
        self.state = {"rooms": ["class:1:students"]}


@pytest.fixture
def policy() -> Iterator[CollectorPolicy]:
    p = CollectorPolicy(lambda: 0.0)
    p.install()
    try:
        yield p
    finally:
        p.uninstall()


def full_collection_ms() -> float:
    started = time.perf_counter()
    gc.collect()
    return (time.perf_counter() - started) * 1000


def test_full_collections_skip_what_survived_one(policy: CollectorPolicy) -> None:
    connections = [Node() for _ in range(60_000)]  # ~ the objects of 400 connections
    gc.unfreeze()  # as without the policy: this collection walks everything ...
    walked_all = full_collection_ms()
    assert gc.get_freeze_count() > len(connections)  # ... and its survivors are frozen
    after = min(full_collection_ms() for _ in range(3))
    assert after < walked_all / 4, (walked_all, after)
    assert len(connections) == 60_000


def test_maintenance_reclaims_cycles_among_frozen_objects(policy: CollectorPolicy) -> None:
    closed = Node()
    gone = weakref.ref(closed)
    gc.collect()  # survives, so it is frozen
    del closed  # the connection closes: its cycle is garbage now
    gc.collect()
    assert gone() is not None  # frozen: ordinary collections leave it
    assert policy.maintenance() > 0
    assert gone() is None
    assert policy.passes == 1


def test_maintenance_waits_for_a_quiet_node_but_not_forever() -> None:
    now = [1000.0]
    last_request = [1000.0]
    p = CollectorPolicy(
        lambda: last_request[0],
        interval_s=600,
        max_wait_s=3600,
        quiet_s=2,
        clock=lambda: now[0],
    )
    now[0] += 599
    last_request[0] = now[0] - 10
    assert not p.due()  # too soon after the last pass
    now[0] += 2
    last_request[0] = now[0] - 0.5
    assert not p.due()  # a class is busy: wait
    last_request[0] = now[0] - 3
    assert p.due()  # quiet for 3 s
    now[0] = 1000.0 + 3600
    last_request[0] = now[0]
    assert p.due()  # never quiet for an hour: run anyway
