"""The hold for crash-looping containers, applied: what a container may publish while it
keeps dying soon after it starts (the rule: core/flapping.py; its state: the container's
record). A held container is queued again when its run would release it: no timer thread."""

from __future__ import annotations

import logging
import time
from typing import Any

from registrator.core.flapping import held_line
from registrator.core.model import Service
from registrator.sync.processing import Kind, Verdict
from registrator.sync.records import Records
from registrator.sync.workqueue import WorkQueue

log = logging.getLogger(__name__)


class FlapHold:
    """Applies ``-flap-hold`` (``hold`` seconds; 0: off) to what containers want."""

    def __init__(self, records: Records, queue: WorkQueue[str], gauge: Any, hold: float) -> None:
        self._records = records
        self._queue = queue
        self._gauge = gauge  # registrator_held_containers
        self._hold = hold

    def services(self, container_id: str, verdict: Verdict) -> tuple[Service, ...]:
        """The services to publish: none while the container is held. Said once (a warning
        naming what was seen and what releases it), then at DEBUG while the streak goes on."""
        if verdict.kind is not Kind.WANTS or not verdict.services or not self._hold:
            return verdict.services
        now = time.time()
        names = frozenset(service.name for service in verdict.services)
        started = verdict.run.started
        hold, was_held = self._records.hold(container_id, names, started, now, self._hold)
        if hold.held:
            level = logging.DEBUG if was_held or hold.continued else logging.WARNING
            log.log(level, "%s", held_line(verdict.label, names, hold, container_id, self._hold))
            self._queue.add_after(container_id, hold.until - now + 0.05)  # just after
        elif was_held:
            log.info("%s: up for %.1fs; released: registering", verdict.label, now - started)
        self.count(now)
        return () if hold.held else verdict.services

    def dropped(self, container_id: str, removed: bool) -> str:
        """The container exited or is gone: its record goes (``Records.drop``: its hold stays
        when it only exited, as Docker may start it again); the gauge follows."""
        task_arn = self._records.drop(container_id, removed)
        self.count()
        return task_arn

    def count(self, now: float | None = None) -> None:
        """The gauge, after a hold changed or a container went."""
        self._gauge.set(self._records.held_count(time.time() if now is None else now))
