"""Prometheus metrics, one registry per app (no global state: tests build many apps)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from realtime.bus.base import BusHealth
from realtime.domain.signin import SignInGuard

# Forwarding counters summed per live session, read from the media routers at scrape time.
MEDIA_COUNTERS = (
    ("frames_received", "Encoded frames received from publishers"),
    ("frames_forwarded", "Encoded frames forwarded to subscribers"),
    ("packets_forwarded", "RTP packets forwarded to subscribers"),
    ("bytes_forwarded", "Payload bytes forwarded to subscribers"),
    ("keyframe_requests", "Keyframe requests from joins, drops and subscribers"),
    ("plis_sent", "PLIs sent to publishers after coalescing"),
    ("queue_drops", "Subscriber queues emptied because the subscriber fell behind"),
)


class MediaCollector(Collector):
    """Reads ``{session id: {"participants": n, "tracks": {id: track stats}}}`` on scrape."""

    def __init__(self, read: Callable[[], dict[int, dict[str, Any]]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        sessions = self.read()
        live = GaugeMetricFamily("homeroom_live_sessions", "Live sessions on this node")
        live.add_metric([], len(sessions))
        yield live
        people = GaugeMetricFamily(
            "homeroom_live_participants", "Participants per session", labels=["session"]
        )
        tracks = GaugeMetricFamily(
            "homeroom_media_tracks", "Published tracks per session", labels=["session"]
        )
        counters = {
            name: CounterMetricFamily(f"homeroom_media_{name}", doc, labels=["session"])
            for name, doc in MEDIA_COUNTERS
        }
        for sid, stats in sessions.items():
            people.add_metric([str(sid)], stats["participants"])
            tracks.add_metric([str(sid)], len(stats["tracks"]))
            for name, family in counters.items():
                family.add_metric([str(sid)], sum(t.get(name, 0) for t in stats["tracks"].values()))
        yield people
        yield tracks
        yield from counters.values()


class PushCollector(Collector):
    """Web Push outcomes on this node (realtime/push/dispatcher.py)."""

    def __init__(self, read: Callable[[], dict[str, int] | None]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        sends = CounterMetricFamily(
            "homeroom_push_sends",
            "Pushes by outcome: sent, gone (404/410: subscription removed), failed (kept), "
            "dropped (the queue was full)",
            labels=["outcome"],
        )
        for outcome, n in sorted((self.read() or {}).items()):
            sends.add_metric([outcome], n)
        yield sends


class SignInCollector(Collector):
    """Sign-in and registration outcomes, and the alarm: accounts in backoff right now."""

    def __init__(self, guard: SignInGuard) -> None:
        self.guard = guard

    def collect(self) -> Iterator[Metric]:
        attempts = CounterMetricFamily(
            "homeroom_signin_attempts",
            "Sign-in and registration attempts by outcome (wrong_password, throttled_account, "
            "throttled_address, throttled_device, throttled_register, register_failed, ...)",
            labels=["outcome"],
        )
        for outcome, n in sorted(self.guard.counts.items()):
            attempts.add_metric([outcome], n)
        yield attempts
        backoff = GaugeMetricFamily(
            "homeroom_signin_accounts_in_backoff",
            "Accounts whose sign-ins from unknown clients must wait after repeated wrong "
            "passwords: alert when it rises (docs/security.md)",
        )
        backoff.add_metric([], self.guard.accounts_in_backoff(time.monotonic()))
        yield backoff


class BusCollector(Collector):
    """The bus's health (realtime/bus/base.py BusHealth), read on scrape."""

    def __init__(self, health: BusHealth) -> None:
        self.health = health

    def collect(self) -> Iterator[Metric]:
        h = self.health
        up = GaugeMetricFamily("homeroom_bus_up", "1 while this node reaches the other nodes")
        up.add_metric([], 1 if h.up else 0)
        yield up
        for name, value, doc in (
            ("outages", h.outages, "Times the bus (Redis) connection broke"),
            ("reconnects", h.reconnects, "Times it came back (every connection then resyncs)"),
            ("publish_failures", h.publish_failures, "Publishes not sent to other nodes"),
        ):
            family = CounterMetricFamily(f"homeroom_bus_{name}", doc)
            family.add_metric([], value)
            yield family


