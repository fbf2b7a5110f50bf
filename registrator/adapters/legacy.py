"""Taking over from gliderlabs/registrator (``-adopt``).

The Go original registers services without an owner mark, so registrator would never remove
them: a container that died while the two were swapped would keep its service for good. With
``-adopt`` the services the Go original registered for *this* host, recognised by its default
service ID (``<hostname>:<container name>:<exposed port>[:udp]``, the form its ``-cleanup``
matches), count as registrator's own: re-registered with the mark while a container wants
them, removed like any owned service when none does. Anything else unmarked (other hosts,
hand-registered services, custom ``SERVICE_ID``s) and anything marked by another host is
never touched.

``is_legacy_service`` is the pure rule; ``AdoptingAgent`` applies it at the agent adapter's
edge, so the reconciler compares and writes exactly as for any owned service.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from registrator.adapters.consul_agent import ConsulAgent
from registrator.adapters.logs import fields
from registrator.core.container import display_name
from registrator.core.model import OWNER_META_KEY, AgentCheck, Service

log = logging.getLogger(__name__)

# The Go original's bridge/bridge.go serviceIDPattern, which its -cleanup matches service IDs
# against (group 1: the hostname, lazily, group 2: the container name). Go's `$` is the end of
# the text, so it is matched here with fullmatch rather than Python's `$`.
GO_SERVICE_ID = re.compile(r"(.+?):([a-zA-Z0-9][a-zA-Z0-9_.-]+):[0-9]+(?::udp)?")
LEGACY_ORIGIN = "gliderlabs/registrator"


def is_legacy_service(service: Service, hostname: str) -> bool:
    """True for a service the Go original registered on this host: no owner mark at all (a
    mark of any host, even an empty one, means it is not the Go original's) and an ID of its
    default form whose hostname part is exactly ``hostname``."""
    if OWNER_META_KEY in service.meta_dict or not hostname:
        return False
    match = GO_SERVICE_ID.fullmatch(service.id)
    return match is not None and match.group(1) == hostname


class AdoptingAgent:
    """The agent as the reconciler sees it with ``-adopt``: the Go original's services of this
    host are listed among the owned ones. Registering one marks it (its old checks replaced,
    so none the Go original attached is left behind); deregistering one removes it. Each is
    logged once, with the service ID and why, and remembered for the ``resync`` summary."""

    def __init__(self, agent: ConsulAgent) -> None:
        self._agent = agent
        # Writes come from several pool threads, but never two for one service ID at once
        # (the sync loop sees to that), and a set's add/discard and a list's append are
        # atomic: no lock is needed for what is kept per ID here.
        self._legacy: set[str] = set()
        self.adopted: list[str] = []
        self.removed: list[str] = []

    def owned_services(
        self, owner: str, wanted: Mapping[str, Service] | None = None
    ) -> dict[str, Service]:
        owned: dict[str, Service] = {}
        legacy: set[str] = set()
        for sid, service in self._agent.services(wanted).items():
            if service.meta_dict.get(OWNER_META_KEY) == owner:
                owned[sid] = service
            elif is_legacy_service(service, owner):
                owned[sid] = service
                legacy.add(sid)
        self._legacy = legacy
        return owned

    def checks(self) -> dict[str, AgentCheck]:
        return self._agent.checks()

    def deregister_check(self, check_id: str) -> bool:
        return self._agent.deregister_check(check_id)

    def update_check(self, check_id: str, status: str, output: str) -> bool:
        return self._agent.update_check(check_id, status, output)

    def register(self, service: Service) -> None:
        legacy = service.id in self._legacy
        self._agent.register(service, replace_checks=legacy)
        if not legacy:
            return
        self._legacy.discard(service.id)
        self.adopted.append(service.id)
        log.info(
            "adopted legacy service %s of container %s: registered by %s, now marked",
            service.id,
            display_name(service.container_name, service.container_id),
            LEGACY_ORIGIN,
            extra=fields("adopt", service.container_name, service.container_id, service.id),
        )

    def deregister(self, service_id: str) -> bool:
        existed = self._agent.deregister(service_id)
        legacy = service_id in self._legacy
        self._legacy.discard(service_id)
        if legacy:
            self.removed.append(service_id)
        if legacy:
            log.info(
                "removed legacy service %s: no running container wants it (registered by %s)",
                service_id,
                LEGACY_ORIGIN,
                extra=fields("remove_legacy", "", "", service_id),
            )
        return existed


def adopting(agent: ConsulAgent | None, adopt: bool) -> ConsulAgent | AdoptingAgent | None:
    """The agent the reconciler should use: wrapped when ``-adopt`` is on (a dry run has none)."""
    return AdoptingAgent(agent) if adopt and agent is not None else agent
