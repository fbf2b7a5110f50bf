"""When a container's services belong in Consul: running, exited, healthy (pure rules)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from registrator.container import ContainerView

if TYPE_CHECKING:
    from registrator.derive import DeriveOptions

TRUE_WORDS = frozenset({"1", "true", "yes", "on", "t", "y"})


def is_running(container: Mapping[str, Any]) -> bool:
    return ContainerView(container).running


def retained_after_exit(container: Mapping[str, Any], deregister: str) -> bool:
    """With ``-deregister on-success`` a container that failed keeps its services (so its
    Consul check shows the failure), as the original does: exit 0 or a signal exit (the 128
    bit set) deregisters; any other exit code keeps them."""
    if deregister != "on-success":
        return False
    view = ContainerView(container)
    if view.running:
        return True
    code = view.exit_code
    return code != 0 and not code & 128


def withheld_reason(container: Mapping[str, Any], options: DeriveOptions) -> str:
    """Why a running container's services must not be in Consul now ("" when they may).

    With ``-require-healthy`` (or ``SERVICE_REQUIRE_HEALTHY=true`` on the container; ``false``
    opts out) a container that has a Docker HEALTHCHECK is registered only while Docker says
    it is healthy. A container without a HEALTHCHECK is not held back.
    """
    view = ContainerView(container)
    metadata, _ = view.service_keys("")
    setting = metadata.get("require_healthy", "").strip().lower()
    required = setting in TRUE_WORDS if setting else options.require_healthy
    status = view.health_status
    if not required or status is None:
        return ""
    return "" if status == "healthy" else f"Docker health is {status or 'unknown'}"
