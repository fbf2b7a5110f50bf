"""Which containers the ECS agent runs, read from the Docker labels it puts on them.

Pure: the caller asks the ECS agent (registrator.adapters.ecs_agent) for what labels cannot say.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from registrator.core.container import ContainerView, view_of

# Docker labels the ECS agent puts on every container of a task.
ECS_TASK_ARN_LABEL = "com.amazonaws.ecs.task-arn"
ECS_CONTAINER_NAME_LABEL = "com.amazonaws.ecs.container-name"
ECS_PAUSE_CONTAINER_NAME = "~internal~ecs~pause"
# Meta key -> the label it is read from, for every service of an ECS container (with -ecs).
ECS_META_LABELS = (
    ("ecs_cluster", "com.amazonaws.ecs.cluster"),
    ("ecs_task_arn", ECS_TASK_ARN_LABEL),
    ("ecs_task_family", "com.amazonaws.ecs.task-definition-family"),
    ("ecs_task_revision", "com.amazonaws.ecs.task-definition-version"),
    ("ecs_container_name", ECS_CONTAINER_NAME_LABEL),
)


class AwsvpcNetwork(NamedTuple):
    """What the ECS agent says of one container of an awsvpc task: the addresses of the
    task's ENI (Docker knows nothing of it) and the container's port mappings."""

    ipv4_addresses: tuple[str, ...]
    ports: tuple[tuple[int, str], ...] = ()  # (container port, "tcp" or "udp")
    ipv6_addresses: tuple[str, ...] = ()  # only when it has no IPv4 address (IPv6-only)


def is_ecs_pause(container: ContainerView | Mapping[str, Any]) -> bool:
    """The pause container the ECS agent makes for an awsvpc task: never a service."""
    labels = view_of(container).labels
    return labels.get(ECS_CONTAINER_NAME_LABEL) == ECS_PAUSE_CONTAINER_NAME


def awsvpc_task_arn(
    container: ContainerView | Mapping[str, Any],
    network_peer: ContainerView | Mapping[str, Any] | None = None,
) -> str:
    """The task ARN of an ECS app container that Docker gives no address because it is in an
    awsvpc task: network mode ``none``, or ``container:<id>`` of a container in ``none`` (the
    task's pause container, whose ENI the ECS agent attached with CNI). "" otherwise."""
    view = view_of(container)
    arn = view.labels.get(ECS_TASK_ARN_LABEL, "")
    if not arn or is_ecs_pause(view):
        return ""
    if view.network_mode == "none":
        return arn
    if view.shares_network and network_peer is not None:
        return arn if view_of(network_peer).network_mode == "none" else ""
    return ""


def ecs_meta(labels: Mapping[str, str]) -> dict[str, str]:
    """The ``ecs_*`` Meta of an ECS container's services, from its Docker labels."""
    if not labels.get(ECS_TASK_ARN_LABEL):
        return {}
    return {key: labels[label] for key, label in ECS_META_LABELS if labels.get(label)}
