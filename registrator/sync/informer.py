"""Docker's side as client-go's informer follows a resource: subscribe, list, watch; on any
break reconnect with backoff and list again (dockerd keeps no events across a restart).

It knows containers only as IDs and events: what a listing or an event means is the
``Handler``'s business (the daemon queues the containers in its work queue).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from registrator.adapters.docker_source import (
    ContainerEvent,
    DockerSource,
    DockerUnavailable,
    EventStream,
)
from registrator.adapters.metrics import Metrics
from registrator.core.backoff import Backoff

log = logging.getLogger(__name__)

UNREACHABLE_REPORT_EVERY = 30.0  # seconds between two warnings while Docker stays away


class Handler(Protocol):
    def listed(self, docker: DockerSource) -> None:
        """A fresh listing is due (at start and after every reconnect)."""

    def event(self, event: ContainerEvent) -> None:
        """One event, in the order the engine sent them."""


class DockerInformer:
    """Runs on one thread (``run``); ``close`` from any thread ends it."""

    def __init__(
        self,
        connect: Callable[[], DockerSource],
        handler: Handler,
        metrics: Metrics,
        stop: threading.Event,
    ) -> None:
        self._connect_to = connect
        self._handler = handler
        self._metrics = metrics
        self._stop = stop
        # Made once, by the informer's thread, before anything is listed: the workers read
        # it only for containers the informer gave them.
        self.docker: DockerSource | None = None
        self._stream: EventStream | None = None
        self.last_event_time = 0.0
        self._down_since = 0.0
        self._last_report = 0.0

    def run(self) -> None:
        backoff = Backoff()
        while not self._stop.is_set():
            try:
                self._watch(backoff)
                if self._stop.is_set():
                    return
                self._metrics.reachable("docker", False)
                log.warning("Docker event stream ended (daemon restarting?); reconnecting")
            except DockerUnavailable as exc:
                if self._stop.is_set():
                    return
                self._unreachable(exc)
            except Exception:
                log.exception("unexpected error following Docker; reconnecting")
            if not self._down_since:
                self._down_since = time.time()
            self._stream = None
            self._stop.wait(backoff.next())

    def close(self) -> None:
        stream = self._stream
        if stream is not None:
            stream.close()

    def _watch(self, backoff: Backoff) -> None:
        """Subscribe (before listing, so that nothing is missed), list, then read events
        until the stream ends."""
        if self.docker is None:
            self.docker = self._connect_to()
            log.info("connected to %s at %s", self.docker.engine, self.docker.base_url)
        stream = self.docker.events(since=self.last_event_time or None)
        self._stream = stream
        if self._stop.is_set():
            stream.close()
            return
        self._handler.listed(self.docker)
        self._metrics.reachable("docker", True)
        if self._down_since:
            log.info(
                "Docker reachable again after %.1fs; re-listing containers",
                time.time() - self._down_since,
            )
            self._down_since = 0.0
        backoff.reset()
        for event in stream:
            if event.time_nano:
                self.last_event_time = max(self.last_event_time, event.time)
            self._handler.event(event)

    def _unreachable(self, exc: DockerUnavailable) -> None:
        """One warning when Docker goes away, then one every UNREACHABLE_REPORT_EVERY."""
        self._metrics.reachable("docker", False)
        now = time.time()
        if not self._down_since:
            self._down_since = self._last_report = now
            log.warning("Docker unreachable: %s; retrying", exc)
        elif now - self._last_report >= UNREACHABLE_REPORT_EVERY:
            self._last_report = now
            log.warning("Docker still unreachable after %.0fs: %s", now - self._down_since, exc)
