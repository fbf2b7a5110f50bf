"""Where awsvpc containers answer, from the ECS agent: its answers cached per task, and which
containers wait for one.

One record per awsvpc container (its task, its ECS name, whether it waits); the daemon and
the reconciler are given this at construction. A container the agent cannot place yet is not
registered (nothing is guessed); the daemon requeues it with backoff through its work queue,
and meanwhile its services already in the agent are not removed as stale (``held``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, NamedTuple

from registrator.adapters.ecs_agent import EcsAgent, EcsAgentError
from registrator.adapters.metrics import Metrics
from registrator.core.container import ContainerView
from registrator.core.ecs_rules import ECS_CONTAINER_NAME_LABEL, AwsvpcNetwork
from registrator.core.model import Service


class _Awsvpc(NamedTuple):
    """One awsvpc container as placement knows it."""

    task_arn: str
    ecs_name: str
    waiting: bool  # the agent could not place it at its last try


class Placed(NamedTuple):
    """The agent's answer for one container: its network, or why not (then it waits)."""

    network: AwsvpcNetwork | None
    error: EcsAgentError | None
    was_waiting: bool  # it was waiting before this answer


class EcsPlacement:
    def __init__(self, uri: str, metrics: Metrics) -> None:
        self.metrics = metrics
        self.agent = EcsAgent(uri, observer=self._observed)
        self._lock = threading.Lock()
        self._containers: dict[str, _Awsvpc] = {}

    def network(self, container_id: str, container: Mapping[str, Any], task_arn: str) -> Placed:
        """What the agent says of an awsvpc container (one request per task)."""
        name = ContainerView(container).labels.get(ECS_CONTAINER_NAME_LABEL, "")
        with self._lock:
            before = self._containers.get(container_id)
            was_waiting = before is not None and before.waiting
            self._containers[container_id] = _Awsvpc(task_arn, name, was_waiting)
        try:
            network = self.agent.network(task_arn, container_id)
        except EcsAgentError as exc:
            with self._lock:
                self._containers[container_id] = _Awsvpc(task_arn, name, True)
            return Placed(None, exc, was_waiting)
        with self._lock:
            self._containers[container_id] = _Awsvpc(task_arn, name, False)
        return Placed(network, None, was_waiting)

    def forget(self, container_id: str) -> None:
        """The container is gone; so is its task from the cache once its last container is."""
        with self._lock:
            placed = self._containers.pop(container_id, None)
            if placed is None or any(
                other.task_arn == placed.task_arn for other in self._containers.values()
            ):
                return
        self.agent.forget(placed.task_arn)

    def held(self, service: Service) -> bool:
        """A service of an awsvpc container waiting for the agent (e.g. registered before a
        restart of registrator) is not removed as stale: it is not known to be wrong."""
        meta = service.meta_dict
        key = (meta.get("ecs_task_arn", ""), meta.get("ecs_container_name", ""))
        with self._lock:
            return any(
                placed.waiting and (placed.task_arn, placed.ecs_name) == key
                for placed in self._containers.values()
            )

    def _observed(self, error: EcsAgentError | None) -> None:
        """After every request to the ECS agent: failures and reachability, as for Consul."""
        if error is not None:
            self.metrics.failures.labels(error.reason).inc()
        self.metrics.reachable("ecs", error is None or error.answered)
