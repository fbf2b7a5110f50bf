"""All that registrator knows of each container on the Docker side: one record per container,
made when the container is first seen and dropped in one place (``Records.drop``) when it is
gone (after gliderlabs/registrator's bridge: per-container state under one lock).

The flapping hold keeps its state here too: each record knows its current run (when it
began, whether a stop signal was sent) and whether that run is held; the runs that ended
recently, of every container, stay beside the records for ``WINDOW`` (a replacement looks at
its predecessors', which may be gone). Nothing of it is kept across a registrator restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import NamedTuple

from registrator.adapters.docker_source import ContainerEvent
from registrator.core.backoff import Backoff
from registrator.core.explanation import Explained
from registrator.core.flapping import WINDOW, Hold, RecentRuns, Run, assess
from registrator.core.model import Service


class Placement(NamedTuple):
    """An awsvpc container as the ECS agent placed it (or could not)."""

    task_arn: str
    ecs_name: str  # its container name in the task definition
    waiting: bool  # the agent could not place it at its last try


class ContainerRecord:
    """One container's state; read and written only under ``Records``' lock."""

    __slots__ = (
        "drain_until", "explained", "fingerprint", "first_event_ns", "health", "held_at",
        "held_until", "kind", "last_event", "name", "placement", "problems", "retry",
        "run_started", "service_names", "services", "stopping", "withheld",
    )  # fmt: skip

    def __init__(self) -> None:
        self.first_event_ns = 0  # its oldest unprocessed event (for the latency metric)
        self.last_event: ContainerEvent | None = None  # its newest unprocessed event
        self.drain_until = 0.0  # monotonic end of the grace after a stop signal; 0: none
        self.withheld = ""  # why its services are withheld, as last logged ("" none)
        self.problems: tuple[str, ...] = ()  # its metadata problems, as last logged
        self.health = ""  # the health state its last health event named ("" none since start)
        self.kind = ""  # what it wanted at its last assessment (processing's verdict kind)
        self.explained: Explained | None = None  # that assessment, for /containers
        self.services: tuple[Service, ...] = ()  # what it wants, as last published
        self.fingerprint = ""  # the list API's digest of it at the last listing
        self.placement: Placement | None = None  # awsvpc only: where the ECS agent put it
        self.retry: Backoff | None = None  # while the ECS agent cannot place it
        # The flapping hold (core/flapping.py): its current run and whether it is held.
        self.name = ""  # the container's name, as its events give it
        self.run_started = 0.0  # when its current run began (Unix seconds, Docker's); 0: unknown
        self.stopping = False  # a stop signal was sent during the current run
        # as last derived; a tuple (a name or two) is a fifth of a frozenset's size
        self.service_names: tuple[str, ...] = ()
        self.held_until = 0.0  # its current run is held until then (Unix seconds); 0: not
        self.held_at = 0.0  # when it was last held (Unix seconds): it counts as held till
        # released, removed, or WINDOW later


class Pending(NamedTuple):
    """What a worker takes from a record as it starts on the container."""

    first_event_ns: int = 0
    last_event: ContainerEvent | None = None
    drain_until: float = 0.0
    withheld: str = ""
    problems: tuple[str, ...] = ()
    tracked: bool = False  # it wants services (as last published)


class Records:
    """Every container's record, by container ID."""

    def __init__(self, keep_assessments: bool = True) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, ContainerRecord] = {}
        self._runs = RecentRuns()
        # Each container's last assessment (its explanation: the largest part of a record) is
        # kept only when someone can ask for it: the daemon's /containers, with -metrics-addr.
        self._keep_assessments = keep_assessments

    def _record(self, container_id: str) -> ContainerRecord:
        """The container's record, made on first use (with the lock held; ``setdefault``
        would make a record at every call)."""
        record = self._by_id.get(container_id)
        if record is None:
            record = self._by_id[container_id] = ContainerRecord()
        return record

    def event(self, event: ContainerEvent) -> bool:
        """An event to queue: the newest wins; the oldest one's time is the latency's start.
        False for a health event naming the state the last one named: Podman sends one per
        probe (containers/podman #24003), Docker one per change, and only a change needs an
        inspect."""
        with self._lock:
            record = self._record(event.container_id)
            if event.health:
                if event.health == record.health:
                    return False
                record.health = event.health
            elif event.base_action in ("start", "die", "destroy"):
                record.health = ""  # a new run starts its health over
                self._follow_run(record, event)
            if not record.first_event_ns:
                record.first_event_ns = event.time_nano or time.time_ns()
            record.last_event = event
            return True

    def _follow_run(self, record: ContainerRecord, event: ContainerEvent) -> None:
        """A start begins a run; a die ends it, and the run joins the recent ones."""
        record.name = event.name or record.name
        if event.base_action == "start":
            record.run_started, record.stopping = event.time, False
        elif event.base_action == "die" and record.run_started:
            crashed = not record.stopping and event.attributes.get("exitCode", "1") != "0"
            run = Run(
                event.container_id, record.name, record.service_names, record.run_started,
                event.time, crashed, record.held_until > 0,
            )  # fmt: skip
            self._runs.add(run, event.time)
            record.run_started, record.stopping, record.held_until = 0.0, False, 0.0
        elif event.base_action == "destroy":
            record.held_at = 0.0  # removed: no longer held, dropped with the rest

    def stop_signal(self, container_id: str) -> None:
        """A stop signal: the run, whatever it lasts, ends on purpose, not in a crash."""
        with self._lock:
            self._record(container_id).stopping = True

    def hold(
        self, container_id: str, services: frozenset[str], started: float, now: float, hold: float
    ) -> tuple[Hold, bool]:
        """Whether the container's run that began at ``started`` is held now, and whether it
        was held before this look."""
        with self._lock:
            record = self._record(container_id)
            record.service_names = tuple(services)
            record.run_started = record.run_started or started
            verdict = assess(self._runs, container_id, services, started, now, hold)
            was_held = record.held_at > 0
            record.held_until = verdict.until
            record.held_at = now if verdict.held else 0.0
            return verdict, was_held

    def held_count(self, now: float) -> int:
        """Containers held at their last start, not released nor removed since, and held
        less than WINDOW ago (a held container that never starts again stops counting)."""
        with self._lock:
            return sum(r.held_at > 0 and now - r.held_at <= WINDOW for r in self._by_id.values())

    def start_drain(self, container_id: str, grace: float) -> bool:
        """A stop signal: withheld for ``grace`` seconds; False if already draining."""
        with self._lock:
            record = self._record(container_id)
            if record.drain_until:
                return False
            record.drain_until = time.monotonic() + grace
            return True

    def take(self, container_id: str) -> Pending:
        """The record as a worker starts on the container; its events count as handled."""
        with self._lock:
            record = self._by_id.get(container_id)
            if record is None:
                return Pending()
            pending = Pending(
                record.first_event_ns, record.last_event, record.drain_until,
                record.withheld, record.problems, bool(record.services),
            )  # fmt: skip
            record.first_event_ns = 0
            record.last_event = None
            return pending

    def settled(
        self,
        container_id: str,
        services: tuple[Service, ...],
        withheld: str,
        problems: tuple[str, ...],
    ) -> None:
        """What a running container wants now, and what was last said of it (said once)."""
        with self._lock:
            record = self._record(container_id)
            record.services, record.withheld, record.problems = services, withheld, problems

    def assessed(self, container_id: str, kind: str, explained: Explained | None) -> None:
        """The container's last assessment, as the daemon's /containers shows it."""
        if not self._keep_assessments:
            return
        with self._lock:
            record = self._record(container_id)
            record.kind, record.explained = kind, explained

    def assessments(self) -> list[tuple[str, Explained]]:
        """(kind, assessment) of every container assessed and not dropped."""
        with self._lock:
            return [(r.kind, r.explained) for r in self._by_id.values() if r.explained is not None]

    def end_drain(self, container_id: str) -> None:
        with self._lock:
            record = self._by_id.get(container_id)
            if record is not None:
                record.drain_until = 0.0

    def tracked(self) -> set[str]:
        """The containers that want services."""
        with self._lock:
            return {cid for cid, record in self._by_id.items() if record.services}

    def relisted(self, listed: Mapping[str, str]) -> set[str]:
        """A listing's digests by container ID; returns the containers whose digest changed
        since the last listing."""
        changed: set[str] = set()
        with self._lock:
            for cid, digest in listed.items():
                record = self._record(cid)
                if record.fingerprint != digest:
                    record.fingerprint = digest
                    changed.add(cid)
        return changed

    # --- awsvpc containers (with -ecs) -------------------------------------------------

    def placed(self, container_id: str, placement: Placement) -> bool:
        """The ECS agent's latest answer for the container; True if it waited before."""
        with self._lock:
            record = self._record(container_id)
            before = record.placement
            record.placement = placement
            return before is not None and before.waiting

    def held(self, service: Service) -> bool:
        """A service of an awsvpc container waiting for the ECS agent (e.g. registered before
        a restart of registrator) is not removed as stale: it is not known to be wrong."""
        meta = service.meta_dict
        key = (meta.get("ecs_task_arn", ""), meta.get("ecs_container_name", ""))
        if not key[0]:
            return False  # not an ECS task's service: no need to look
        with self._lock:
            return any(
                record.placement is not None
                and record.placement.waiting
                and record.placement[:2] == key
                for record in self._by_id.values()
            )

    def retry_delay(self, container_id: str, low: float, high: float) -> float:
        """The next delay of the container's own backoff (reset by ``retried``)."""
        with self._lock:
            record = self._record(container_id)
            if record.retry is None:
                record.retry = Backoff(low, high)
            return record.retry.next()

    def retried(self, container_id: str) -> None:
        """What was retried succeeded: the next retry starts over."""
        with self._lock:
            record = self._by_id.get(container_id)
            if record is not None:
                record.retry = None

    # --- the end -----------------------------------------------------------------------

    def drop(self, container_id: str, removed: bool = True) -> str:
        """The container is gone (or stopped for good): forget all of it but an event that
        arrived meanwhile (its worker comes next) and, when it only exited (Docker may start
        it again), its hold. Returns its ECS task's ARN when no other container of that task
        is known any longer ("" otherwise)."""
        with self._lock:
            record = self._by_id.get(container_id)
            if record is None:
                return ""
            placement = record.placement
            keep_hold = not removed and record.held_at > 0
            if record.last_event is None and not keep_hold:
                del self._by_id[container_id]
            else:
                fresh = ContainerRecord()
                fresh.first_event_ns, fresh.last_event = record.first_event_ns, record.last_event
                fresh.name, fresh.service_names = record.name, record.service_names
                fresh.run_started, fresh.stopping = record.run_started, record.stopping
                fresh.held_at = record.held_at if keep_hold else 0.0
                self._by_id[container_id] = fresh
            if placement is None or any(
                other.placement is not None and other.placement.task_arn == placement.task_arn
                for other in self._by_id.values()
            ):
                return ""
            return placement.task_arn
