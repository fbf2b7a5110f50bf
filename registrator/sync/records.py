"""What the daemon remembers of each container between two of its events: one record per
container, made when the container is first seen and dropped in one place when it is gone
(after gliderlabs/registrator's bridge: per-container state under one lock)."""

from __future__ import annotations

import threading
import time
from typing import NamedTuple

from registrator.adapters.docker_source import ContainerEvent
from registrator.core.explanation import Explained


class ContainerRecord:
    """One container's state; read and written only under ``Records``' lock."""

    __slots__ = (
        "drain_until", "explained", "first_event_ns", "health", "kind", "last_event", "problems",
        "refusals", "withheld",
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
        self.refusals: dict[str, str] = {}  # service ID -> the agent's refusal of its last write


class Pending(NamedTuple):
    """What a worker takes from a record as it starts on the container."""

    first_event_ns: int = 0
    last_event: ContainerEvent | None = None
    drain_until: float = 0.0
    withheld: str = ""
    problems: tuple[str, ...] = ()


class Records:
    """Every container's record, by container ID."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, ContainerRecord] = {}

    def event(self, event: ContainerEvent) -> bool:
        """An event to queue: the newest wins; the oldest one's time is the latency's start.
        False for a health event naming the state the last one named: Podman sends one per
        probe (containers/podman #24003), Docker one per change, and only a change needs an
        inspect."""
        with self._lock:
            record = self._by_id.setdefault(event.container_id, ContainerRecord())
            if event.health:
                if event.health == record.health:
                    return False
                record.health = event.health
            elif event.base_action in ("start", "die", "destroy"):
                record.health = ""  # a new run starts its health over
            if not record.first_event_ns:
                record.first_event_ns = event.time_nano or time.time_ns()
            record.last_event = event
            return True

    def start_drain(self, container_id: str, grace: float) -> bool:
        """A stop signal: withheld for ``grace`` seconds; False if already draining."""
        with self._lock:
            record = self._by_id.setdefault(container_id, ContainerRecord())
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
                record.first_event_ns,
                record.last_event,
                record.drain_until,
                record.withheld,
                record.problems,
            )
            record.first_event_ns = 0
            record.last_event = None
            return pending

    def logged(self, container_id: str, withheld: str, problems: tuple[str, ...]) -> None:
        """What was last said of a running container, so that it is said once."""
        with self._lock:
            record = self._by_id.setdefault(container_id, ContainerRecord())
            record.withheld = withheld
            record.problems = problems

    def assessed(self, container_id: str, kind: str, explained: Explained | None) -> None:
        """The container's last assessment, as the daemon's /containers shows it."""
        with self._lock:
            record = self._by_id.setdefault(container_id, ContainerRecord())
            record.kind, record.explained = kind, explained

    def written(self, container_id: str, rejected: list[tuple[str, str]], done: list[str]) -> None:
        """Writes' results for the container's services: the agent's refusals (service ID,
        message), and IDs written since (their refusal is over)."""
        with self._lock:
            record = self._by_id.get(container_id)
            if record is not None:
                record.refusals.update(rejected)
                for service_id in done:
                    record.refusals.pop(service_id, None)

    def assessments(self) -> list[tuple[str, Explained, dict[str, str]]]:
        """(kind, assessment, refusals) of every container assessed and not dropped."""
        with self._lock:
            return [
                (r.kind, r.explained, dict(r.refusals))
                for r in self._by_id.values()
                if r.explained is not None
            ]

    def end_drain(self, container_id: str) -> None:
        with self._lock:
            record = self._by_id.get(container_id)
            if record is not None:
                record.drain_until = 0.0

    def drop(self, container_id: str) -> None:
        """The container is gone (or stopped for good): forget all of it but an event that
        arrived meanwhile (its worker comes next)."""
        with self._lock:
            record = self._by_id.get(container_id)
            if record is None:
                return
            if record.last_event is None:
                del self._by_id[container_id]
            else:
                record.drain_until, record.withheld, record.problems = 0.0, "", ()
                record.health, record.kind, record.explained, record.refusals = "", "", None, {}
