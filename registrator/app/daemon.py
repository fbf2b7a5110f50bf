"""The daemon: wires the informer (Docker's side), the work queue and its workers, the
container records and the sync loop (the agent's side) together.

Threads, each with one job (docs/development.md#architecture):
- events (``DockerInformer``): subscribe, list, read events; reconnect and list again;
- workers: take a container ID from the keyed queue (one container is never processed by
  two at once, so its events apply in order), assess it (``ContainerProcessor``), keep the
  result in its record, publish what it wants to the sync loop (``AgentSync``, the only
  owner of the agent side) and send the write the loop hands back;
- agent-sync: the loop's clock, a comparison with the agent every ``agent_poll`` seconds,
  and the reads of the agent; its pool (``agent-sync-write-N``) sends what no worker carries.

Waiting goes through the queue: a drain's grace period is the container queued again after
it, an awsvpc container the ECS agent cannot place yet is requeued with the backoff in its
record, and the periodic re-list (``-resync``) is the ``RELIST`` key queued again after it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from registrator.adapters.docker_source import (
    WATCHED_ACTIONS,
    ContainerEvent,
    DockerSource,
    DockerUnavailable,
)
from registrator.adapters.systemd import Notifier
from registrator.core.config import Config
from registrator.core.container import short_id
from registrator.core.explanation import daemon_json
from registrator.core.model import Service
from registrator.core.plan import Outcome
from registrator.sync.agent_sync import AgentSync
from registrator.sync.holding import FlapHold
from registrator.sync.informer import DockerInformer
from registrator.sync.processing import NOT_FOUND, ContainerProcessor, Kind, Verdict
from registrator.sync.records import Pending, Records
from registrator.sync.workqueue import Batch, WorkQueue

log = logging.getLogger(__name__)

# Signals that ask a container to stop: SIGINT, SIGQUIT, SIGKILL, SIGTERM.
DRAIN_SIGNALS = frozenset({"2", "3", "9", "15", "SIGINT", "SIGQUIT", "SIGKILL", "SIGTERM"})
# Retries of an awsvpc container the ECS agent could not place: the first within a second,
# then at most every ECS_RETRY_MAX seconds (so it registers within that of the agent answering).
ECS_RETRY_FIRST = 1.0
ECS_RETRY_MAX = 4.0
RELIST = ""  # the work queue's key for a periodic re-list (no container ID is empty)


def asks_to_stop(event: ContainerEvent) -> bool:
    """A kill with a stop signal; Podman names no signal in its kill events, and its default
    is SIGKILL, so a kill without one counts as a stop signal too."""
    signal = event.attributes.get("signal")
    return signal is None or signal in DRAIN_SIGNALS


class Daemon:
    def __init__(
        self,
        config: Config,
        processor: ContainerProcessor,
        agent_sync: AgentSync,
        docker_factory: Callable[[], DockerSource],
        notifier: Notifier | None = None,
        records: Records | None = None,
    ) -> None:
        self.config = config
        self.notifier = notifier or Notifier({})
        self.processor = processor
        self.agent_sync = agent_sync
        self.agent_sync.after_sync = self._after_sync
        self.metrics = agent_sync.metrics
        self.records = records or Records()
        self._queue: WorkQueue[str] = WorkQueue()
        self._hold = FlapHold(self.records, self._queue, self.metrics.held, config.flap_hold)
        self._stop = threading.Event()
        self.informer = DockerInformer(docker_factory, self, self.metrics, self._stop)
        self._threads: list[threading.Thread] = []
        self.synced = threading.Event()  # set once the first full sync has been applied

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.agent_sync.sync(remove_stale=False)  # learn what the agent holds before diffing
        self._spawn("events", self.informer.run)
        for n in range(max(1, self.config.workers)):
            self._spawn(f"worker-{n}", self._worker_loop)
        if self.config.resync:
            self._queue.add_after(RELIST, self.config.resync)
        if self.notifier.watchdog_interval:
            self._spawn("watchdog", self._watchdog_loop)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 1.5) -> None:
        self.notifier.stopping()
        self._stop.set()
        self._queue.shutdown()
        self.informer.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self.config.deregister_on_shutdown:
            outcome = self.agent_sync.deregister_all()
            log.info("deregistered %d service(s) on shutdown", len(outcome.deregistered))
        self.agent_sync.close()

    # --- what the informer hands over --------------------------------------------------

    def listed(self, docker: DockerSource) -> None:
        """Queue every running container and every one we track (it may have gone). Only a
        periodic resync compares the list API's digests; without one the IDs are listed
        alone (benchmarks/README.md: the cost of the full listing)."""
        if self.config.resync:
            listed = docker.running_fingerprints()
            self.records.relisted(listed)
            running = set(listed)
        else:
            running = set(docker.container_ids())
        self._queue.add_batch(running | self.records.tracked(), on_done=self._after_listing)

    def event(self, event: ContainerEvent) -> None:
        action = event.base_action
        self.metrics.events.labels(action).inc()
        log.debug("event %s %s (%s)", event.action, event.name, short_id(event.container_id))
        if action == "kill":
            if asks_to_stop(event):
                self.records.stop_signal(event.container_id)  # a stop, not a crash (the hold)
            if not self.config.drain or not asks_to_stop(event):
                return
            if self.records.start_drain(event.container_id, self.config.drain_grace):
                self._queue.add_after(event.container_id, self.config.drain_grace)
        if action in WATCHED_ACTIONS and self.records.event(event):
            self._queue.add(event.container_id)

    def _relist(self) -> Batch[str] | None:
        """Queue only containers that started, stopped or changed since the last listing
        (as the list API shows them), and tracked ones that are gone: a cheap safety net for
        missed events."""
        docker = self.informer.docker
        if docker is None:
            return None
        listed = docker.running_fingerprints()
        changed = self.records.relisted(listed) | (self.records.tracked() - set(listed))
        # Nothing changed: no early agent comparison either (the poll keeps its own pace).
        return self._queue.add_batch(changed, on_done=self._after_listing if changed else None)

    def _after_listing(self) -> None:
        self.agent_sync.allow_stale_removal()
        self.agent_sync.request_sync()

    # --- workers -----------------------------------------------------------------------

    def _worker_loop(self) -> None:
        while not self._stop.is_set():
            key = self._queue.get()
            if key is None:
                return
            try:
                if key == RELIST:
                    self._resync()
                else:
                    self.process(key)
            except DockerUnavailable as exc:
                # The reconnect lists every container again, this one included.
                self.metrics.failures.labels("docker_unavailable").inc()
                log.warning("cannot inspect %s: %s", short_id(key), exc)
            except Exception:
                log.exception("error processing container %s", short_id(key))
            finally:
                self._queue.done(key)

    def _resync(self) -> None:
        try:
            batch = self._relist()
            if batch is not None:
                log.debug("resync: %d changed container(s) queued", len(batch.remaining))
        except DockerUnavailable as exc:
            log.warning("resync: %s", exc)
        finally:
            self._queue.add_after(RELIST, self.config.resync)

    def process(self, container_id: str) -> None:
        """Bring one container's services in line with its current state."""
        pending = self.records.take(container_id)
        draining = time.monotonic() < pending.drain_until
        docker = self.informer.docker
        assert docker is not None  # the informer connected before it listed or queued
        verdict = self.processor.assess(docker, container_id, pending.last_event, draining)
        self.records.assessed(container_id, verdict.kind.value, verdict.explained)
        if verdict.kind in (Kind.GONE, Kind.KEPT):
            self._ended(container_id, pending, verdict)
            return
        if pending.drain_until and not draining:
            log.info("%s survived the stop signal", verdict.label)
            self.records.end_drain(container_id)
        if verdict.kind is Kind.WAITING:
            self._waiting(container_id, verdict)
            return  # its services, if any, stay as they are: nothing is guessed
        self._wants(container_id, pending, verdict)

    def _ended(self, container_id: str, pending: Pending, verdict: Verdict) -> None:
        """The container exited or is gone: its services go, unless -deregister on-success
        keeps those of a failed one."""
        if verdict.kind is Kind.KEPT and pending.tracked:
            log.info(
                "%s exited with %s; services kept (-deregister on-success)",
                verdict.label, verdict.reason,
            )  # fmt: skip
            self.records.end_drain(container_id)
            return
        if verdict.reason == NOT_FOUND:
            if pending.tracked:
                log.info("container %s is gone", short_id(container_id))
            else:
                log.debug("container %s gone before it could be inspected", short_id(container_id))
        task_arn = self.records.drop(container_id, removed=verdict.reason == NOT_FOUND)
        placement = self.processor.placement
        if task_arn and placement is not None:
            placement.agent.forget(task_arn)
        self._publish(container_id, (), pending)

    def _waiting(self, container_id: str, verdict: Verdict) -> None:
        if verdict.was_waiting:
            log.debug("%s: still not registered: %s", verdict.label, verdict.reason)
        else:
            log.warning(
                "%s: not registered: %s; retrying until the ECS agent answers",
                verdict.label, verdict.reason,
            )  # fmt: skip
        delay = self.records.retry_delay(container_id, ECS_RETRY_FIRST, ECS_RETRY_MAX)
        self._queue.add_after(container_id, delay)

    def _wants(self, container_id: str, pending: Pending, verdict: Verdict) -> None:
        """A running container: say what changed for it, once, and publish its services."""
        label = verdict.label
        withheld = verdict.reason if verdict.kind is Kind.WITHHELD else ""
        if withheld != pending.withheld:
            if withheld:
                log.info("%s: services withheld: %s", label, withheld)
            else:
                log.info("%s: no longer withheld; registering", label)
        problems = pending.problems
        if verdict.kind is Kind.WANTS:
            if verdict.was_waiting:
                log.info("%s: the ECS agent answered; registering", label)
                self.records.retried(container_id)
            if verdict.problems != problems:
                for problem in verdict.problems:
                    log.warning("%s", problem)
                problems = verdict.problems
            if not verdict.services and not pending.tracked:
                reasons = verdict.explained.reasons() if verdict.explained else ()
                log.debug("ignored %s: %s", label, "; ".join(map(str, reasons)))
        services = self._hold.services(container_id, verdict)  # none while it flaps
        self.records.settled(container_id, services, withheld, problems)
        self._publish(container_id, services, pending)

    def _publish(self, container_id: str, services: tuple[Service, ...], pending: Pending) -> None:
        """Hand what the container wants to the sync loop; the latency metric counts from
        its oldest event to the agent holding the change."""
        if not services and not pending.tracked:
            return  # it wanted nothing before and wants nothing now
        event_ns = pending.first_event_ns
        if not event_ns:  # a listing's container: nobody follows the change to its end
            self.agent_sync.publish(container_id, services, follow=False)
            return

        def observe(_: Outcome) -> None:
            self.metrics.latency.observe(max(0.0, (time.time_ns() - event_ns) / 1e9))

        self.agent_sync.publish(container_id, services, on_done=observe)

    # --- the agent ---------------------------------------------------------------------

    def containers_view(self) -> dict[str, Any]:
        """``GET /containers``: each container's last assessment and where the writes of its
        services stand, an agent's refusal with the agent's message."""
        assessed = self.records.assessments()
        services = [svc for _, explained in assessed for svc in explained.services]
        writes = self.agent_sync.write_states(services)
        entries = [daemon_json(kind, explained, writes) for kind, explained in assessed]
        entries.sort(key=lambda entry: (entry["name"], entry["id"]))
        return {"containers": entries, "consul_reachable": self.agent_sync.consul_reachable}

    def _after_sync(self, outcome: Outcome, containers: int, services: int) -> None:
        """On the sync loop, after a full comparison made once Docker was listed."""
        if self.synced.is_set() or not outcome.complete:
            return
        status = f"synced: {containers} container(s), {services} service(s)"
        log.info("%s", status)
        self.synced.set()
        self.notifier.ready(status)

    def _watchdog_loop(self) -> None:
        """Ping systemd's watchdog while the event, worker and sync threads all live."""
        threads = [*self._threads, self.agent_sync.thread]
        while not self._stop.wait(self.notifier.watchdog_interval):
            dead = [t.name for t in threads if t.name != "watchdog" and not t.is_alive()]
            if dead:
                log.error("thread(s) %s died; no longer feeding the watchdog", ", ".join(dead))
                return
            self.notifier.watchdog()
