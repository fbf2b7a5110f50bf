"""The imperative shell: follows Docker, feeds the reconciler, keeps the agent in step.

Threads, each with one job:
- events: subscribe (before listing, so nothing is missed), list, then read events; on any
  break reconnect with backoff and list again (dockerd keeps no events across a restart);
- workers: take a container ID from the keyed queue, inspect it, derive its services and hand
  them to the reconciler (one container is never processed by two workers at once);
- agent: every ``agent_poll`` seconds compare the agent with the desired state (one read, no
  write when in step), which refills an agent that restarted empty and delivers what failed
  while Consul was down; every ``resync`` seconds re-list Docker too.

With ``-ecs`` a worker asks the ECS agent where an awsvpc container answers before deriving
its services. When the agent cannot say, the container is not registered (never at a guessed
address), one warning says why, and a timer queues it again with backoff until the agent
answers; no worker waits for it.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from registrator.config import Config
from registrator.container import ContainerView
from registrator.derive import DeriveOptions, derive_services
from registrator.docker_source import ContainerEvent, DockerSource, DockerUnavailable, EventStream
from registrator.ecs_agent import EcsAgent, EcsAgentError
from registrator.ecs_rules import ECS_CONTAINER_NAME_LABEL, AwsvpcNetwork, awsvpc_task_arn
from registrator.lifecycle import is_running, retained_after_exit, withheld_reason
from registrator.model import Service
from registrator.reconcile import Outcome, Reconciler
from registrator.systemd import Notifier
from registrator.workqueue import Batch, WorkQueue

log = logging.getLogger(__name__)

# Actions that can change a container's services; "kill" only matters with -drain.
QUEUED_ACTIONS = frozenset({"start", "die", "destroy", "rename", "kill", "health_status"})
# Signals that ask a container to stop: SIGINT, SIGQUIT, SIGKILL, SIGTERM.
DRAIN_SIGNALS = frozenset({"2", "3", "9", "15", "SIGINT", "SIGQUIT", "SIGKILL", "SIGTERM"})
RECONNECT_MIN = 0.2
RECONNECT_MAX = 5.0
UNREACHABLE_REPORT_EVERY = 30.0
# Retries of an awsvpc container the ECS agent could not place: the first within a second,
# then at most every ECS_RETRY_MAX seconds (so it registers within that of the agent answering).
ECS_RETRY_FIRST = 1.0
ECS_RETRY_MAX = 4.0


class Backoff:
    """Jittered exponential delays, reset after a success."""

    def __init__(self, low: float = RECONNECT_MIN, high: float = RECONNECT_MAX) -> None:
        self.low = low
        self.high = high
        self.current = 0.0

    def next(self) -> float:
        self.current = min(self.high, max(self.low, self.current * 2))
        return random.uniform(self.current / 2, self.current)

    def reset(self) -> None:
        self.current = 0.0


class _EcsRetry:
    """The pending retry of one task's containers that the ECS agent could not place yet."""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.timer: threading.Timer | None = None


