"""One write to the agent as the reconciler tracks it, and how log lines name a service."""

from __future__ import annotations

from typing import Protocol

from registrator.core.container import display_name
from registrator.core.model import AgentCheck, Service
from registrator.core.networks import join_host_port
from registrator.core.plan import Outcome, same_registration


class Agent(Protocol):
    def owned_services(self, owner: str) -> dict[str, Service]: ...
    def register(self, service: Service) -> None: ...
    def deregister(self, service_id: str) -> bool: ...
    def checks(self) -> dict[str, AgentCheck]: ...
    def deregister_check(self, check_id: str) -> bool: ...
    def update_check(self, check_id: str, status: str, output: str) -> bool: ...


class Ticket:
    """The writes of one plan: their outcome, and how many are not finished yet."""

    def __init__(self, forced: bool) -> None:
        self.outcome = Outcome()
        self.open = 0
        self.aborted = False  # the agent was unavailable: start none of the remaining writes
        self.forced = forced  # a full comparison writes even while Consul is marked down


class Write:
    """One write: register ``service`` (and set its health check's status), or (``service``
    None) deregister ``service_id``; ``gone`` is the service being removed, when known (it
    names the container in logs); ``refresh``: write the health status even when in step."""

    __slots__ = ("gone", "known", "refresh", "service", "service_id", "ticket")

    def __init__(
        self,
        service_id: str,
        service: Service | None,
        gone: Service | None,
        ticket: Ticket,
        refresh: bool = False,
    ) -> None:
        self.service_id = service_id
        self.service = service
        self.gone = gone
        self.ticket = ticket
        self.refresh = refresh
        self.known: Service | None = None  # what the agent held as the write went out


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
