"""What the sync loop knows of the agent side, and the one decision it makes from it: plain
objects, no thread and no I/O; the loop's thread alone touches them (``agent_sync``)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

from registrator.adapters.metrics import Metrics
from registrator.core.backoff import Backoff
from registrator.core.explanation import WriteState, write_state_of
from registrator.core.model import Service
from registrator.core.plan import Outcome, Plan, make_plan, needs_register
from registrator.sync.writes import Write

log = logging.getLogger("registrator.sync.agent_sync")

# A Docker health check's status is written again this often (and at the first comparison
# after a start), so that its TTL (model.HEALTH_TTL) never runs out while registrator runs.
HEALTH_REFRESH = 12 * 3600.0


class Desired:
    """What every container wants, merged by service ID: the newest claim of an ID wins, and
    an ID two containers want goes only when neither does."""

    def __init__(self) -> None:
        self.by_container: dict[str, dict[str, Service]] = {}  # in the order they published
        self.services: dict[str, Service] = {}  # merged
        # Service IDs more than one container wants, and how many do: an ID is seldom shared,
        # so this is mostly empty (an index of every claim cost 216 bytes per ID), and only
        # the end of a shared claim looks for the others.
        self.shared: dict[str, int] = {}

    def set(self, container_id: str, wanted: dict[str, Service]) -> dict[str, Service]:
        """The container now wants exactly ``wanted`` (kept as given, not copied: the caller
        hands it over); returns the services nobody wants any longer (by ID, as the
        container wanted them)."""
        old = self.by_container.pop(container_id, {})
        if wanted:
            self.by_container[container_id] = wanted
        for sid in wanted:
            if sid in self.services and sid not in old:
                self.shared[sid] = self.shared.get(sid, 1) + 1
        self.services.update(wanted)
        gone: dict[str, Service] = {}
        for sid, svc in old.items():
            if sid in wanted:
                continue
            claims = self.shared.pop(sid, 1) - 1
            if claims:  # another container's claim, the newest first
                if claims > 1:
                    self.shared[sid] = claims
                self.services[sid] = next(
                    w[sid] for w in reversed(self.by_container.values()) if sid in w
                )
            else:
                del self.services[sid]
                gone[sid] = svc
        return gone


class Why(NamedTuple):
    """Why a service ID waits for the loop's decision."""

    forced: bool = False  # a full comparison: written even while Consul is marked down
    removable: bool = False  # a full comparison found it stale and allowed to go
    refresh: bool = False  # its health status is due to be written again

    def __or__(self, other: object) -> Why:
        assert isinstance(other, Why)
        return Why(*(a or b for a, b in zip(self, other, strict=True)))


class Ticket:
    """A change someone waits for: the service IDs it touched, what was done for them, and
    its end (once none of them waits for a decision or a write)."""

    __slots__ = (
        "done", "down_count", "follow", "full", "listed", "on_done", "outcome", "remove_stale",
        "sids",
    )  # fmt: skip

    def __init__(
        self,
        full: bool = False,
        remove_stale: bool | None = None,
        on_done: Callable[[Outcome], None] | None = None,
        follow: bool = True,
    ) -> None:
        self.sids: set[str] = set()
        self.follow = follow  # False: nobody waits for it; not kept until its writes end
        self.outcome = Outcome()
        self.full = full  # a full comparison: ends after its read and its writes
        self.remove_stale = remove_stale
        self.down_count = 0  # times Consul was found down, as its read came back
        self.listed = False  # planned once Docker was listed (stale services may go)
        self.on_done = on_done
        # Only a ticket someone waits for has an Event: one with a callback, or that nobody
        # follows, is not waited for.
        self.done = threading.Event() if on_done is None and follow else None

    def wait(self, timeout: float | None = None) -> Outcome:
        assert self.done is not None, "a ticket with a callback, or unfollowed, is not waited for"
        if not self.done.wait(timeout):
            raise TimeoutError("the change was not applied in time")
        return self.outcome

    def finish(self) -> None:
        outcome = self.outcome
        outcome.registered.sort(key=lambda svc: svc.id)
        outcome.deregistered.sort()
        outcome.rejected.sort()
        if self.on_done is not None:
            self.on_done(outcome)
        if self.done is not None:
            self.done.set()