class Daemon:
    def __init__(
        self,
        config: Config,
        options: DeriveOptions,
        reconciler: Reconciler,
        docker_factory: Callable[[], DockerSource],
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.notifier = notifier or Notifier({})
        self.options = options
        self.reconciler = reconciler
        self._docker_factory = docker_factory
        self._docker: DockerSource | None = None
        self._connect_lock = threading.Lock()
        self._stream: EventStream | None = None
        self._queue: WorkQueue[str] = WorkQueue()
        self._stop = threading.Event()
        self._wake_agent = threading.Event()
        self._threads: list[threading.Thread] = []
        self._problems: dict[str, tuple[str, ...]] = {}
        self._withheld_logged: dict[str, str] = {}
        self._draining: dict[str, float] = {}  # container ID -> monotonic end of its grace
        self._event_ns: dict[str, int] = {}  # container ID -> its oldest unprocessed event
        self._last_event: dict[str, ContainerEvent] = {}  # its newest unprocessed event
        self._fingerprints: dict[str, str] = {}  # running containers as last listed
        self.metrics = reconciler.metrics
        self.synced = threading.Event()  # set once the first full sync has been applied
        self.last_event_time = 0.0
        self._ecs: EcsAgent | None = None
        self._ecs_lock = threading.Lock()
        self._ecs_tasks: dict[str, str] = {}  # awsvpc container ID -> its task ARN
        self._ecs_waiting: dict[str, tuple[str, str]] = {}  # ID -> (task ARN, ECS name)
        self._ecs_retries: dict[str, _EcsRetry] = {}  # task ARN -> its pending retry
        if config.ecs:
            self._ecs = EcsAgent(config.ecs_agent_uri, observer=self._ecs_observed)
            reconciler.hold_stale = self._held_for_ecs

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
        with self._ecs_lock:
            for retry in self._ecs_retries.values():
                if retry.timer is not None:
                    retry.timer.cancel()
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
            if not self.config.drain or event.attributes.get("signal") not in DRAIN_SIGNALS:
                return
            if event.container_id not in self._draining:
                grace = self.config.drain_grace
                self._draining[event.container_id] = time.monotonic() + grace
                timer = threading.Timer(grace, self._queue.add, [event.container_id])
                timer.daemon = True
                timer.start()
        if action in QUEUED_ACTIONS:
            self._event_ns.setdefault(event.container_id, event.time_nano or time.time_ns())
            self._last_event[event.container_id] = event
            self._queue.add(event.container_id)

    # --- workers -----------------------------------------------------------------------

    def _worker_loop(self) -> None:
        while not self._stop.is_set():
            container_id = self._queue.get()
            if container_id is None:
                return
            event_ns = self._event_ns.pop(container_id, 0)
            try:
                self.process(container_id)
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

    def process(self, container_id: str, write: bool = True) -> None:
        """Bring one container's services in line with its current state (``write=False``:
        only record what it wants; a later ``sync`` writes; the one-shot commands, for which
        an ECS agent that cannot place an awsvpc container raises EcsAgentError instead of
        being retried)."""
        last = self._last_event.pop(container_id, None)
        if last is not None and self._exited_for_good(last):
            # Its newest event says it is not running: no inspect needed (a dying container
            # answers inspect slowly), and a later start would be its newest event instead.
            self._forget(container_id)
            self.reconciler.set_container(container_id, (), write=write)
            return
        docker = self._connect()
        container = docker.inspect(container_id)
        if container is None:
            if self.reconciler.tracks(container_id):
                log.info("container %s is gone", container_id[:12])
            else:
                log.debug("container %s gone before it could be inspected", container_id[:12])
            self._forget(container_id)
            self.reconciler.set_container(container_id, (), write=write)
            return
        label = ContainerView(container).display
        if not is_running(container):
            self._draining.pop(container_id, None)
            if retained_after_exit(container, self.config.deregister) and self.reconciler.tracks(
                container_id
            ):
                code = container.get("State", {}).get("ExitCode")
                log.info("%s exited with %s; services kept (-deregister on-success)", label, code)
                return
            self._forget(container_id)
            self.reconciler.set_container(container_id, (), write=write)
            return
        withheld = self._withheld(container_id, container)
        if withheld != self._withheld_logged.get(container_id, ""):
            if withheld:
                log.info("%s: services withheld: %s", label, withheld)
            elif self.reconciler.tracks(container_id) or container_id in self._withheld_logged:
                log.info("%s: no longer withheld; registering", label)
            self._withheld_logged[container_id] = withheld
        if withheld:
            self.reconciler.set_container(container_id, (), write=write)
            return
        peer = self._network_peer(docker, container)
        awsvpc: AwsvpcNetwork | None = None
        task_arn = awsvpc_task_arn(container, peer) if self._ecs is not None else ""
        if task_arn:
            try:
                awsvpc = self._ecs_network(container_id, container, task_arn)
            except EcsAgentError as exc:
                if not write:
                    raise type(exc)(f"{label}: {exc}") from exc
                self._ecs_wait(container_id, container, task_arn, exc)
                return  # its services, if any, stay as they are: nothing is guessed
        derivation = derive_services(container, self.options, peer, awsvpc)
        if self._problems.get(container_id) != tuple(map(str, derivation.problems)):
            for problem in derivation.problems:
                log.warning("%s", problem)
            self._problems[container_id] = tuple(map(str, derivation.problems))
        if not derivation.services and not self.reconciler.tracks(container_id):
            log.debug("ignored %s: %s", label, "; ".join(derivation.notes))
        self.reconciler.set_container(container_id, derivation.services, write=write)

    def _exited_for_good(self, event: ContainerEvent) -> bool:
        """A ``destroy``, or a ``die`` whose services go (always, or a successful exit)."""
        if event.base_action == "destroy":
            return True
        if event.base_action != "die":
            return False
        code = event.attributes.get("exitCode", "")
        state = {"Running": False, "ExitCode": int(code) if code.isdigit() else 1}
        return not retained_after_exit({"State": state}, self.config.deregister)

    def _withheld(self, container_id: str, container: Mapping[str, Any]) -> str:
        """Why a running container's services stay out of Consul now: draining after a stop
        signal (until it dies, or survives the grace period), or not yet healthy."""
        deadline = self._draining.get(container_id)
        if deadline is not None:
            if time.monotonic() < deadline:
                return "draining after a stop signal"
            self._draining.pop(container_id, None)
            log.info("%s survived the stop signal", ContainerView(container).display)
        return withheld_reason(container, self.options)

    def _forget(self, container_id: str) -> None:
        self._problems.pop(container_id, None)
        self._withheld_logged.pop(container_id, None)
        self._draining.pop(container_id, None)
        with self._ecs_lock:
            self._ecs_waiting.pop(container_id, None)
            task_arn = self._ecs_tasks.pop(container_id, None)
            if task_arn is None:
                return
            self._ecs_settle(task_arn)
            if self._ecs is not None and task_arn not in self._ecs_tasks.values():
                self._ecs.forget(task_arn)  # the task's last container went

    # --- the ECS agent -----------------------------------------------------------------

    def _ecs_network(
        self, container_id: str, container: Mapping[str, Any], task_arn: str
    ) -> AwsvpcNetwork:
        """What the ECS agent says of an awsvpc container (one request per task)."""
        assert self._ecs is not None
        with self._ecs_lock:
            self._ecs_tasks[container_id] = task_arn
        network = self._ecs.network(task_arn, container_id)
        with self._ecs_lock:
            waited = self._ecs_waiting.pop(container_id, None)
            self._ecs_settle(task_arn)
        if waited is not None:
            log.info("%s: the ECS agent answered; registering", ContainerView(container).display)
        return network

    def _ecs_wait(
        self, container_id: str, container: Mapping[str, Any], task_arn: str, exc: EcsAgentError
    ) -> None:
        """Not registered until the agent answers: say so once, retry the task with backoff."""
        name = ContainerView(container).labels.get(ECS_CONTAINER_NAME_LABEL, "")
        with self._ecs_lock:
            first = container_id not in self._ecs_waiting
            self._ecs_waiting[container_id] = (task_arn, name)
            retry = self._ecs_retries.setdefault(
                task_arn, _EcsRetry(Backoff(low=ECS_RETRY_FIRST, high=ECS_RETRY_MAX))
            )
            if retry.timer is None:
                retry.timer = threading.Timer(retry.backoff.next(), self._ecs_retry, [task_arn])
                retry.timer.daemon = True
                retry.timer.start()
        label = ContainerView(container).display
        if first:
            log.warning("%s: not registered: %s; retrying until the ECS agent answers", label, exc)
        else:
            log.debug("%s: still not registered: %s", label, exc)

    def _ecs_retry(self, task_arn: str) -> None:
        """A task's retry is due: queue its waiting containers (the first one asks; the
        others share its answer)."""
        with self._ecs_lock:
            retry = self._ecs_retries.get(task_arn)
            if retry is None:
                return
            retry.timer = None
            waiting = [cid for cid, (arn, _) in self._ecs_waiting.items() if arn == task_arn]
            self._ecs_settle(task_arn)
        for container_id in waiting:
            self._queue.add(container_id)

    def _ecs_settle(self, task_arn: str) -> None:
        """Drop the task's retry once none of its containers waits (the lock is held)."""
        if any(arn == task_arn for arn, _ in self._ecs_waiting.values()):
            return
        retry = self._ecs_retries.pop(task_arn, None)
        if retry is not None and retry.timer is not None:
            retry.timer.cancel()

    def _ecs_observed(self, error: EcsAgentError | None) -> None:
        """After every request to the ECS agent: failures and reachability, as for Consul."""
        if error is not None:
            self.metrics.failures.labels(error.reason).inc()
        self.metrics.reachable("ecs", error is None or error.answered)

    def _held_for_ecs(self, service: Service) -> bool:
        """A service of an awsvpc container waiting for the agent (e.g. registered before a
        restart of registrator) is not removed as stale: it is not known to be wrong."""
        meta = service.meta_dict
        key = (meta.get("ecs_task_arn", ""), meta.get("ecs_container_name", ""))
        with self._ecs_lock:
            return key in self._ecs_waiting.values()

    def _network_peer(
        self, docker: DockerSource, container: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        view = ContainerView(container)
        if not view.shares_network:
            return None
        peer = docker.inspect(view.network_peer_id)
        if peer is None:
            log.warning("%s: network container %s not found", view.display, view.network_mode)
        return peer

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

    def _after_sync(self, outcome: Outcome) -> None:
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
