"""The single writer: what Docker says should exist against what the agent holds.

Every path (an event, start-up, a periodic resync, Consul coming back, the ``resync``
command) ends here as "these containers now want these services"; the reconciler works out
the difference and writes only that. It never removes a service it does not own.

Writes are decided under a lock and sent without it: up to ``max_writes`` requests are in
flight to the agent at once, never two for one service ID (a change for an ID that is being
written waits for that write, and only the newest such change is sent), and the bookkeeping
of each result (what the agent holds, what it refused, what is retired) is done under the
lock as the result comes in. A full comparison (``sync``) reads the agent without holding
anything up, then waits for the writes in flight and plans and writes alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from registrator.adapters.consul_agent import ConsulRejected, ConsulUnavailable
from registrator.adapters.logs import fields
from registrator.adapters.metrics import Metrics
from registrator.core.explanation import WriteResult, write_result
from registrator.core.model import Check, Service
from registrator.core.plan import Outcome, Plan, in_step, make_plan
from registrator.sync.writes import Agent, Ticket, Write, describe, send_register, who

log = logging.getLogger(__name__)

DEFAULT_MAX_WRITES = 8
KEPT_FOR_LATER = "Consul unavailable: change kept for later"
# A Docker health check's status is written again this often (and at the first comparison
# after a start), so that its TTL (model.HEALTH_TTL) never runs out while registrator runs.
HEALTH_REFRESH = 12 * 3600.0


class Reconciler:
    """Holds the desired services per container and applies differences to the agent.

    ``agent=None`` is a dry run: every write is logged and assumed to succeed.
    """

    def __init__(
        self,
        agent: Agent | None,
        owner: str,
        cleanup: bool = False,
        metrics: Metrics | None = None,
        max_writes: int = DEFAULT_MAX_WRITES,
        hold_stale: Callable[[Service], bool] | None = None,
        refresh_health: bool = True,
    ) -> None:
        self.agent = agent
        self.metrics = metrics or Metrics()
        self.owner = owner
        self.cleanup = cleanup
        self.max_writes = max(1, max_writes)
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._write_slots = threading.BoundedSemaphore(self.max_writes)
        self._by_container: dict[str, dict[str, Service]] = {}
        self._claims: dict[str, set[str]] = {}  # service ID -> containers that want it
        self._known: dict[str, Service] = {}  # what the agent holds, as last seen or written
        self._retired: set[str] = set()  # once desired, no longer, removal not yet confirmed
        self._rejected: dict[str, Service] = {}  # refused by the agent: not retried unchanged
        self._last_read_error = ""
        # Writes in flight, by service ID, each with the newest change waiting behind it.
        self._busy: dict[str, Write | None] = {}
        self._changing = 0  # set_container calls between their decision and their last write
        self._alone_now = False  # a sync (or deregister_all) is planning and writing
        self._alone_waiting = 0
        self._writes_done = 0  # results recorded so far, to tell which reads may be stale
        self._written_at: dict[str, int] = {}  # service ID -> _writes_done after its write
        self._down_count = 0  # times the agent was found unavailable
        self._health_at: dict[str, float] = {}  # service ID -> when its health status was written
        self.healthy = True
        self.stale_removal_allowed = False
        # Owned services that are not removed as stale while this says so (services of an
        # awsvpc container whose addresses the ECS agent has not given yet).
        self.hold_stale = hold_stale
        # The daemon keeps health TTLs from running out; a one-shot command only compares.
        self.refresh_health = refresh_health

    # --- reading the state -------------------------------------------------------------

    def desired(self) -> dict[str, Service]:
        with self._lock:
            merged: dict[str, Service] = {}
            for services in self._by_container.values():
                merged.update(services)
            return merged

    def tracked_containers(self) -> set[str]:
        with self._lock:
            return set(self._by_container)

    def tracks(self, container_id: str) -> bool:
        with self._lock:
            return container_id in self._by_container

    def last_write(self, service: Service) -> WriteResult:
        """Where the writes of ``service`` stand, by what this process knows of the agent."""
        with self._lock:
            return write_result(
                service, self._known.get(service.id), self._rejected.get(service.id)
            )

    # --- changing it -------------------------------------------------------------------

    def set_container(
        self, container_id: str, services: Iterable[Service], write: bool = True
    ) -> Outcome:
        """The container now wants exactly ``services`` (none: it is gone or stopped).
        With ``write=False`` the change is only recorded, for a later ``sync``."""
        wanted = {svc.id: svc for svc in services}
        with self._lock:
            while self._alone_now or self._alone_waiting:
                self._cond.wait()
            old = self._by_container.pop(container_id, {})
            for sid in old:
                self._claims[sid].discard(container_id)
                if not self._claims[sid]:
                    del self._claims[sid]
            if wanted:
                self._by_container[container_id] = wanted
                for sid in wanted:
                    self._claims.setdefault(sid, set()).add(container_id)
            gone = [sid for sid in old if sid not in self._claims]
            self._retired.update(gone)
            self._retired.difference_update(wanted)
            if not write:
                return Outcome()
            if not self.healthy:
                return Outcome(unavailable=KEPT_FOR_LATER)
            register = tuple(
                svc
                for sid, svc in sorted(wanted.items())
                if sid in self._busy  # decided when the write in flight for it is done
                or (not in_step(self._known.get(sid), svc) and self._rejected.get(sid) != svc)
            )
            if not register and not gone:
                return Outcome()
            ticket = Ticket(forced=False)
            writes = self._writes_for(Plan(register, tuple(gone)), old, ticket)
            self._changing += 1
        try:
            return self._run(writes, ticket, parallel=False)
        finally:
            with self._lock:
                self._changing -= 1
                self._cond.notify_all()

    def sync(self, remove_stale: bool | None = None) -> Outcome:
        """Compare everything desired with what the agent holds now and apply the difference.

        Cheap when in step: one read, no writes. This is how a Consul that restarted empty is
        refilled and how changes made while it was down are delivered.
        """
        with self._lock:
            before = self._writes_done
        try:
            # Read without holding changes up: an event need not wait for this answer.
            actual = self._read_actual()
        except ConsulUnavailable as exc:
            with self._lock:
                self._mark_unhealthy(str(exc))
            return Outcome(unavailable=str(exc))
        except ConsulRejected as exc:
            with self._lock:
                if self._last_read_error != str(exc):
                    log.error("cannot list services on the agent: %s", exc)
                self._last_read_error = str(exc)
            return Outcome(unavailable=str(exc))
        with self._alone():
            with self._lock:
                self._last_read_error = ""
                # The read may not show what this process wrote while it was under way.
                for sid, at in self._written_at.items():
                    if at > before:
                        if sid in self._known:
                            actual[sid] = self._known[sid]
                        else:
                            actual.pop(sid, None)
                self._written_at.clear()
                self._known = dict(actual)
                self._retired &= set(actual)
                desired = self.desired()
                retry_desired = {
                    sid: svc for sid, svc in desired.items() if self._rejected.get(sid) != svc
                }
                refresh = self._health_due(retry_desired)
                removable = self._removable(actual, remove_stale)
                plan = make_plan(retry_desired, actual, removable, refresh)
                down_count = self._down_count
                ticket = Ticket(forced=True)
                writes = self._writes_for(plan, actual, ticket, refresh)
            outcome = self._run(writes, ticket, parallel=True)
            outcome.unchanged = list(plan.unchanged)
            if outcome.unavailable:
                return outcome
            self.metrics.reachable("consul", True)
            if outcome.complete:
                self.metrics.synced()
            with self._lock:
                back = not self.healthy and self._down_count == down_count
                if back:
                    self.healthy = True
            if back:
                log.info(
                    "Consul reachable again: %d registered, %d removed, %d unchanged",
                    len(outcome.registered),
                    len(outcome.deregistered),
                    len(outcome.unchanged),
                )
            else:
                if outcome.added:
                    log.info(
                        "agent was missing %d service(s); registered again", len(outcome.added)
                    )
                if outcome.updated:
                    log.info(
                        "agent held %d service(s) that differed; updated", len(outcome.updated)
                    )
            return outcome

    def preview(self, remove_stale: bool = True) -> tuple[Plan, dict[str, Service]]:
        """What ``sync`` would write now, and the owned services it compared with; no writes.
        Raises ConsulError when the agent cannot be read."""
        actual = self._read_actual()
        with self._lock:
            return make_plan(self.desired(), actual, self._removable(actual, remove_stale)), actual

    def _read_actual(self) -> dict[str, Service]:
        """The owned services on the agent, each with the checks it holds of those
        registrator gives it (their IDs and statuses): a second read, so that a check left
        over or lost is seen as a difference like any other."""
        if self.agent is None:
            with self._lock:
                return dict(self._known)
        actual = self.agent.owned_services(self.owner)
        held: dict[str, list[Check]] = {}
        for check_id, (sid, status, output) in self.agent.checks().items():
            svc = actual.get(sid)
            if svc is not None and svc.owns_check(check_id):
                held.setdefault(sid, []).append(
                    Check(check_id=check_id, status=status, output=output)
                )
        for sid, checks in held.items():
            actual[sid] = actual[sid]._replace(checks=tuple(checks))
        return actual

    def _health_due(self, desired: Mapping[str, Service]) -> set[str]:
        """Under the lock: services whose health status this process has not written yet, or
        not for HEALTH_REFRESH seconds."""
        if not self.refresh_health:
            return set()
        now = time.monotonic()
        return {
            sid
            for sid, svc in desired.items()
            if svc.health is not None
            and now - self._health_at.get(sid, -HEALTH_REFRESH) >= HEALTH_REFRESH
        }

    def _removable(self, actual: Mapping[str, Service], remove_stale: bool | None) -> set[str]:
        """Owned services that may go: none before Docker was listed once, all with -cleanup,
        else only those this process retired itself."""
        allow = self.stale_removal_allowed if remove_stale is None else remove_stale
        if not allow:
            return set()
        removable = set(actual) if self.cleanup else set(self._retired)
        hold = self.hold_stale
        if hold is not None:
            removable = {sid for sid in removable if sid not in actual or not hold(actual[sid])}
        return removable

    def deregister_all(self) -> Outcome:
        """Remove every service this process wants (used at shutdown when asked to)."""
        with self._alone():
            with self._lock:
                desired = self.desired()
                ticket = Ticket(forced=True)
                writes = self._writes_for(Plan(deregister=tuple(sorted(desired))), desired, ticket)
            return self._run(writes, ticket, parallel=True)

    @contextmanager
    def _alone(self) -> Iterator[None]:
        """Plan and write with no set_container write in flight and none starting (they wait
        until this ends), and with no other sync doing the same."""
        with self._lock:
            self._alone_waiting += 1
            try:
                while self._alone_now or self._changing:
                    self._cond.wait()
            finally:
                self._alone_waiting -= 1
            self._alone_now = True
        try:
            yield
        finally:
            with self._lock:
                self._alone_now = False
                self._cond.notify_all()

    # --- writing -----------------------------------------------------------------------

    def _writes_for(
        self,
        plan: Plan,
        previous: Mapping[str, Service],
        ticket: Ticket,
        refresh: set[str] | None = None,
    ) -> list[Write]:
        """The plan as writes; ``previous`` names the containers of services being removed."""
        again = refresh or set()
        writes = [Write(svc.id, svc, None, ticket, svc.id in again) for svc in plan.register]
        writes += [Write(sid, None, previous.get(sid), ticket) for sid in plan.deregister]
        ticket.open = len(writes)
        return writes

    def _run(self, writes: list[Write], ticket: Ticket, parallel: bool) -> Outcome:
        """Send the writes (without the lock; on up to ``max_writes`` threads when
        ``parallel``) and wait until each has a result, was superseded by a newer change for
        its service ID, or was given up because the agent is unavailable."""
        todo = deque(writes)

        def drain() -> None:
            while todo:
                try:
                    write = todo.popleft()
                except IndexError:
                    return
                self._send(write)

        helpers = min(self.max_writes, len(writes)) - 1 if parallel else 0
        for n in range(helpers):
            threading.Thread(target=drain, name=f"write-{n}", daemon=True).start()
        drain()
        with self._lock:
            while ticket.open:
                self._cond.wait()
            self.metrics.services_owned.set(len(self._known))
        outcome = ticket.outcome
        outcome.registered.sort(key=lambda svc: svc.id)
        outcome.deregistered.sort()
        outcome.rejected.sort()
        return outcome

    def _send(self, write: Write) -> None:
        """Send one write, then, on this thread, the newest change queued behind it."""
        current: Write | None = write
        while current is not None:
            with self._lock:
                if not self._claim(current):
                    return
            failed = True
            try:
                kind, detail = self._perform(current)
                with self._lock:
                    self._record(current, kind, detail)
                failed = False
            finally:  # even after an unexpected error the ID is freed and nobody waits forever
                with self._lock:
                    self._writes_done += 1
                    self._written_at[current.service_id] = self._writes_done
                    queued = self._busy.pop(current.service_id, None)
                    self._finish(current)
                    if failed and queued is not None:
                        self._finish(queued)  # dropped: the next sync compares again
            current = queued

    def _claim(self, write: Write) -> bool:
        """Under the lock: may this write go now? Queues it behind a write in flight for the
        same ID (replacing an older queued one), or drops it when nothing needs writing."""
        sid = write.service_id
        if sid in self._busy:
            superseded = self._busy[sid]
            if superseded is not None:
                self._finish(superseded)
            self._busy[sid] = write
            return False
        ticket = write.ticket
        if ticket.aborted or (not ticket.forced and not self.healthy):
            ticket.outcome.unavailable = ticket.outcome.unavailable or KEPT_FOR_LATER
            self._finish(write)
            return False
        svc = write.service
        known = self._known.get(sid)
        if (
            svc is not None
            and not write.refresh
            and (in_step(known, svc) or self._rejected.get(sid) == svc)
        ):
            self._finish(write)
            return False
        write.known = known
        self._busy[sid] = None
        return True

    def _finish(self, write: Write) -> None:
        write.ticket.open -= 1
        if not write.ticket.open:
            self._cond.notify_all()

    def _perform(self, write: Write) -> tuple[str, Any]:
        """The request, without the lock and within the bound: ("done", existed),
        ("refused", why) or ("unavailable", why)."""
        service = write.service
        if self.agent is None:
            return "done", (True, service is not None and service.health is not None)
        with self._write_slots:
            try:
                if service is not None:
                    return "done", send_register(self.agent, service, write)
                return "done", self.agent.deregister(write.service_id)
            except ConsulUnavailable as exc:
                return "unavailable", str(exc)
            except ConsulRejected as exc:
                return "refused", str(exc)

    def _record(self, write: Write, kind: str, detail: Any) -> None:
        """Under the lock: what a write's result means for the state, the log and metrics."""
        sid, service, gone = write.service_id, write.service, write.gone
        outcome = write.ticket.outcome
        if kind == "unavailable":
            self._mark_unhealthy(detail)
            outcome.unavailable = outcome.unavailable or detail
            write.ticket.aborted = True
            return
        if service is not None:
            named = who(service)
            extra = fields("register", service.container_name, service.container_id, sid)
        else:
            named = who(gone) if gone is not None and gone.container_id else ""
            extra = fields(
                "deregister", gone.container_name if gone else "", gone.container_id if gone else "",
                sid,
            )  # fmt: skip
        if kind == "refused":
            extra["error"] = detail
            if service is not None:
                log.error("%s: service %s not registered: %s", named, sid, detail, extra=extra)
                self._rejected[sid] = service
            else:
                prefix = f"{named}: " if named else ""
                log.error("%sservice %s not deregistered: %s", prefix, sid, detail, extra=extra)
            self.metrics.failures.labels("consul_rejected").inc()
            outcome.rejected.append((sid, detail))
            return
        if service is not None:
            registered, wrote_health = detail
            self._rejected.pop(sid, None)
            self._known[sid] = service
            dry = "dry-run: would " if self.agent is None else ""
            if registered:
                outcome.note_registered(service, held=write.known is not None)
                if self.agent is not None:
                    self.metrics.registrations.inc()
                log.info(
                    "%s%s %s",
                    dry,
                    "register" if dry else "registered",
                    describe(service),
                    extra=extra,
                )
            if wrote_health and service.health is not None:
                self._health_at[sid] = time.monotonic()
                outcome.health.append(service)
                log.info(
                    "%s: %scheck %s %s", named, dry, service.health.check_id,
                    service.health_status, extra=extra,
                )  # fmt: skip
            return
        prefix = f"{named}: " if named else ""
        if self.agent is None:
            log.info("dry-run: would deregister %sservice %s", prefix, sid, extra=extra)
        else:
            note = "" if detail else " (already gone)"
            self.metrics.deregistrations.inc()
            log.info("deregistered %sservice %s%s", prefix, sid, note, extra=extra)
        self._known.pop(sid, None)
        self._health_at.pop(sid, None)
        self._retired.discard(sid)
        self._rejected.pop(sid, None)
        outcome.deregistered.append(sid)

    def _mark_unhealthy(self, reason: str) -> None:
        self._down_count += 1
        self.metrics.failures.labels("consul_unavailable").inc()
        self.metrics.reachable("consul", False)
        if self.healthy:
            log.warning(
                "Consul unavailable (%s); changes are kept and applied when it answers", reason
            )
        self.healthy = False
