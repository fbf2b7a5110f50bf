"""Metrics, the /healthz endpoint and the daemon's own view of its containers
(/containers); Prometheus's only when ``-metrics-addr`` is given.

The reconciler and daemon count at the points where they log the same facts. Without
``-metrics-addr`` nothing reads the counts, so they are plain numbers and prometheus_client
(and the HTTP server) are not even imported; ``PrometheusMetrics`` is the served form.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from http.server import BaseHTTPRequestHandler

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class _Plain:
    """A counter, gauge or histogram nobody scrapes: the last value or the running total."""

    def __init__(self) -> None:
        self.value = 0.0
        self._children: dict[tuple[str, ...], _Plain] = {}

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def set(self, value: float) -> None:
        self.value = value

    def observe(self, value: float) -> None:
        self.value = value

    def set_function(self, function: Callable[[], float]) -> None:
        """A gauge computed when scraped: nobody scrapes this one."""

    def labels(self, *values: str) -> _Plain:
        child = self._children.get(values)
        if child is None:
            child = self._children.setdefault(values, _Plain())
        return child


class Metrics:
    """The daemon's metrics, declared once: plain numbers here (``_metric``), Prometheus's in
    ``PrometheusMetrics``; and the health that /healthz reports."""

    def __init__(self, ecs: bool = False) -> None:
        m = self._metric
        self.registrations = m(
            "counter", "registrator_registrations", "Services registered with the agent"
        )
        self.deregistrations = m(
            "counter", "registrator_deregistrations", "Services deregistered from the agent"
        )
        self.failures = m(
            "counter", "registrator_failures", "Failed operations by reason", ("reason",)
        )
        self.services_owned = m(
            "gauge", "registrator_services_owned", "Services this registrator holds on the agent"
        )
        self.held = m(
            "gauge",
            "registrator_held_containers",
            "Containers held out of Consul: they keep dying soon after they start (-flap-hold)",
        )
        self.events = m(
            "counter", "registrator_docker_events", "Docker events processed", ("action",)
        )
        self.last_sync = m(
            "gauge",
            "registrator_last_successful_sync_timestamp_seconds",
            "When the agent last matched the desired state (Unix time)",
        )
        self.docker_up = m(
            "gauge", "registrator_docker_reachable", "1 when the Docker daemon answers"
        )
        self.consul_up = m(
            "gauge", "registrator_consul_reachable", "1 when the Consul agent answers"
        )
        self._gauges: dict[str, Any] = {"docker": self.docker_up, "consul": self.consul_up}
        if ecs:  # asked only for awsvpc containers: "up" until a request gets no answer
            self._gauges["ecs"] = m(
                "gauge",
                "registrator_ecs_agent_reachable",
                "1 when the ECS agent answered its last request (or has not been asked yet)",
            )
            self._gauges["ecs"].set(1)
        self.latency = m(
            "histogram",
            "registrator_event_to_registration_seconds",
            "From Docker's event time to the agent holding the change",
        )
        self._sync_time = 0.0
        self._down_since = dict.fromkeys(self._gauges, 0.0)
        self._lock = threading.Lock()

    def _metric(self, kind: str, name: str, help_text: str, labels: tuple[str, ...] = ()) -> Any:
        """A counter, gauge or histogram (``kind``) that nobody scrapes."""
        return _Plain()

    def _since_sync(self) -> float:
        return time.time() - self._sync_time if self._sync_time else float("nan")

    def synced(self) -> None:
        self._sync_time = time.time()
        self.last_sync.set(self._sync_time)

    def reachable(self, what: str, up: bool) -> None:
        """Record whether ``docker``, ``consul`` or ``ecs`` (the ECS agent, with -ecs)
        answers, and since when it does not."""
        gauge = self._gauges.get(what)
        if gauge is None:
            return
        gauge.set(1 if up else 0)
        with self._lock:
            if up:
                self._down_since[what] = 0.0
            elif not self._down_since[what]:
                self._down_since[what] = time.monotonic()

    def health(self, threshold: float) -> tuple[bool, dict[str, Any]]:
        """Healthy unless Docker, Consul or (with -ecs) the ECS agent has been unreachable
        longer than ``threshold``."""
        now = time.monotonic()
        with self._lock:
            down = {k: (now - v if v else 0.0) for k, v in self._down_since.items()}
        body: dict[str, Any] = {f"{k}_unreachable_seconds": round(v, 1) for k, v in down.items()}
        body["seconds_since_last_sync"] = round(self._since_sync(), 1) if self._sync_time else None
        healthy = all(v <= threshold for v in down.values())
        body["status"] = "ok" if healthy else "unhealthy"
        return healthy, body


class PrometheusMetrics(Metrics):
    """The same metrics in a Prometheus registry of their own (no process-global state)."""

    def __init__(self, ecs: bool = False) -> None:
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry()
        super().__init__(ecs)
        self.seconds_since_sync = self._metric(
            "gauge", "registrator_seconds_since_last_successful_sync",
            "Seconds since the agent last matched the desired state",
        )  # fmt: skip
        self.seconds_since_sync.set_function(self._since_sync)

    def _metric(self, kind: str, name: str, help_text: str, labels: tuple[str, ...] = ()) -> Any:
        from prometheus_client import Counter, Gauge, Histogram

        if kind == "histogram":
            return Histogram(name, help_text, labels, buckets=LATENCY_BUCKETS,
                             registry=self.registry)  # fmt: skip
        kinds = {"counter": Counter, "gauge": Gauge}
        return kinds[kind](name, help_text, labels, registry=self.registry)

    def exposition(self) -> tuple[str, bytes]:
        """The content type and body of a /metrics answer."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return CONTENT_TYPE_LATEST, generate_latest(self.registry)


class MetricsServer:
    """``/metrics`` (Prometheus text format), ``/healthz`` and ``/containers`` (the JSON
    ``containers`` answers, once the daemon set it) on one address."""

    def __init__(
        self, metrics: PrometheusMetrics, host: str, port: int, health_threshold: float
    ) -> None:
        from http.server import ThreadingHTTPServer

        self.metrics = metrics
        self.threshold = health_threshold
        self.containers: Callable[[], dict[str, Any]] | None = None
        handler = _handler_for(self)
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.address = f"{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="metrics", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        log.info("serving /metrics, /healthz and /containers on http://%s", self.address)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler_for(owner: MetricsServer) -> type[BaseHTTPRequestHandler]:
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, *owner.metrics.exposition())
            elif path == "/healthz":
                healthy, body = owner.metrics.health(owner.threshold)
                payload = json.dumps(body, sort_keys=True).encode() + b"\n"
                self._send(200 if healthy else 503, "application/json", payload)
            elif path == "/containers" and owner.containers is not None:
                payload = json.dumps(owner.containers(), sort_keys=True).encode() + b"\n"
                self._send(200, "application/json", payload)
            else:
                self._send(404, "text/plain", b"not found: try /metrics, /healthz or /containers\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Scrapes are not actions: keep them out of the operator's log."""

    return Handler
