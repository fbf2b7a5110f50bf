"""The imperative shell: follows Docker, feeds the reconciler, keeps the agent in step.

Threads, each with one job:
- events: subscribe (before listing, so nothing is missed), list, then read events; on any
  break reconnect with backoff and list again (dockerd keeps no events across a restart);
- workers: take a container ID from the keyed queue, process it (``ContainerProcessor``) and
  hand what it wants to the reconciler (one container is never processed by two workers at
  once);
- agent: every ``agent_poll`` seconds compare the agent with the desired state (one read, no
  write when in step), which refills an agent that restarted empty and delivers what failed
  while Consul was down; every ``resync`` seconds re-list Docker too.

Waiting goes through the queue: a drain's grace period is the container queued again after
it, and an awsvpc container the ECS agent cannot place yet is requeued with backoff (never
registered at a guessed address; one warning says why).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from registrator.adapters.docker_source import (
    WATCHED_ACTIONS,
    ContainerEvent,
    DockerSource,
    DockerUnavailable,
    EventStream,
)
from registrator.adapters.systemd import Notifier
from registrator.core.backoff import Backoff
from registrator.core.config import Config
from registrator.core.explanation import daemon_json
from registrator.core.plan import Outcome
from registrator.sync.ecs_placement import EcsPlacement
from registrator.sync.holding import FlapHold
from registrator.sync.processing import (
    GONE,
    KEPT,
    NOT_FOUND,
    WAITING,
    WANTS,
    WITHHELD,
    ContainerProcessor,
    Verdict,
)
from registrator.sync.reconcile import Reconciler
from registrator.sync.records import Pending, Records
from registrator.sync.workqueue import Batch, WorkQueue

log = logging.getLogger(__name__)

# Signals that ask a container to stop: SIGINT, SIGQUIT, SIGKILL, SIGTERM.
DRAIN_SIGNALS = frozenset({"2", "3", "9", "15", "SIGINT", "SIGQUIT", "SIGKILL", "SIGTERM"})


def asks_to_stop(event: ContainerEvent) -> bool:
    """A kill with a stop signal; Podman names no signal in its kill events, and its default
    is SIGKILL, so a kill without one counts as a stop signal too."""
    signal = event.attributes.get("signal")
    return signal is None or signal in DRAIN_SIGNALS


UNREACHABLE_REPORT_EVERY = 30.0
# Retries of an awsvpc container the ECS agent could not place: the first within a second,
# then at most every ECS_RETRY_MAX seconds (so it registers within that of the agent answering).
ECS_RETRY_FIRST = 1.0
ECS_RETRY_MAX = 4.0


class Daemon:
    def __init__(
        self,
        config: Config,
        processor: ContainerProcessor,
        reconciler: Reconciler,
        docker_factory: Callable[[], DockerSource],
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.notifier = notifier or Notifier({})
        self.processor = processor
        self.placement: EcsPlacement | None = processor.placement
        self.reconciler = reconciler
        self._docker_factory = docker_factory
        self._docker: DockerSource | None = None
        self._connect_lock = threading.Lock()
        self._stream: EventStream | None = None
        self._queue: WorkQueue[str] = WorkQueue(ECS_RETRY_FIRST, ECS_RETRY_MAX)
        self._records = Records()
        self._stop = threading.Event()
        self._wake_agent = threading.Event()
        self._threads: list[threading.Thread] = []
        self._fingerprints: dict[str, str] = {}  # running containers as last listed
        self.metrics = reconciler.metrics
        self._hold = FlapHold(self._records, self._queue, self.metrics.held, config.flap_hold)
        self.synced = threading.Event()  # set once the first full sync has been applied
        self.last_event_time = 0.0

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.reconciler.sync(remove_stale=False)  # learn what the agent holds before diffing
        self._spawn("events", self._events_loop)
        for n in range(max(1, self.config.workers)):
            self._spawn(f"worker-{n}", self._worker_loop)
        self._spawn("agent", self._agent_loop)
        if self.notifier.watchdog_interval:
            self._spawn("watchdog", self._watchdog_loop)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 1.5) -> None:
        self.notifier.stopping()
        self._stop.set()
        self._wake_agent.set()
        self._queue.shutdown()
        stream = self._stream
        if stream is not None:
            stream.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self.config.deregister_on_shutdown:
            outcome = self.reconciler.deregister_all()
            log.info("deregistered %d service(s) on shutdown", len(outcome.deregistered))

    # --- Docker ------------------------------------------------------------------------

    def _connect(self) -> DockerSource:
        with self._connect_lock:
            if self._docker is None:
                self._docker = self._docker_factory()
                log.info("connected to %s at %s", self._docker.engine, self._docker.base_url)
            return self._docker

    def _events_loop(self) -> None:
        backoff = Backoff()
        down_since = 0.0
        last_report = 0.0
        while not self._stop.is_set():
            try:
                docker = self._connect()
                stream = docker.events(since=self.last_event_time or None)
                self._stream = stream
                if self._stop.is_set():
                    stream.close()
                    return
                self._full_docker_sync(docker)
                self.metrics.reachable("docker", True)
                if down_since:
                    log.info(
                        "Docker reachable again after %.1fs; re-listing containers",
                        time.time() - down_since,
                    )
                    down_since = 0.0
                backoff.reset()
                for event in stream:
                    self._on_event(event)
                if self._stop.is_set():
                    return
                self.metrics.reachable("docker", False)
                log.warning("Docker event stream ended (daemon restarting?); reconnecting")
            except DockerUnavailable as exc:
                if self._stop.is_set():
                    return
                self.metrics.reachable("docker", False)
                now = time.time()
                if not down_since:
                    down_since = now
                    last_report = now
                    log.warning("Docker unreachable: %s; retrying", exc)
                elif now - last_report >= UNREACHABLE_REPORT_EVERY:
                    last_report = now
                    log.warning("Docker still unreachable after %.0fs: %s", now - down_since, exc)
            except Exception:
                log.exception("unexpected error following Docker; reconnecting")
            if not down_since:
                down_since = time.time()
            self._stream = None
            self._stop.wait(backoff.next())

    def _full_docker_sync(self, docker: DockerSource) -> Batch[str]:
        """Queue every running container and every one we track (it may have gone). Only a
        periodic resync compares the list API's digests; without one the IDs are listed
        alone (the full listing and its digests were 3 % of a start-up's instructions with
        300 containers)."""
        if self.config.resync:
            self._fingerprints = docker.running_fingerprints()
            running = set(self._fingerprints)
        else:
            running = set(docker.container_ids())
        ids = running | self.reconciler.tracked_containers()
        return self._queue.add_batch(ids, on_done=self._after_full_sync)

    def _changed_docker_sync(self, docker: DockerSource) -> Batch[str]:
        """Queue only containers that started, stopped or changed since the last listing
        (as the list API shows them), and tracked ones that are gone: a cheap safety net for
        missed events."""
        listed = docker.running_fingerprints()
        changed = {cid for cid, digest in listed.items() if self._fingerprints.get(cid) != digest}
        changed |= self.reconciler.tracked_containers() - set(listed)
        self._fingerprints = listed
        # Nothing changed: no early agent comparison either (the poll keeps its own pace).
        return self._queue.add_batch(changed, on_done=self._after_full_sync if changed else None)

    def _after_full_sync(self) -> None:
        self.reconciler.stale_removal_allowed = True
        self._wake_agent.set()

    def _on_event(self, event: ContainerEvent) -> None:
        if event.time_nano:
            self.last_event_time = max(self.last_event_time, event.time)
        action = event.base_action
        self.metrics.events.labels(action).inc()
        log.debug("event %s %s (%s)", event.action, event.name, event.container_id[:12])
        if action == "kill":
            stops = asks_to_stop(event) and self._records.stop_signal(event.container_id)
            if not self.config.drain or not stops:
                return
            if self._records.start_drain(event.container_id, self.config.drain_grace):
                self._queue.add_after(event.container_id, self.config.drain_grace)
        if action in WATCHED_ACTIONS and self._records.event(event):
            self._queue.add(event.container_id)

    # --- workers -----------------------------------------------------------------------

    def _worker_loop(self) -> None:
        while not self._stop.is_set():
            container_id = self._queue.get()
            if container_id is None:
                return
            try:
                event_ns = self.process(container_id)
                if event_ns:
                    self.metrics.latency.observe(max(0.0, (time.time_ns() - event_ns) / 1e9))
            except DockerUnavailable as exc:
                # The reconnect lists every container again, this one included.
                self.metrics.failures.labels("docker_unavailable").inc()
                log.warning("cannot inspect %s: %s", container_id[:12], exc)
            except Exception:
                log.exception("error processing container %s", container_id[:12])
            finally:
                self._queue.done(container_id)

    def process(self, container_id: str) -> int:
        """Bring one container's services in line with its current state; returns the time
        of the oldest event this handled (0: none)."""
        pending = self._records.take(container_id)
        draining = time.monotonic() < pending.drain_until
        verdict = self.processor.assess(self._connect(), container_id, pending.last_event, draining)
        self._apply(container_id, pending, verdict, draining)
        return pending.first_event_ns

    def _apply(self, container_id: str, pending: Pending, verdict: Verdict, draining: bool) -> None:
        """Log what changed for the container, and hand what it wants to the reconciler."""
        tracked = self.reconciler.tracks(container_id)
        label = verdict.label
        self._records.assessed(container_id, verdict.kind, verdict.explained)
        if verdict.kind == KEPT and tracked:
            log.info(
                "%s exited with %s; services kept (-deregister on-success)", label, verdict.reason
            )
            self._records.end_drain(container_id)
            return
        if verdict.kind in (GONE, KEPT):
            if verdict.reason == NOT_FOUND:
                if tracked:
                    log.info("container %s is gone", container_id[:12])
                else:
                    log.debug("container %s gone before it could be inspected", container_id[:12])
            self._forget(container_id, removed=verdict.reason == NOT_FOUND)  # else: may restart
            self.reconciler.set_container(container_id, ())
            return
        if pending.drain_until and not draining:
            log.info("%s survived the stop signal", label)
            self._records.end_drain(container_id)
        if verdict.kind == WAITING:
            if verdict.was_waiting:
                log.debug("%s: still not registered: %s", label, verdict.reason)
            else:
                log.warning(
                    "%s: not registered: %s; retrying until the ECS agent answers",
                    label,
                    verdict.reason,
                )
            self._queue.add_rate_limited(container_id)
            return  # its services, if any, stay as they are: nothing is guessed
        withheld = verdict.reason if verdict.kind == WITHHELD else ""
        if withheld != pending.withheld:
            if withheld:
                log.info("%s: services withheld: %s", label, withheld)
            else:
                log.info("%s: no longer withheld; registering", label)
        problems = pending.problems
        if verdict.kind == WANTS:
            if verdict.was_waiting:
                log.info("%s: the ECS agent answered; registering", label)
                self._queue.forget(container_id)
            if verdict.problems != problems:
                for problem in verdict.problems:
                    log.warning("%s", problem)
                problems = verdict.problems
            if not verdict.services and not tracked:
                reasons = verdict.explained.reasons() if verdict.explained else ()
                log.debug("ignored %s: %s", label, "; ".join(map(str, reasons)))
        self._records.logged(container_id, withheld, problems)
        services = self._hold.services(container_id, verdict) if verdict.kind == WANTS else ()
        self._note_writes(self.reconciler.set_container(container_id, services))

    def _forget(self, container_id: str, removed: bool = True) -> None:
        self._records.drop(container_id, removed)
        self._queue.forget(container_id)
        if self.placement is not None:
            self.placement.forget(container_id)
        self._hold.count()

    # --- the agent ---------------------------------------------------------------------

    def _agent_loop(self) -> None:
        """Compare the agent with the desired state every ``agent_poll`` seconds (sooner
        when woken: a full Docker listing finished), and re-list Docker every ``resync``
        seconds on a clock of its own."""
        now = time.monotonic()
        next_resync = now + self.config.resync if self.config.resync else math.inf
        next_poll = now
        backoff = Backoff(low=0.2, high=min(2.0, self.config.agent_poll))
        woken = False
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_resync:
                next_resync = now + self.config.resync
                self._resync_docker()
            if woken or now >= next_poll:
                outcome = self.reconciler.sync()
                self._after_sync(outcome)
                if outcome.unavailable:
                    delay = backoff.next()
                else:
                    backoff.reset()
                    delay = self.config.agent_poll
                next_poll = time.monotonic() + delay
            timeout = min(next_poll, next_resync) - time.monotonic()
            woken = self._wake_agent.wait(max(0.0, timeout))
            self._wake_agent.clear()

    def _note_writes(self, outcome: Outcome) -> None:
        """Keep the agent's refusals (and their end) in the containers' records."""
        if outcome.rejected:
            owner = {sid: svc.container_id for sid, svc in self.reconciler.desired().items()}
            for sid, message in outcome.rejected:
                self._records.written(owner.get(sid, ""), [(sid, message)], [])
        for svc in outcome.registered:
            self._records.written(svc.container_id, [], [svc.id])

    def containers_view(self) -> dict[str, Any]:
        """``GET /containers``: each container's last assessment and where the writes of its
        services stand, an agent's refusal with the agent's message."""
        entries = []
        for kind, explained, refusals in self._records.assessments():
            results = {svc.id: self.reconciler.last_write(svc) for svc in explained.services}
            entries.append(daemon_json(kind, explained, refusals, results))
        entries.sort(key=lambda entry: (entry["name"], entry["id"]))
        return {"containers": entries, "consul_reachable": self.reconciler.healthy}

    def _after_sync(self, outcome: Outcome) -> None:
        self._note_writes(outcome)
        if self.synced.is_set() or not self.reconciler.stale_removal_allowed:
            return
        if outcome.complete:
            status = (
                f"synced: {len(self.reconciler.tracked_containers())} container(s), "
                f"{len(self.reconciler.desired())} service(s)"
            )
            log.info("%s", status)
            self.synced.set()
            self.notifier.ready(status)

    def _watchdog_loop(self) -> None:
        """Ping systemd's watchdog while the event, worker and agent threads all live."""
        while not self._stop.wait(self.notifier.watchdog_interval):
            dead = [t.name for t in self._threads if t.name != "watchdog" and not t.is_alive()]
            if dead:
                log.error("thread(s) %s died; no longer feeding the watchdog", ", ".join(dead))
                return
            self.notifier.watchdog()

    def _resync_docker(self) -> None:
        try:
            batch = self._changed_docker_sync(self._connect())
            log.debug("resync: %d changed container(s) queued", len(batch.remaining))
        except DockerUnavailable as exc:
            log.warning("resync: %s", exc)
