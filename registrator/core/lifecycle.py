"""When a container's services belong in Consul: running, exited, healthy (pure rules)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from registrator.core.checks import TRUE_WORDS, health_sync_applies
from registrator.core.container import ContainerView, view_of
from registrator.core.reasons import Reason, Why

if TYPE_CHECKING:
    from registrator.core.derive import DeriveOptions

PAUSED = Why(Reason.PAUSED, "paused (docker pause): its processes answer nothing")


def retained_after_exit(container: ContainerView | Mapping[str, Any], deregister: str) -> bool:
    """With ``-deregister on-success`` a container that failed keeps its services (so its
    Consul check shows the failure), as the original does: exit 0 or a signal exit (the 128
    bit set) deregisters; any other exit code keeps them."""
    view = view_of(container)
    if view.running:
        return deregister == "on-success"
    return keeps_services(view.exit_code, deregister)


def keeps_services(exit_code: int, deregister: str) -> bool:
    """Whether a container that exited with ``exit_code`` keeps its services."""
    return deregister == "on-success" and exit_code != 0 and not exit_code & 128


def withheld_reason(
    container: ContainerView | Mapping[str, Any], options: DeriveOptions
) -> Why | None:
    """Why a running container's services must not be in Consul now (None when they may).

    With ``-require-healthy`` (or ``SERVICE_REQUIRE_HEALTHY=true`` on the container; ``false``
    opts out) a container that has a Docker HEALTHCHECK is registered only while Docker says
    it is healthy. A container without a HEALTHCHECK is not held back.
    """
    view = view_of(container)
    if view.paused:
        return PAUSED
    metadata, _ = view.service_keys("")
    setting = metadata.get("require_healthy", "").strip().lower()
    required = setting in TRUE_WORDS if setting else options.require_healthy
    status = view.health_status
    if not required or status is None:
        return None
    # With health sync as well, the service stays registered and its check carries the
    # health (consul-template leaves it out of the upstream all the same): the container's
    # own key beats a flag, and between two of a kind health sync wins.
    sync_setting = metadata.get("check_docker_health", "").strip()
    if health_sync_applies(metadata, options.health_sync, lambda *_: None) and (
        sync_setting or not setting
    ):
        return None
    if status == "healthy":
        return None
    return Why(Reason.UNHEALTHY, f"Docker health is {status or 'unknown'}")
