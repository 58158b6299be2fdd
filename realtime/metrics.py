"""Prometheus metrics, one registry per app (no global state: tests build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


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
            "Stream events handed to local rooms",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