class AgentState:
    """Everything the loop owns: what is desired, what the agent holds and refused, which
    IDs wait for a decision or a write, and who waits for them."""

    def __init__(self) -> None:
        self.desired = Desired()
        self.known: dict[str, Service] = {}  # what the agent holds, as last read or written
        self.retired: dict[str, Service] = {}  # once desired, no longer; removal not confirmed
        self.refused: dict[str, Service] = {}  # refused by the agent: not retried unchanged
        self.refused_why: dict[str, str] = {}  # the agent's own message for each refusal
        self.health_at: dict[str, float] = {}  # service ID -> when its health was written
        self.pending: dict[str, Why] = {}  # service IDs waiting for a decision, in order
        self.in_flight: dict[str, Write] = {}
        self.tickets: list[Ticket] = []
        self.reading: list[Ticket] = []  # full comparisons whose read is in flight
        self.syncs_waiting: list[Ticket] = []  # asked while a read was in flight
        self.writes_done = 0  # results folded in so far, to tell which reads may be stale
        self.written_at: dict[str, int] = {}  # service ID -> writes_done after its write
        self.stale_removal_allowed = False
        self.consul = Reachability()

    def publish(self, container_id: str, wanted: dict[str, Service]) -> dict[str, Service]:
        """The container wants ``wanted`` now; returns the services nobody wants any longer."""
        gone = self.desired.set(container_id, wanted)
        self.retired.update(gone)
        for sid in wanted:
            self.retired.pop(sid, None)
        return gone

    def want(self, sid: str, why: Why) -> None:
        """The ID waits for a decision (an ID in flight waits for its result first)."""
        before = self.pending.get(sid)
        self.pending[sid] = why if before is None else before | why

    def decide(self, sid: str, why: Why) -> Write | None:
        """The one place that says whether a service ID needs a write, and which."""
        desired = self.desired.services.get(sid)
        known = self.known.get(sid)
        if desired is not None:
            if needs_register(desired, known, self.refused.get(sid), why.refresh):
                return Write(sid, desired, known, None, why.refresh)
            return None
        if why.removable or sid in self.retired:
            return Write(sid, None, known, self.retired.get(sid) or known)
        return None

    def result_in(self, sid: str) -> list[Outcome]:
        """A write's result came back: the ID is free; the outcomes waiting for it."""
        del self.in_flight[sid]
        self.writes_done += 1
        self.written_at[sid] = self.writes_done
        return [t.outcome for t in self.tickets if sid in t.sids]

    def registered(
        self, write: Write, registered: bool, wrote_health: bool, outcomes: list[Outcome]
    ) -> None:
        service = write.service
        assert service is not None
        self.refused.pop(service.id, None)
        self.refused_why.pop(service.id, None)
        self.known[service.id] = service
        if wrote_health:
            self.health_at[service.id] = time.monotonic()
        for outcome in outcomes:
            if registered:
                outcome.note_registered(service, held=write.known is not None)
            outcome.health += [service] if wrote_health else []

    def refusal(self, write: Write, why: str, outcomes: list[Outcome]) -> None:
        """The agent refused the write: its service is not retried unchanged."""
        if write.service is not None:
            self.refused[write.service_id] = write.service
            self.refused_why[write.service_id] = why
        for outcome in outcomes:
            outcome.rejected.append((write.service_id, why))

    def write_state(self, service: Service) -> tuple[WriteState, str]:
        """Where the writes of ``service`` stand, and the agent's message when it refused it."""
        result = write_state_of(service, self.known.get(service.id), self.refused.get(service.id))
        return result, self.refused_why.get(service.id, "") if result is WriteState.REFUSED else ""

    def deregistered(self, sid: str, outcomes: list[Outcome]) -> None:
        for store in (self.known, self.health_at, self.retired, self.refused, self.refused_why):
            store.pop(sid, None)
        for outcome in outcomes:
            outcome.deregistered.append(sid)

    def retire_all(self, ticket: Ticket) -> None:
        """Shutdown with -deregister-on-shutdown: every container wants nothing."""
        for container_id in list(self.desired.by_container):
            gone = self.publish(container_id, {})
            ticket.sids.update(gone)
            for sid in sorted(gone):
                self.want(sid, Why(forced=True, removable=True))
        self.tickets.append(ticket)

    def plan_full(
        self, ticket: Ticket, actual: Mapping[str, Service], removable: set[str], refresh: set[str]
    ) -> Plan:
        """A full comparison's read came back: every difference waits for a decision, and
        the ticket for those and for the writes already in flight."""
        desired = self.desired.services
        plan = make_plan(desired, actual, removable, refresh, self.refused)
        for svc in plan.register:
            self.want(svc.id, Why(forced=True, refresh=svc.id in refresh))
        for sid in plan.deregister:
            self.want(sid, Why(forced=True, removable=True))
        ticket.sids = {svc.id for svc in plan.register} | set(plan.deregister)
        ticket.sids |= self.in_flight.keys() & desired.keys()
        ticket.outcome.unchanged = list(plan.unchanged)
        ticket.down_count = self.consul.down_count
        ticket.listed = self.stale_removal_allowed
        return plan

    def drop_pending(self, reason: str) -> None:
        """Consul is down: nothing more goes out; who waited for it learns why."""
        for sid in self.pending:
            self.note_unavailable(sid, reason)
        self.pending.clear()

    def note_unavailable(self, sid: str, reason: str) -> None:
        for ticket in self.tickets:
            if sid in ticket.sids and not ticket.outcome.unavailable:
                ticket.outcome.unavailable = reason

    def settle(self) -> list[Ticket]:
        """The tickets none of whose IDs waits for a decision or a write any longer (each
        looked at by its own IDs: a round costs what is waited for, not what is pending)."""
        if not self.tickets:
            return []
        pending, in_flight = self.pending, self.in_flight
        reading = self.reading + self.syncs_waiting
        waiting: list[Ticket] = []
        done: list[Ticket] = []
        for ticket in self.tickets:
            busy = any(sid in pending or sid in in_flight for sid in ticket.sids)
            (waiting if busy or ticket in reading else done).append(ticket)
        self.tickets = waiting
        return done

    def take_read(self, actual: dict[str, Service], started: int) -> None:
        """What a read found becomes what the agent holds, but for IDs written while it was
        under way: the read may not show those writes."""
        for sid, at in self.written_at.items():
            if at > started:
                if sid in self.known:
                    actual[sid] = self.known[sid]
                else:
                    actual.pop(sid, None)
        self.written_at.clear()
        self.known = dict(actual)
        self.retired = {sid: svc for sid, svc in self.retired.items() if sid in actual}

    def health_due(self) -> set[str]:
        """Services whose health status this process has not written yet, or not for
        HEALTH_REFRESH seconds."""
        now, written = time.monotonic(), self.health_at
        return {
            sid
            for sid, svc in self.desired.services.items()
            if svc.health is not None and now - written.get(sid, -HEALTH_REFRESH) >= HEALTH_REFRESH
        }

    def removable(
        self,
        actual: Mapping[str, Service],
        remove_stale: bool | None,
        cleanup: bool,
        hold: Callable[[Service], bool] | None,
    ) -> set[str]:
        """Owned services that may go: none before Docker was listed once, all with -cleanup,
        else only those this process retired itself; never one ``hold`` keeps."""
        allow = self.stale_removal_allowed if remove_stale is None else remove_stale
        if not allow:
            return set()
        removable = set(actual) if cleanup else set(self.retired)
        if hold is not None:
            removable = {sid for sid in removable if sid not in actual or not hold(actual[sid])}
        return removable