class StoreCollector(Collector):
    """The database's reachability as requests found it (realtime/store/outage.py)."""

    def __init__(self, health: Any) -> None:
        self.health = health

    def collect(self) -> Iterator[Metric]:
        h = self.health
        up = GaugeMetricFamily(
            "homeroom_store_up", "1 unless the last request could not reach the database"
        )
        up.add_metric([], 1 if h.up else 0)
        yield up
        for name, value, doc in (
            ("outages", h.outages, "Times requests found the database unreachable"),
            (
                "unavailable",
                h.refused,
                "Store transactions and reads that could not reach the database (requests "
                "answered unavailable, background work, health checks)",
            ),
            (
                "busy",
                h.busy,
                "Store transactions and reads refused because every pooled connection stayed "
                "busy (answered unavailable, reason database_busy; the database answers)",
            ),
        ):
            family = CounterMetricFamily(f"homeroom_store_{name}", doc)
            family.add_metric([], value)
            yield family


class GateCollector(Collector):
    """A gate's places and queue (realtime/gate.py), on scrape: ``prefix`` names whose."""

    def __init__(self, prefix: str, what: str, gate: Any) -> None:
        self.prefix = prefix
        self.what = what
        self.gate = gate

    def collect(self) -> Iterator[Metric]:
        g, p, w = self.gate, self.prefix, self.what
        for name, value, doc in (
            ("in_progress", g.in_progress, f"{w} in progress (at most {g.limit})"),
            ("waiting", g.waiting, f"{w} waiting their turn (at most {g.queue})"),
        ):
            gauge = GaugeMetricFamily(f"{p}_{name}", doc)
            gauge.add_metric([], value)
            yield gauge
        for name, value, doc in (
            ("admitted", g.admitted, f"{w} let in, at once or after waiting"),
            ("queued", g.queued, f"{w} that had to wait their turn"),
            ("refused", g.refused, f"{w} refused (unavailable, with Retry-After)"),
            ("waited_seconds", g.waited_s, f"Seconds {w.lower()} waited their turn, in all"),
        ):
            counter = CounterMetricFamily(f"{p}_{name}", doc)
            counter.add_metric([], value)
            yield counter


class FollowerCollector(Collector):
    """The stream follower (realtime/cluster/follower.py) and the de-duplication of deliveries,
    read on scrape."""

    def __init__(self, positions: Any, follower: Any) -> None:
        self.positions = positions
        self.follower = follower

    def collect(self) -> Iterator[Metric]:
        p, f = self.positions, self.follower
        streams = GaugeMetricFamily("homeroom_followed_streams", "Streams followed on this node")
        streams.add_metric([], len(p.streams()))
        yield streams
        counters = [
            ("recovered", p.recovered, "Events delivered by the follower: the bus never brought"),
            ("duplicates", p.duplicates, "Second copies of events dropped (bus and follower)"),
        ]
        if f is not None:
            counters += [
                ("polls", f.polls, "Polls of the streams' positions in the store"),
                ("queries", f.queries, "Store queries the follower ran"),
                ("failures", f.failures, "Polls that failed (the store unreachable)"),
            ]
        for name, value, doc in counters:
            family = CounterMetricFamily(f"homeroom_follower_{name}", doc)
            family.add_metric([], value)
            yield family
        if f is not None:
            spent = CounterMetricFamily(
                "homeroom_follower_seconds", "Time spent polling (wall clock, store included)"
            )
            spent.add_metric([], f.seconds)
            yield spent


