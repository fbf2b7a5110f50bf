"""Where awsvpc containers answer, from the ECS agent (its answers cached per task there).

What placement knows of each container (its task, its ECS name, whether it waits) is kept in
the container's record. A container the agent cannot place yet is not registered (nothing is
guessed); the daemon requeues it with backoff through its work queue, and meanwhile its
services already in the agent are not removed as stale (``Records.held``).
"""

from __future__ import annotations

from typing import NamedTuple

from registrator.adapters.ecs_agent import EcsAgent, EcsAgentError
from registrator.adapters.metrics import Metrics
from registrator.core.container import ContainerView
from registrator.core.ecs_rules import ECS_CONTAINER_NAME_LABEL, AwsvpcNetwork
from registrator.sync.records import Placement, Records


class Placed(NamedTuple):
    """The agent's answer for one container: its network, or why not (then it waits)."""

    network: AwsvpcNetwork | None
    error: EcsAgentError | None
    was_waiting: bool  # it was waiting before this answer


class EcsPlacement:
    def __init__(self, uri: str, metrics: Metrics, records: Records) -> None:
        self.metrics = metrics
        self.records = records
        self.agent = EcsAgent(uri, observer=self._observed)

    def network(self, view: ContainerView, task_arn: str) -> Placed:
        """What the agent says of an awsvpc container (one request per task)."""
        name = view.labels.get(ECS_CONTAINER_NAME_LABEL, "")
        try:
            network = self.agent.network(task_arn, view.id)
        except EcsAgentError as exc:
            return Placed(None, exc, self.records.placed(view.id, Placement(task_arn, name, True)))
        was_waiting = self.records.placed(view.id, Placement(task_arn, name, False))
        return Placed(network, None, was_waiting)

    def _observed(self, error: EcsAgentError | None) -> None:
        """After every request to the ECS agent: failures and reachability, as for Consul."""
        if error is not None:
            self.metrics.failures.labels(error.reason).inc()
        self.metrics.reachable("ecs", error is None or error.answered)
