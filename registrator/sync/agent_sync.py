"""The one owner of the agent side (after Nomad's command/agent/consul/service_client.go).

Whoever learns what a container wants (a worker, a re-list, a one-shot command) only
publishes it and wakes the loop. The loop's thread alone holds what is desired, what the agent
holds, what it refused and which writes are in flight; it decides in one function
(``_decide``) whether a service ID needs a write, hands writes to a bounded pool (never two
for one ID: a change for an ID in flight waits for its result) and folds the results back in.
Reads of the agent (a full comparison: start-up, every ``poll`` seconds, ``resync``) run on
the pool too, so that no event waits for one. It never removes a service it does not own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from registrator.adapters.consul_agent import ConsulError, ConsulUnavailable
from registrator.adapters.metrics import Metrics
from registrator.core.model import Service
from registrator.core.plan import Outcome, Plan, make_plan
from registrator.sync.agent_state import AgentState, PollClock, Ticket, Why
from registrator.sync.inbox import Inbox
from registrator.sync.writes import (
    Agent,
    Write,
    WriteResult,
    log_deregistered,
    log_refused,
    log_registered,
    read,
    read_actual,
    send,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_WRITES = 8
KEPT_FOR_LATER = "Consul unavailable: change kept for later"


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
        self._inbox = Inbox()
        self._state = AgentState()
        self._clock = PollClock(poll)
        self._pool = ThreadPoolExecutor(self.max_writes + 1, thread_name_prefix="agent-write")
        self.thread = threading.Thread(target=self._run, name="agent-sync", daemon=True)
        self.thread.start()

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
    ) -> Ticket:
        """The container now wants exactly ``services`` (none: it is gone or stopped). With
        ``write=False`` the change is only recorded, for the next full comparison."""
        wanted = {svc.id: svc for svc in services}
        ticket = Ticket(on_done=on_done)
        self._inbox.post(lambda: self._on_publish(container_id, wanted, write, ticket))
        return ticket

    def request_sync(self, remove_stale: bool | None = None) -> Ticket:
        """Compare everything desired with what the agent holds now and apply the difference:
        one read, no write when in step. This refills an agent that restarted empty and
        delivers changes made while it was down."""
        ticket = Ticket(full=True, remove_stale=remove_stale)
        self._inbox.post(lambda: self._on_sync_request(ticket))
        return ticket

    def sync(self, remove_stale: bool | None = None) -> Outcome:
        return self.request_sync(remove_stale).wait()  # see request_sync

    def allow_stale_removal(self) -> None:
        """Docker was listed once: owned services nobody wants may go from now on."""
        self._inbox.post(lambda: setattr(self._state, "stale_removal_allowed", True))

    def desired(self) -> dict[str, Service]:
        return self._inbox.ask(lambda: dict(self._state.desired.services))

    def preview(self, remove_stale: bool = True) -> tuple[Plan, dict[str, Service]]:
        """What ``sync`` would write now, and the owned services it compared with; no writes.
        Raises ConsulError when the agent cannot be read."""
        state = self._state
        if self.agent is None:
            actual = self._inbox.ask(lambda: dict(state.known))
        else:
            actual = read_actual(self.agent, self.owner)
        hold = self.hold_stale
        desired, removable = self._inbox.ask(
            lambda: (
                dict(state.desired.services),
                state.removable(actual, remove_stale, self.cleanup, hold),
            )
        )
        return make_plan(desired, actual, removable), actual

    def deregister_all(self) -> Outcome:
        """Remove every service this process wants (at shutdown, when asked to)."""
        ticket = Ticket()
        self._inbox.post(lambda: self._state.retire_all(ticket))
        return ticket.wait()

    def close(self, timeout: float = 5.0) -> None:
        self._inbox.close()
        self.thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- the loop ----------------------------------------------------------------------

    def _run(self) -> None:
        while (messages := self._inbox.take(self._clock.next)) is not None:
            for message in messages:
                try:
                    message()
                except Exception:
                    log.exception("sync loop: unexpected error")
            if self._clock.due():
                self._on_sync_request(Ticket(full=True))
            self._dispatch()
            self._settle()

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
        state.tickets.append(ticket)

    def _dispatch(self) -> None:
        """Hand what needs a write to the pool, up to the bound; an ID in flight waits."""
        state = self._state
        for sid in list(state.pending):
            if len(state.in_flight) >= self.max_writes:
                return
            if sid in state.in_flight:
                continue  # decided once its write is done
            why = state.pending.pop(sid)
            if not why.forced and not state.consul.reachable:
                state.note_unavailable(sid, KEPT_FOR_LATER)
                continue
            write = state.decide(sid, why)
            if write is not None:
                state.in_flight[sid] = write
                self._pool.submit(send, self.agent, write, self._result)

    def _result(self, write: Write, result: WriteResult, detail: Any) -> None:
        """From a pool thread: a write's result, folded in on the loop."""
        self._inbox.post(lambda: self._on_result(write, result, detail))

    def _on_result(self, write: Write, result: WriteResult, detail: Any) -> None:
        state, sid, dry = self._state, write.service_id, self.agent is None
        outcomes = state.result_in(sid)
        if result is WriteResult.UNAVAILABLE:
            state.consul.down(detail, self.metrics)
            state.note_unavailable(sid, detail)
            state.drop_pending(detail)
        elif result is WriteResult.REFUSED:
            log_refused(write, detail)
            if write.service is not None:
                state.refused[sid] = write.service
            self.metrics.failures.labels("consul_rejected").inc()
            for outcome in outcomes:
                outcome.rejected.append((sid, detail))
        elif write.service is not None:
            registered, wrote_health = detail
            state.registered(write.service, registered, wrote_health, outcomes)
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
                    desired = state.desired
                    self.after_sync(
                        ticket.outcome, len(desired.by_container), len(desired.services)
                    )
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
        self._pool.submit(
            read, self.agent, self.owner, snapshot,
            lambda actual, error: self._inbox.post(lambda: self._on_read(actual, error, started)),
        )  # fmt: skip

    def _on_read(self, actual: dict[str, Service], error: ConsulError | None, started: int) -> None:
        state = self._state
        tickets, state.reading = state.reading, []
        if error is not None:
            self._read_failed(error, tickets)
        else:
            self._clock.answered()
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
        for ticket in tickets:
            ticket.outcome.unavailable = str(error)