class Reachability:
    """Whether Consul answers, said once when it goes and once when it is back."""

    def __init__(self) -> None:
        self.reachable = True
        self.down_count = 0  # times the agent was found unavailable
        self.read_error = ""  # the last refused read, said once

    def down(self, reason: str, metrics: Metrics) -> None:
        self.down_count += 1
        metrics.failures.labels("consul_unavailable").inc()
        metrics.reachable("consul", False)
        if self.reachable:
            log.warning(
                "Consul unavailable (%s); changes are kept and applied when it answers", reason
            )
        self.reachable = False

    def compared(self, ticket: Ticket, metrics: Metrics) -> None:
        """A full comparison ended with the agent answering: back, if nothing failed since
        its read."""
        outcome = ticket.outcome
        metrics.reachable("consul", True)
        if outcome.complete:
            metrics.synced()
        if not self.reachable and self.down_count == ticket.down_count:
            self.reachable = True
            log.info(
                "Consul reachable again: %d registered, %d removed, %d unchanged",
                len(outcome.registered), len(outcome.deregistered), len(outcome.unchanged),
            )  # fmt: skip
        else:
            if outcome.added:
                log.info("agent was missing %d service(s); registered again", len(outcome.added))
            if outcome.updated:
                log.info("agent held %d service(s) that differed; updated", len(outcome.updated))


class PollClock:
    """When the agent is read next: every ``poll`` seconds (0: only when asked), sooner
    with backoff while it does not answer."""

    def __init__(self, poll: float) -> None:
        self.poll = poll
        self.next = time.monotonic() + poll if poll else math.inf
        self._backoff = Backoff(low=0.2, high=min(2.0, poll or 2.0))

    def due(self) -> bool:
        if time.monotonic() < self.next:
            return False
        self.next = math.inf  # set again when this read comes back
        return True

    def answered(self) -> None:
        self._backoff.reset()
        self.next = time.monotonic() + self.poll if self.poll else math.inf

    def failed(self) -> None:
        if self.poll:
            self.next = time.monotonic() + self._backoff.next()
