"""Processing one container: inspect it (and its network peer), ask the ECS agent where an
awsvpc container answers, derive its services, and say what it wants now. The daemon and
the one-shot commands both use it; it writes nothing and keeps no state of its own."""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING, NamedTuple

from registrator.adapters.docker_source import ContainerEvent, DockerSource
from registrator.adapters.http_fetch import http_get
from registrator.core.container import ContainerView
from registrator.core.derive import DeriveOptions, derive_services
from registrator.core.ecs_rules import awsvpc_task_arn
from registrator.core.explanation import Explained, explain
from registrator.core.lifecycle import keeps_services, retained_after_exit, withheld_reason
from registrator.core.model import Service
from registrator.core.reasons import Reason, Why

if TYPE_CHECKING:
    from registrator.core.tag_template import Fetch
    from registrator.sync.ecs_placement import EcsPlacement  # imported only with -ecs

log = logging.getLogger(__name__)


class Kind(enum.Enum):
    """What a container wants now (``Verdict.kind``)."""

    WANTS = "wants"  # these services (none: it has nothing to register)
    GONE = "gone"  # removed, or exited for good: none of its services
    KEPT = "kept"  # exited with a failure under -deregister on-success: its services stay
    WITHHELD = "withheld"  # running, but not in Consul now (draining, not healthy)
    WAITING = "waiting"  # an awsvpc container the ECS agent cannot place yet: nothing changes


WANTS, GONE, KEPT, WITHHELD, WAITING = Kind

DRAINING = "draining after a stop signal"
NOT_FOUND = "no such container"


class RunFacts(NamedTuple):
    """What the inspect says of a running container's current run (Unix seconds)."""

    started: float = 0.0
    restarts: int = 0  # by its restart policy, since it was last started by hand
    previous_end: float = 0.0  # when its previous run ended (0: none)


class Verdict(NamedTuple):
    kind: Kind
    label: str = ""  # "name (short id)", for log lines ("" when it could not be inspected)
    services: tuple[Service, ...] = ()
    reason: str = ""  # why withheld or waiting; a kept container's exit code
    problems: tuple[str, ...] = ()  # refused metadata, one line each
    # The decision, as explain and the daemon's /containers show it: the container's reason
    # code (not running, withheld, waiting) or what each port gives; None when not inspected.
    explained: Explained | None = None
    was_waiting: bool = False  # it waited for the ECS agent before this
    run: RunFacts = RunFacts()  # its current run, for the flapping hold


def exited_for_good(event: ContainerEvent, deregister: str) -> bool:
    """A ``destroy``, or a ``die`` whose services go: no inspect needed (a dying container
    answers inspect slowly, and a later start would be its newest event instead)."""
    if event.base_action == "destroy":
        return True
    if event.base_action != "die":
        return False
    code = event.attributes.get("exitCode", "")
    return not keeps_services(int(code) if code.isdigit() else 1, deregister)


class ContainerProcessor:
    def __init__(
        self,
        options: DeriveOptions,
        deregister: str,
        placement: EcsPlacement | None = None,
        fetch: Fetch = http_get,
    ) -> None:
        self.options = options
        self.deregister = deregister
        self.placement = placement
        self.fetch = fetch  # a -tags template's httpGet

    def assess(
        self,
        docker: DockerSource,
        container_id: str,
        last_event: ContainerEvent | None = None,
        draining: bool = False,
    ) -> Verdict:
        """What the container wants now, given its newest unprocessed event and whether a
        stop signal's grace period runs. Raises DockerUnavailable."""
        if last_event is not None and exited_for_good(last_event, self.deregister):
            return Verdict(GONE)
        container = docker.inspect(container_id)
        if container is None:
            return Verdict(GONE, reason=NOT_FOUND)
        view = ContainerView(container)  # the one view of this inspect: every rule reads it
        if not view.running:
            exited = f", exit code {view.exit_code}" if view.status == "exited" else ""
            stopped = Why(Reason.NOT_RUNNING, view.status + exited)
            said = explain(view, stopped, None)
            if retained_after_exit(view, self.deregister):
                return Verdict(KEPT, view.display, reason=str(view.exit_code), explained=said)
            return Verdict(GONE, view.display, explained=said)
        drain = Why(Reason.DRAINING, DRAINING) if draining else None
        withheld = drain or withheld_reason(view, self.options)
        if withheld is not None:
            return Verdict(
                WITHHELD, view.display, reason=withheld.detail,
                explained=explain(view, withheld, None),
            )  # fmt: skip
        return self._running(docker, view)

    def _running(self, docker: DockerSource, view: ContainerView) -> Verdict:
        """A running container that may be in Consul: its services, at the address the ECS
        agent gives when it is in an awsvpc task."""
        peer = self._network_peer(docker, view)
        awsvpc = None
        was_waiting = False
        task_arn = awsvpc_task_arn(view, peer) if self.placement is not None else ""
        if task_arn:
            assert self.placement is not None
            placed = self.placement.network(view, task_arn)
            if placed.error is not None:
                return Verdict(
                    WAITING, view.display, reason=str(placed.error),
                    was_waiting=placed.was_waiting,
                    explained=explain(
                        view, Why(Reason.ECS_WAITING, f"the ECS agent: {placed.error}"), None
                    ),
                )  # fmt: skip
            awsvpc, was_waiting = placed.network, placed.was_waiting
        derivation = derive_services(view, self.options, peer, awsvpc, self.fetch)
        return Verdict(
            WANTS,
            view.display,
            tuple(derivation.services),
            problems=tuple(map(str, derivation.problems)),
            explained=explain(view, None, derivation),
            was_waiting=was_waiting,
            run=RunFacts(view.started_at, view.restart_count, view.finished_at),
        )

    def _network_peer(self, docker: DockerSource, view: ContainerView) -> ContainerView | None:
        """The container whose network this one shares (``--net container:X``), if any."""
        if not view.network_peer_id:
            return None
        peer = docker.inspect(view.network_peer_id)
        if peer is None:
            log.warning("%s: network container %s not found", view.display, view.network_mode)
            return None
        return ContainerView(peer)
