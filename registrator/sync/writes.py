"""One write to the agent: what the sync loop hands to its pool, the request itself (run on a
pool thread) and the log line that says what it did."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

from registrator.adapters.consul_agent import ConsulError, ConsulRejected, ConsulUnavailable
from registrator.adapters.logs import fields
from registrator.core.container import display_name
from registrator.core.model import AgentCheck, Check, Service
from registrator.core.networks import join_host_port
from registrator.core.plan import same_registration

log = logging.getLogger(__name__)


class Agent(Protocol):
    def owned_services(
        self, owner: str, wanted: Mapping[str, Service] | None = None
    ) -> dict[str, Service]: ...
    def register(self, service: Service) -> None: ...
    def deregister(self, service_id: str) -> bool: ...
    def checks(self) -> dict[str, AgentCheck]: ...
    def deregister_check(self, check_id: str) -> bool: ...
    def update_check(self, check_id: str, status: str, output: str) -> bool: ...


class WriteResult(enum.Enum):
    DONE = "done"  # detail: (registered, health status written), or existed (deregister)
    REFUSED = "refused"  # detail: why the agent refused it
    UNAVAILABLE = "unavailable"  # detail: why the agent could not be reached


class Write(NamedTuple):
    """Register ``service`` (and set its health check's status), or (``service`` None)
    deregister ``service_id``. ``known`` is what the agent held as it went out; ``gone`` the
    service being removed, when known (it names the container in logs); ``refresh``: write
    the health status even when in step."""

    service_id: str
    service: Service | None
    known: Service | None
    gone: Service | None = None
    refresh: bool = False


def perform(agent: Agent | None, write: Write) -> tuple[WriteResult, Any]:
    """The request (on a pool thread; ``agent`` None is a dry run: nothing is sent)."""
    service = write.service
    if agent is None:
        if service is None:
            return WriteResult.DONE, True
        return WriteResult.DONE, (True, service.health is not None)
    try:
        if service is not None:
            return WriteResult.DONE, send_register(agent, service, write)
        return WriteResult.DONE, agent.deregister(write.service_id)
    except ConsulUnavailable as exc:
        return WriteResult.UNAVAILABLE, str(exc)
    except ConsulRejected as exc:
        return WriteResult.REFUSED, str(exc)


def read(
    agent: Agent | None,
    owner: str,
    snapshot: dict[str, Service] | None,
    done: Callable[[dict[str, Service], ConsulError | None], None],
    wanted: Mapping[str, Service] | None = None,
) -> None:
    """On a pool thread: what the agent holds (``snapshot`` in a dry run), then ``done``."""
    error: ConsulError | None = None
    actual = snapshot or {}
    if agent is not None:
        try:
            actual = read_actual(agent, owner, wanted)
        except ConsulError as exc:
            error = exc
    done(actual, error)


def send_register(agent: Agent, service: Service, write: Write) -> tuple[bool, bool]:
    """Register the service unless the agent holds it already, then write its health
    status and output when either differs, is due, or the check is new. (registered, status
    written)"""
    known = write.known
    registered = known is None or not same_registration(known, service)
    if registered:
        agent.register(service)
        if known is not None:  # checks it no longer defines stay unless removed
            wanted = set(service.check_ids())
            for check_id, held in agent.checks().items():
                if (
                    held.service_id == service.id
                    and check_id not in wanted
                    and service.owns_check(check_id)
                ):
                    agent.deregister_check(check_id)
    health = service.health
    if health is None:
        return registered, False
    if registered or write.refresh or known is None or known.health_state != service.health_state:
        if not agent.update_check(health.check_id, health.status, health.output):
            agent.register(service)  # the agent lost the check: it comes back with it
            registered = True
            agent.update_check(health.check_id, health.status, health.output)
        return registered, True
    return registered, False


def read_actual(
    agent: Agent, owner: str, wanted: Mapping[str, Service] | None = None
) -> dict[str, Service]:
    """The owned services on the agent, each with the checks it holds of those registrator
    gives it (their IDs and statuses): a second read, so that a check left over or lost is
    seen as a difference like any other. Those held as ``wanted`` are given as the wanted
    ones (``consul_agent.shared``). Raises ConsulError."""
    actual = agent.owned_services(owner, wanted)
    held: dict[str, list[Check]] = {}
    for check_id, (sid, status, output) in agent.checks().items():
        svc = actual.get(sid)
        if svc is not None and svc.owns_check(check_id):
            held.setdefault(sid, []).append(Check(check_id=check_id, status=status, output=output))
    for sid, checks in held.items():
        actual[sid] = actual[sid]._replace(checks=tuple(checks))
    return actual


# --- the log lines: one per action, naming the container and the service ------------------


def who(service: Service) -> str:
    return display_name(service.container_name, service.container_id)


def describe(service: Service) -> str:
    tags = ",".join(service.tags)
    extra = service.summary()
    return (
        f"{who(service)}: service {service.id} "
        f"(name {service.name}, {join_host_port(service.address or '-', service.port)}, tags [{tags}])"
        + (f" {extra}" if extra else "")
    )


def _extra(write: Write) -> tuple[str, dict[str, Any]]:
    """How the write's container is named, and the structured fields of its log line."""
    service = write.service
    if service is not None:
        return who(service), fields(
            "register", service.container_name, service.container_id, write.service_id
        )
    gone = write.gone
    named = who(gone) if gone is not None and gone.container_id else ""
    return named, fields(
        "deregister", gone.container_name if gone else "", gone.container_id if gone else "",
        write.service_id,
    )  # fmt: skip


def log_refused(write: Write, why: str) -> None:
    named, extra = _extra(write)
    extra["error"] = why
    sid = write.service_id
    if write.service is not None:
        log.error("%s: service %s not registered: %s", named, sid, why, extra=extra)
    else:
        prefix = f"{named}: " if named else ""
        log.error("%sservice %s not deregistered: %s", prefix, sid, why, extra=extra)


def log_registered(write: Write, registered: bool, wrote_health: bool, dry: bool) -> None:
    service = write.service
    assert service is not None
    named, extra = _extra(write)
    would = "dry-run: would " if dry else ""
    if registered:
        verb = "register" if dry else "registered"
        log.info("%s%s %s", would, verb, describe(service), extra=extra)
    if wrote_health and service.health is not None:
        log.info(
            "%s: %scheck %s %s", named, would, service.health.check_id,
            service.health_status, extra=extra,
        )  # fmt: skip


def log_deregistered(write: Write, existed: bool, dry: bool) -> None:
    named, extra = _extra(write)
    prefix = f"{named}: " if named else ""
    sid = write.service_id
    if dry:
        log.info("dry-run: would deregister %sservice %s", prefix, sid, extra=extra)
    else:
        note = "" if existed else " (already gone)"
        log.info("deregistered %sservice %s%s", prefix, sid, note, extra=extra)
