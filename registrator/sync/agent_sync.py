"""The one owner of the agent side (after Nomad's command/agent/consul/service_client.go).

Whoever learns what a container wants (a worker, a re-list, a one-shot command) only
publishes it to the loop. The loop's rounds, one at a time (``Inbox``: on the thread that
posted while no round ran), alone hold what is desired, what the agent holds, what it refused
and which writes are in flight (``AgentState``); one function (``AgentState.decide``) says
whether a service ID needs a write. The writes a round hands out are carried by the thread
that ran it (the first) and the write pool (the others), at most ``max_writes`` at once and
never two for one ID (a change for an ID in flight waits for its result); each result comes
back as a message. Reads of the agent (a full comparison: start-up, every ``poll`` seconds,
``resync``) run on the loop's clock thread, so that no event waits for one. It never removes
a service it does not own.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from registrator.adapters.consul_agent import ConsulError, ConsulUnavailable
from registrator.adapters.metrics import Metrics
from registrator.core.explanation import WriteState
from registrator.core.model import Service
from registrator.core.plan import Outcome, Plan, make_plan
from registrator.sync.agent_state import AgentState, PollClock, Ticket, Why
from registrator.sync.loop import Loop, Message
from registrator.sync.writes import (
    Agent,
    Write,
    WriteResult,
    log_deregistered,
    log_refused,
    log_registered,
    perform,
    read,
    read_actual,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_WRITES = 8
KEPT_FOR_LATER = "Consul unavailable: change kept for later"
T = TypeVar("T")


class AgentSync:
    """Keeps the agent in step with what containers want. ``agent=None`` is a dry run: every
    write is logged and assumed to succeed. ``poll`` > 0 compares with the agent that often."""

    def __init__(
        self,
        agent: Agent | None,
        owner: str,
        cleanup: bool = False,
        metrics: Metrics | None = None,
        max_writes: int = DEFAULT_MAX_WRITES,
        hold_stale: Callable[[Service], bool] | None = None,
        refresh_health: bool = True,
        poll: float = 0.0,
        after_sync: Callable[[Outcome, int, int], None] | None = None,
    ) -> None:
        self.agent = agent
        self.owner = owner
        self.cleanup = cleanup
        self.metrics = metrics or Metrics()
        self.max_writes = max(1, max_writes)
        # Owned services not removed as stale while this says so (those of an awsvpc
        # container whose addresses the ECS agent has not given yet).
        self.hold_stale = hold_stale
        self.refresh_health = refresh_health  # the daemon keeps health TTLs from running out
        self.after_sync = after_sync  # called on the loop after each full comparison
        self._state = AgentState()
        self._clock = PollClock(poll)
        self._loop: Loop[Write] = Loop(
            self._end_round, self._send, self.max_writes,
            lambda: self._clock.next, self._tick, "agent-sync",
        )  # fmt: skip
        self.thread = self._loop.thread

    # --- what other threads call -------------------------------------------------------

    @property
    def consul_reachable(self) -> bool:
        """Whether the agent answered the last request (written by the loop only)."""
        return self._state.consul.reachable

    def publish(
        self,
        container_id: str,
        services: Iterable[Service],
        write: bool = True,
        on_done: Callable[[Outcome], None] | None = None,
        follow: bool = True,
    ) -> Ticket:
        """The container now wants exactly ``services`` (none: it is gone or stopped). With
        ``write=False`` the change is only recorded, for the next full comparison;
        ``follow=False``: nobody waits for the ticket (a listing's containers)."""
        wanted = {svc.id: svc for svc in services}
        ticket = Ticket(on_done=on_done, follow=follow)
        self._loop.post(lambda: self._on_publish(container_id, wanted, write, ticket))
        return ticket

    def request_sync(self, remove_stale: bool | None = None) -> Ticket:
        """Compare everything desired with what the agent holds now and apply the difference:
        one read, no write when in step. This refills an agent that restarted empty and
        delivers changes made while it was down."""
        ticket = Ticket(full=True, remove_stale=remove_stale)
        self._loop.post(lambda: self._on_sync_request(ticket))
        return ticket

    def sync(self, remove_stale: bool | None = None) -> Outcome:
        return self.request_sync(remove_stale).wait()  # see request_sync

    def allow_stale_removal(self) -> None:
        """Docker was listed once: owned services nobody wants may go from now on."""
        self._loop.post(lambda: setattr(self._state, "stale_removal_allowed", True), carry=False)

    def desired(self) -> dict[str, Service]:
        return self._loop.ask(lambda: dict(self._state.desired.services))

    def write_states(self, services: list[Service]) -> dict[str, tuple[WriteState, str]]:
        """Where the writes of each service stand (the daemon's ``/containers``)."""
        return self._loop.ask(lambda: {s.id: self._state.write_state(s) for s in services})

    def preview(self, remove_stale: bool = True) -> tuple[Plan, dict[str, Service]]:
        """What ``sync`` would write now, and the owned services it compared with; no writes.
        Raises ConsulError when the agent cannot be read."""
        state = self._state
        if self.agent is None:
            actual = self._loop.ask(lambda: dict(state.known))
        else:
            actual = read_actual(self.agent, self.owner)
        hold = self.hold_stale
        desired, removable = self._loop.ask(
            lambda: (
                dict(state.desired.services),
                state.removable(actual, remove_stale, self.cleanup, hold),
            )
        )
        return make_plan(desired, actual, removable), actual

    def deregister_all(self) -> Outcome:
        """Remove every service this process wants (at shutdown, when asked to)."""
        ticket = Ticket()
        self._loop.post(lambda: self._state.retire_all(ticket))
        return ticket.wait()

    def close(self, timeout: float = 5.0) -> None:
        self._loop.close(timeout)

    # --- the loop's rounds -------------------------------------------------------------

    def _end_round(self) -> list[Write]:
        writes = self._dispatch()
        self._settle()
        return writes

    def _send(self, write: Write) -> Message:
        """On the carrier's thread: the request; the message that folds its result in."""
        try:
            result, detail = perform(self.agent, write)
        except Exception as exc:  # the ID is freed all the same; a comparison retries
            log.exception("writing service %s", write.service_id)
            result, detail = WriteResult.REFUSED, f"unexpected error: {exc}"
        return functools.partial(self._on_result, write, result, detail)

    def _tick(self) -> None:
        if self._clock.due():
            self._on_sync_request(Ticket(full=True))

    def _on_publish(
        self, container_id: str, wanted: dict[str, Service], write: bool, ticket: Ticket
    ) -> None:
        state = self._state
        gone = state.publish(container_id, wanted)
        if not write:
            ticket.finish()
            return
        if not state.consul.reachable:
            ticket.outcome.unavailable = KEPT_FOR_LATER
            ticket.finish()
            return
        ticket.sids = set(wanted) | set(gone)
        for sid in [*sorted(wanted), *sorted(gone)]:
            state.want(sid, Why())
        if ticket.follow:
            state.tickets.append(ticket)

    def _dispatch(self) -> list[Write]:
        """The writes to send now, up to the bound; an ID in flight waits for its result."""
        state = self._state
        writes: list[Write] = []
        while len(state.in_flight) < self.max_writes:
            # the oldest waiting ID not in flight (an ID in flight is decided once its write
            # is done); at most max_writes of those are passed over
            sid = next((sid for sid in state.pending if sid not in state.in_flight), None)
            if sid is None:
                break
            why = state.pending.pop(sid)
            if not why.forced and not state.consul.reachable:
                state.note_unavailable(sid, KEPT_FOR_LATER)
                continue
            write = state.decide(sid, why)
            if write is not None:
                state.in_flight[sid] = write
                writes.append(write)
        return writes

    def _on_result(self, write: Write, result: WriteResult, detail: Any) -> None:
        state, sid, dry = self._state, write.service_id, self.agent is None
        outcomes = state.result_in(sid)
        if result is WriteResult.UNAVAILABLE:
            state.consul.down(detail, self.metrics)
            state.note_unavailable(sid, detail)
            state.drop_pending(detail)
        elif result is WriteResult.REFUSED:
            log_refused(write, detail)
            state.refusal(write, detail, outcomes)
            self.metrics.failures.labels("consul_rejected").inc()
        elif write.service is not None:
            registered, wrote_health = detail
            state.registered(write, registered, wrote_health, outcomes)
            log_registered(write, registered, wrote_health, dry)
            if registered and not dry:
                self.metrics.registrations.inc()
        else:
            state.deregistered(sid, outcomes)
            log_deregistered(write, detail, dry)
            if not dry:
                self.metrics.deregistrations.inc()

    def _settle(self) -> None:
        """End every ticket none of whose IDs waits for a decision or a write."""
        state = self._state
        done = state.settle()
        if done:
            self.metrics.services_owned.set(len(state.known))
        for ticket in done:
            if ticket.full and not ticket.outcome.unavailable:
                state.consul.compared(ticket, self.metrics)
                if self.after_sync is not None and ticket.listed:
                    counts = len(state.desired.by_container), len(state.desired.services)
                    self.after_sync(ticket.outcome, *counts)
            ticket.finish()

    # --- full comparisons --------------------------------------------------------------

    def _on_sync_request(self, ticket: Ticket) -> None:
        """One read at a time; comparisons asked while it is under way get the next one."""
        state = self._state
        if ticket not in state.tickets:
            state.tickets.append(ticket)
            state.syncs_waiting.append(ticket)
        if state.reading or not state.syncs_waiting:
            return
        state.reading, state.syncs_waiting = state.syncs_waiting, []
        snapshot = dict(state.known) if self.agent is None else None
        started = state.writes_done

        def done(actual: dict[str, Service], error: ConsulError | None) -> None:
            # the writes it hands out go to the pool: in parallel, as many as allowed
            self._loop.post(functools.partial(self._on_read, actual, error, started), carry=False)

        wanted = dict(state.desired.services)  # a copy: the read runs on another thread
        self._loop.submit(functools.partial(read, self.agent, self.owner, snapshot, done, wanted))

    def _on_read(self, actual: dict[str, Service], error: ConsulError | None, started: int) -> None:
        state = self._state
        tickets, state.reading = state.reading, []
        if error is not None:
            self._read_failed(error, tickets)
        else:
            self._clock.answered()
            self._loop.wake()
            state.consul.read_error = ""
            state.take_read(actual, started)
            refresh = state.health_due() if self.refresh_health else set()
            for ticket in tickets:
                stale = ticket.remove_stale
                removable = state.removable(actual, stale, self.cleanup, self.hold_stale)
                state.plan_full(ticket, actual, removable, refresh)
        if state.syncs_waiting:
            self._on_sync_request(state.syncs_waiting[0])

    def _read_failed(self, error: ConsulError, tickets: list[Ticket]) -> None:
        consul = self._state.consul  # a refused read is said once, an unavailable one too
        if isinstance(error, ConsulUnavailable):
            consul.down(str(error), self.metrics)
        elif consul.read_error != str(error):
            log.error("cannot list services on the agent: %s", error)
        consul.read_error = str(error)
        self._clock.failed()
        self._loop.wake()
        for ticket in tickets:
            ticket.outcome.unavailable = str(error)
