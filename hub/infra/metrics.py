"""Prometheus metrics, one registry per app (so several apps can live in one test process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "hub_http_requests_total", "HTTP requests by route and status", ["method", "route", "status"], registry=r
        )
        self.http_latency = Histogram(
            "hub_http_request_duration_seconds", "HTTP request latency", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.connections = Gauge("hub_socket_connections", "Open Socket.IO connections", ["namespace"], registry=r)
        self.events_ingested = Counter(
            "hub_events_ingested_total", "Events accepted into the pipeline", ["event_type", "source"], registry=r
        )
        self.events_invalid = Counter(
            "hub_events_invalid_total", "Events rejected because they fail their schema", ["source"], registry=r
        )
        self.events_delivered = Counter(
            "hub_events_delivered_total", "Event deliveries written to sockets", ["event_type"], registry=r
        )
        self.events_dropped = Counter(
            "hub_events_dropped_total", "Events not delivered to a connection", ["event_type", "reason"], registry=r
        )
        self.live_received = Counter(
            "hub_live_messages_received_total",
            "Live events this process received from the bus, by audience kind",
            ["audience"],
            registry=r,
        )
        self.publish_to_send = Histogram(
            "hub_publish_to_send_seconds",
            "From the event's timestamp to its write to a socket (one delivered event in 4 is sampled)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.resumes = Counter("hub_resumes_total", "Connections resumed with last_event_id", ["result"], registry=r)
        self.replayed = Counter("hub_replayed_events_total", "Events replayed from history on resume", registry=r)
        self.slow_consumers = Counter(
            "hub_slow_consumer_disconnects_total", "Connections dropped because their send queue overflowed", registry=r
        )
        self.inbound_limited = Counter(
            "hub_inbound_rate_limited_total", "Client events refused by the inbound rate limit", registry=r
        )
        self.subscriptions = Gauge(
            "hub_bus_subscriptions", "Live channels this process is subscribed to", ["audience"], registry=r
        )

        self.before_render: list[Callable[[], None]] = []

    def render(self) -> bytes:
        for flush in self.before_render:
            flush()
        return generate_latest(self.registry)


RECENT_5XX = 100
"""The old gateway's error monitor kept the last 100 server errors; ``recent_5xx_count`` counts up to that."""


def http_status_counts(metrics: Metrics) -> dict[int, int]:
    """Requests this process answered since it started, by status."""
    counts: dict[int, int] = {}
    for family in metrics.http_requests.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                status = int(sample.labels["status"])
                counts[status] = counts.get(status, 0) + int(sample.value)
    return counts
