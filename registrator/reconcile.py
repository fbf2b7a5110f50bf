"""The single writer: what Docker says should exist against what the agent holds.

Every path (an event, start-up, a periodic resync, Consul coming back, the ``resync``
command) ends here as "these containers now want these services"; the reconciler works out
the difference and writes only that. It never removes a service it does not own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from registrator.consul_agent import ConsulRejected, ConsulUnavailable
from registrator.logs import fields
from registrator.metrics import Metrics
from registrator.model import Service

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class Agent(Protocol):
    def owned_services(self, owner: str) -> dict[str, Service]: ...
    def register(self, service: Service) -> None: ...
    def deregister(self, service_id: str) -> bool: ...


@dataclass(frozen=True)
class Plan:
    """The writes that make ``actual`` match ``desired``."""

    register: tuple[Service, ...] = ()
    deregister: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.register and not self.deregister


def make_plan(
    desired: Mapping[str, Service],
    actual: Mapping[str, Service],
    removable: Iterable[str] | None = None,
) -> Plan:
    """Register what is missing or different; deregister what is no longer desired, limited
    to ``removable`` when given (services registrator owns but may not remove stay)."""
    register = tuple(svc for sid, svc in sorted(desired.items()) if actual.get(sid) != svc)
    unchanged = tuple(sid for sid, svc in sorted(desired.items()) if actual.get(sid) == svc)
    stale = set(actual) - set(desired)
    if removable is not None:
        stale &= set(removable)
    return Plan(register, tuple(sorted(stale)), unchanged)


@dataclass
class Outcome:
    """What one application of a plan did, for logs and the ``resync`` command."""

    registered: list[Service] = field(default_factory=list)
    deregistered: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    unavailable: str = ""

    @property
    def complete(self) -> bool:
        return not self.unavailable and not self.rejected


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
    ) -> None:
        self.agent = agent
        self.metrics = metrics or Metrics()
        self.owner = owner
        self.cleanup = cleanup
        self._lock = threading.RLock()
        self._by_container: dict[str, dict[str, Service]] = {}
        self._claims: dict[str, set[str]] = {}  # service ID -> containers that want it
        self._known: dict[str, Service] = {}  # what the agent holds, as last seen or written
        self._retired: set[str] = set()  # once desired, no longer, removal not yet confirmed
        self._rejected: dict[str, Service] = {}  # refused by the agent: not retried unchanged
        self._last_read_error = ""
        self.healthy = True
        self.stale_removal_allowed = False
        # Owned services that are not removed as stale while this says so (services of an
        # awsvpc container whose addresses the ECS agent has not given yet).
        self.hold_stale: Callable[[Service], bool] | None = None

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

    # --- changing it -------------------------------------------------------------------

    def set_container(
        self, container_id: str, services: Iterable[Service], write: bool = True
    ) -> Outcome:
        """The container now wants exactly ``services`` (none: it is gone or stopped).
        With ``write=False`` the change is only recorded, for a later ``sync``."""
        wanted = {svc.id: svc for svc in services}
        with self._lock:
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
                return Outcome(unavailable="Consul unavailable: change kept for later")
            plan = Plan(
                register=tuple(
                    svc
                    for sid, svc in sorted(wanted.items())
                    if self._known.get(sid) != svc and self._rejected.get(sid) != svc
                ),
                deregister=tuple(gone),
            )
            return self._apply(plan, old)

    def sync(self, remove_stale: bool | None = None) -> Outcome:
        """Compare everything desired with what the agent holds now and apply the difference.

        Cheap when in step: one read, no writes. This is how a Consul that restarted empty is
        refilled and how changes made while it was down are delivered.
        """
        with self._lock:
            try:
                actual = self._read_actual()
            except ConsulUnavailable as exc:
                self._mark_unhealthy(str(exc))
                return Outcome(unavailable=str(exc))
            except ConsulRejected as exc:
                if self._last_read_error != str(exc):
                    log.error("cannot list services on the agent: %s", exc)
                self._last_read_error = str(exc)
                return Outcome(unavailable=str(exc))
            self._last_read_error = ""
            self._known = dict(actual)
            self._retired &= set(actual)
            desired = self.desired()
            retry_desired = {
                sid: svc for sid, svc in desired.items() if self._rejected.get(sid) != svc
            }
            plan = make_plan(retry_desired, actual, self._removable(actual, remove_stale))
            outcome = self._apply(plan, actual)
            outcome.unchanged = list(plan.unchanged)
            if outcome.unavailable:
                return outcome
            self.metrics.reachable("consul", True)
            if outcome.complete:
                self.metrics.synced()
            if not self.healthy:
                self.healthy = True
                log.info(
                    "Consul reachable again: %d registered, %d removed, %d unchanged",
                    len(outcome.registered),
                    len(outcome.deregistered),
                    len(outcome.unchanged),
                )
            elif outcome.registered:
                log.info(
                    "agent was missing %d service(s); registered again", len(outcome.registered)
                )
            return outcome

    def preview(self, remove_stale: bool = True) -> tuple[Plan, dict[str, Service]]:
        """What ``sync`` would write now, and the owned services it compared with; no writes.
        Raises ConsulError when the agent cannot be read."""
        with self._lock:
            actual = self._read_actual()
            return make_plan(self.desired(), actual, self._removable(actual, remove_stale)), actual

    def _read_actual(self) -> dict[str, Service]:
        if self.agent is None:
            return dict(self._known)
        return self.agent.owned_services(self.owner)

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
        with self._lock:
            desired = self.desired()
            plan = Plan(deregister=tuple(sorted(desired)))
            return self._apply(plan, desired)

    # --- writing -----------------------------------------------------------------------

    def _apply(self, plan: Plan, previous: Mapping[str, Service]) -> Outcome:
        """Write the plan; ``previous`` names the containers of services being removed.
        Stops at the first sign that the agent is unavailable (the rest waits for a sync)."""
        outcome = Outcome()
        try:
            for service in plan.register:
                self._register(service, outcome)
            for service_id in plan.deregister:
                self._deregister(service_id, previous.get(service_id), outcome)
        except _AgentDown:
            pass
        self.metrics.services_owned.set(len(self._known))
        return outcome

    def _register(self, service: Service, outcome: Outcome) -> None:
        extra = fields("register", service.container_name, service.container_id, service.id)
        if self.agent is not None:
            what = f"{_who(service)}: service {service.id} not registered"
            if not self._write(self.agent.register, service, what, extra, outcome):
                self._rejected[service.id] = service
                return
        self._rejected.pop(service.id, None)
        self._known[service.id] = service
        outcome.registered.append(service)
        if self.agent is None:
            log.info("dry-run: would register %s", _desc(service), extra=extra)
        else:
            self.metrics.registrations.inc()
            log.info("registered %s", _desc(service), extra=extra)

    def _deregister(self, service_id: str, gone: Service | None, outcome: Outcome) -> None:
        who = f"{_who(gone)}: " if gone is not None and gone.container_id else ""
        extra = fields(
            "deregister", gone.container_name if gone else "", gone.container_id if gone else "",
            service_id,
        )  # fmt: skip
        if self.agent is None:
            log.info("dry-run: would deregister %sservice %s", who, service_id, extra=extra)
        else:
            what = f"{who}service {service_id} not deregistered"
            existed = self._write(self.agent.deregister, service_id, what, extra, outcome)
            if existed is None:
                return
            note = "" if existed else " (already gone)"
            self.metrics.deregistrations.inc()
            log.info("deregistered %sservice %s%s", who, service_id, note, extra=extra)
        self._known.pop(service_id, None)
        self._retired.discard(service_id)
        self._rejected.pop(service_id, None)
        outcome.deregistered.append(service_id)

    def _write(
        self,
        call: Callable[[_T], object],
        subject: _T,
        what: str,
        extra: dict[str, Any],
        outcome: Outcome,
    ) -> Any:
        """One write to the agent: its result; None when the agent refused it (logged, the
        rest goes on); raises _AgentDown when the agent is unavailable."""
        subject_id = subject.id if isinstance(subject, Service) else str(subject)
        try:
            result = call(subject)
        except ConsulUnavailable as exc:
            self._mark_unhealthy(str(exc))
            outcome.unavailable = str(exc)
            raise _AgentDown from exc
        except ConsulRejected as exc:
            extra["error"] = str(exc)
            log.error("%s: %s", what, exc, extra=extra)
            self.metrics.failures.labels("consul_rejected").inc()
            outcome.rejected.append((subject_id, str(exc)))
            return None
        return True if result is None else result

    def _mark_unhealthy(self, reason: str) -> None:
        self.metrics.failures.labels("consul_unavailable").inc()
        self.metrics.reachable("consul", False)
        if self.healthy:
            log.warning(
                "Consul unavailable (%s); changes are kept and applied when it answers", reason
            )
        self.healthy = False


class _AgentDown(Exception):
    """Internal: stop applying a plan, the agent is unavailable."""


def _who(service: Service) -> str:
    return f"{service.container_name} ({service.container_id[:12]})"


def _desc(service: Service) -> str:
    tags = ",".join(service.tags)
    return (
        f"{_who(service)}: service {service.id} "
        f"(name {service.name}, {service.address or '-'}:{service.port}, tags [{tags}])"
    )
