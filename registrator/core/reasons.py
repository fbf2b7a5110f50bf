"""Why a container, or one of its ports, gives no service: one code per cause, each with the
sentence that says what to do (pure).

The code that decides returns these (``derive`` per port, ``lifecycle`` for a withheld
container, ``sync.processing`` for one that is not running or waits for the ECS agent);
``registrator explain``, ``plan``'s closing line and the daemon's ``/containers`` only show
them, so a reason shown is the reason acted on. The codes are part of the documented JSON
(docs/operations.md#explain): add new ones, never rename one.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

from registrator.core.model import Service


class Reason(Enum):
    """Why nothing is registered (for a port, or for the whole container)."""

    NOT_RUNNING = "not_running"
    IGNORED = "ignored"
    NOT_EXPLICIT = "not_explicit"
    NO_PORTS = "no_ports"
    NOT_PUBLISHED = "not_published"
    UNHEALTHY = "unhealthy"
    NO_ADDRESS = "no_address"
    # Beyond the list: causes the code already had, each with its own remedy.
    NO_BINDING = "no_binding"  # published only on another address family than the service's
    BAD_NAME = "bad_name"  # SERVICE_NAME refused, or no name can be made from the image
    DUPLICATE_ID = "duplicate_id"  # SERVICE_ID shared by several ports
    DRAINING = "draining"  # -drain: a stop signal's grace period runs
    ECS_PAUSE = "ecs_pause"  # the pause container of an ECS task (-ecs)
    ECS_WAITING = "ecs_waiting"  # an awsvpc task the ECS agent has not placed yet
    PAUSED = "paused"  # docker pause: its processes are frozen
    HELD = "held"  # -flap-hold: it keeps dying soon after it starts

    @property
    def hint(self) -> str:
        """What to do about it, in one sentence."""
        return HINTS[self]


HINTS = {
    Reason.NOT_RUNNING: "Start the container; only running containers are registered.",
    Reason.IGNORED: "Remove SERVICE_IGNORE (or SERVICE_<port>_IGNORE) to register it.",
    Reason.NOT_EXPLICIT: "Set SERVICE_NAME (or SERVICE_<port>_NAME), or run registrator "
    "without -explicit.",
    Reason.NO_PORTS: "Expose or publish a port (EXPOSE in the image, or docker run -p); a "
    "container without one registers nothing.",
    Reason.NOT_PUBLISHED: "Publish the port (docker run -p), or run registrator with -internal "
    "to register the container's own address.",
    Reason.UNHEALTHY: "Wait for Docker's HEALTHCHECK to pass, or set "
    "SERVICE_REQUIRE_HEALTHY=false on the container (or run without -require-healthy).",
    Reason.NO_ADDRESS: "Attach the container to the network SERVICE_NETWORK names (or name one "
    "it is attached to), or publish the port and run without -internal.",
    Reason.NO_BINDING: "Publish the port on an address of the service address's family (e.g. "
    "-p 0.0.0.0:HOST:PORT for IPv4), or give -ip an address of the family it is published on.",
    Reason.BAD_NAME: "Set SERVICE_NAME to a DNS label: 1-63 letters, digits and '-', not "
    "starting or ending with '-'.",
    Reason.DUPLICATE_ID: "Give each port its own ID with SERVICE_<port>_ID.",
    Reason.DRAINING: "Nothing to do: it is registered again if it still runs after -drain-grace.",
    Reason.ECS_PAUSE: "Nothing to do: an ECS task's pause container holds no service.",
    Reason.ECS_WAITING: "Check that the ECS agent answers at -ecs-agent-uri; the task is "
    "registered as soon as it does.",
    Reason.PAUSED: "Unpause it (docker unpause); its services are registered again at once.",
    Reason.HELD: "Find why it dies (docker logs); it is registered once a start stays up for "
    "-flap-hold (-flap-hold 0 turns the hold off).",
}


class Why(NamedTuple):
    """A reason code and what it is about here (the port, the network, the health state)."""

    code: Reason
    detail: str = ""

    def __str__(self) -> str:
        return self.detail or self.code.value

    def to_json(self) -> dict[str, str]:
        return {"code": self.code.value, "detail": self.detail, "hint": self.code.hint}


class Problem(NamedTuple):
    """A refused metadata key, said so an operator can fix it: the key ("" when the problem
    is no key's), its value as the container sets it, and why it was refused."""

    container: str
    key: str
    message: str
    value: str = ""

    def __str__(self) -> str:
        where = f"container {self.container}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class PortOutcome(NamedTuple):
    """What one exposed or published port gives: a service, or why none."""

    port: str  # "8080/tcp"
    service: Service | None = None
    why: Why | None = None
