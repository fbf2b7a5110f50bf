"""The hold for crash-looping containers, applied: what a container may publish while it
keeps dying soon after it starts (the rule: core/flapping.py; its state: the container's
record). A held container is queued again when its run would release it: no timer thread."""

from __future__ import annotations

import logging
import time
from typing import Any

from registrator.core.explanation import held
from registrator.core.flapping import evidence, held_detail, held_line, seen_held
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
        self._hold = hold
        # registrator_held_containers, counted when scraped: a count at each event would
        # look at every record (benchmarks/README.md)
        gauge.set_function(lambda: records.held_count(time.time()))

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
            if verdict.explained is not None:  # what /containers shows: held, and till when
                seen = held_detail(evidence(hold, container_id), hold.until, self._hold)
                said = held(verdict.explained, seen, hold.until)
                self._records.assessed(container_id, Kind.WITHHELD.value, said)
        elif was_held:
            log.info("%s: up for %.1fs; released: registering", verdict.label, now - started)
        return () if hold.held else verdict.services


def held_at_a_look(verdict: Verdict, now: float, hold: float) -> Verdict:
    """What one inspect tells (``plan``, ``resync`` and ``explain`` keep no history:
    ``flapping.seen_held``): the verdict, withheld with the reason ``held`` when the restart
    policy keeps restarting the container and this run is younger than ``hold``."""
    run = verdict.run
    until = seen_held(*run, now, hold) if verdict.services else 0.0
    if not until:
        return verdict
    up = now - run.started
    seen = f"restarted {run.restarts} times by its restart policy, this run up {up:.1f}s"
    detail = held_detail(seen, until, hold)
    explained = held(verdict.explained, detail, until) if verdict.explained else None
    return verdict._replace(kind=Kind.WITHHELD, services=(), reason=detail, explained=explained)