class NodeCollector(Collector):
    """The node registry as this node last read it (realtime/cluster/watch.py), on scrape."""

    def __init__(self, watch: Any) -> None:
        self.watch = watch

    def collect(self) -> Iterator[Metric]:
        w = self.watch
        info = GaugeMetricFamily(
            "homeroom_node_info", "This node's name (value 1)", labels=["node"]
        )
        info.add_metric([w.name], 1)
        yield info
        alive = GaugeMetricFamily("homeroom_nodes_alive", "Nodes alive in the registry")
        alive.add_metric([], len(w.membership.nodes))
        yield alive
        for field, doc in (
            ("live_sessions", "Live sessions each node runs, as announced"),
            ("published_tracks", "Tracks published on each node, as announced"),
            ("subscribers", "Subscribe legs on each node, as announced"),
            ("cpu", "Share of one core each node used, as announced"),
        ):
            family = GaugeMetricFamily(f"homeroom_registry_node_{field}", doc, labels=["node"])
            for n in w.membership.nodes.values():
                family.add_metric([n.name], getattr(n, field))
            yield family
        draining = GaugeMetricFamily("homeroom_node_draining", "1 while this node drains")
        draining.add_metric([], 1 if w.live.draining else 0)
        yield draining
        calls = w.live.calls
        beacon = w.beacon
        for name, value, doc in (
            (
                "heartbeat_failures",
                w.failures + (beacon.failures if beacon is not None else 0),
                "Heartbeats (reads, and announcements of the beacon's thread) that could not "
                "reach the registry",
            ),
            (
                "announce_stalled",
                beacon.stalled if beacon is not None else 0,
                "Announcements skipped because the event loop had not run for node_stall_s",
            ),
            ("sessions_taken_over", w.sessions_taken_over, "Sessions of lost nodes moved here"),
            ("calls", calls.made, "Live-session requests carried to another node"),
            ("calls_unanswered", calls.unanswered, "Of those, answered unavailable"),
        ):
            counter = CounterMetricFamily(f"homeroom_node_{name}", doc)
            counter.add_metric([], value)
            yield counter


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connections = Gauge(
            "homeroom_connections", "Open Socket.IO connections", registry=self.registry
        )
        self.events = Counter(
            "homeroom_client_events_total",
            "Client events handled, by event name",
            ["event"],
            registry=self.registry,
        )
        self.errors = Counter(
            "homeroom_errors_total",
            "Refused requests, by error code",
            ["code"],
            registry=self.registry,
        )
        self.ack_latency = Histogram(
            "homeroom_ack_seconds",
            "Time from a client event to its acknowledgement",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.deliveries = Counter(
            "homeroom_stream_events_delivered_total",
            "Stream events written to connections on this node (one per recipient)",
            registry=self.registry,
        )
        self.slow_disconnects = Counter(
            "homeroom_slow_client_disconnects_total",
            "Connections dropped because they stopped reading and their buffer hit the limit",
            registry=self.registry,
        )

    def watch_signin(self, guard: SignInGuard) -> None:
        self.registry.register(SignInCollector(guard))

    def watch_push(self, read: Callable[[], dict[str, int] | None]) -> None:
        self.registry.register(PushCollector(read))

    def watch_media(self, read: Callable[[], dict[int, dict[str, Any]]]) -> None:
        self.registry.register(MediaCollector(read))

    def watch_nodes(self, watch: Any) -> None:
        self.registry.register(NodeCollector(watch))

    def watch_store(self, health: Any) -> None:
        self.registry.register(StoreCollector(health))

    def watch_gate(self, prefix: str, what: str, gate: Any) -> None:
        self.registry.register(GateCollector(prefix, what, gate))

    def watch_follower(self, positions: Any, follower: Any) -> None:
        self.registry.register(FollowerCollector(positions, follower))

    def watch_bus(self, health: BusHealth) -> None:
        self.registry.register(BusCollector(health))

    def render(self) -> bytes:
        return generate_latest(self.registry)
