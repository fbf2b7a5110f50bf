"""What differs between the services Docker wants and those the agent holds: pure rules.

A service is in step when the agent gives back what registrator would register (``Service``
equality: what ``/v1/agent/services`` returns), holds exactly the checks registrator gives it
(by ID, from ``/v1/agent/checks``; their settings are in the service's Meta) and, for a service
whose Docker health is kept as a TTL check, when that check's status and output are the
container's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from registrator.core.model import COMPARED_FIELDS, Service


def same_registration(actual: Service, desired: Service) -> bool:
    """Registering ``desired`` would change nothing the agent gives back: the service's
    fields, and which of registrator's checks it has (another's check on it is not counted)."""
    return actual == desired and set(actual.check_ids()) == set(desired.check_ids())


def in_step(actual: Service | None, desired: Service) -> bool:
    return (
        actual is not None
        and same_registration(actual, desired)
        and (desired.health is None or actual.health_state == desired.health_state)
    )


def differences(actual: Service, desired: Service) -> tuple[str, ...]:
    """The fields that keep ``actual`` out of step with ``desired``, named by ``in_step``'s
    own rules (tags do not count when both have tag override; the checks are compared by ID,
    their settings being in the Meta): () exactly when ``in_step`` holds."""
    both_override = actual.enable_tag_override and desired.enable_tag_override
    fields = [
        name
        for name in COMPARED_FIELDS
        if getattr(actual, name) != getattr(desired, name)
        and not (name == "tags" and both_override)
    ]
    if set(actual.check_ids()) != set(desired.check_ids()):
        fields.append("checks")
    if desired.health is not None and actual.health_state != desired.health_state:
        fields.append("health")
    return tuple(fields)


def needs_register(
    desired: Service, actual: Service | None, refused: Service | None = None, refresh: bool = False
) -> bool:
    """The one rule that says whether a desired service needs a write: it is not in step with
    what the agent holds, or its health status is due to be written again (``refresh``);
    never when the agent refused this very service already (it is not retried unchanged)."""
    return refused != desired and (refresh or not in_step(actual, desired))


class Plan(NamedTuple):
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
    refresh: Iterable[str] = (),
    refused: Mapping[str, Service] | None = None,
) -> Plan:
    """Register what is missing or different (and what is in ``refresh``: health checks whose
    status is due to be written again); deregister what is no longer desired, limited to
    ``removable`` when given (services registrator owns but may not remove stay). A service
    the agent ``refused`` as it is now desired is neither written nor counted unchanged."""
    again = set(refresh)
    refused = refused or {}
    register: list[Service] = []
    unchanged: list[str] = []
    for sid, svc in sorted(desired.items()):
        if needs_register(svc, actual.get(sid), refused.get(sid), sid in again):
            register.append(svc)
        elif sid not in refused or refused[sid] != svc:
            unchanged.append(sid)
    stale = set(actual) - set(desired)
    if removable is not None:
        stale &= set(removable)
    return Plan(tuple(register), tuple(sorted(stale)), tuple(unchanged))


class Outcome:
    """What one application of a plan did, for logs and the ``resync`` command."""

    def __init__(self, unavailable: str = "") -> None:
        self.registered: list[Service] = []  # added or updated, in the order written
        self.held: set[str] = set()  # IDs of those the agent held before the write: updates
        self.deregistered: list[str] = []
        self.unchanged: list[str] = []
        self.rejected: list[tuple[str, str]] = []
        self.health: list[Service] = []  # health checks whose status was written
        self.unavailable = unavailable

    @property
    def complete(self) -> bool:
        return not self.unavailable and not self.rejected

    def note_registered(self, service: Service, held: bool) -> None:
        """A registration was written; ``held``: the agent held the service's ID before (an
        update, not an addition)."""
        self.registered.append(service)
        if held:
            self.held.add(service.id)

    @property
    def added(self) -> list[Service]:
        """Registered where the agent held no service of that ID (missing, or new)."""
        return [service for service in self.registered if service.id not in self.held]

    @property
    def updated(self) -> list[Service]:
        """Registered again because the service the agent held differed."""
        return [service for service in self.registered if service.id in self.held]
