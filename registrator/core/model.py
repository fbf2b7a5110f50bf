"""What registrator sends to the Consul agent: plain, immutable values.

Services compare by the fields the agent gives back from ``/v1/agent/services`` so that a
service read from the agent equals the one derived from Docker when nothing changed: that
equality is what lets a resync make zero writes.

registrator's records are NamedTuples, not dataclasses: a frozen dataclass generates and
compiles six methods as its module loads, and loading ``dataclasses`` loads ``inspect``,
which nothing else needs (benchmarks/README.md#why-the-code-is-as-it-is: what it cost).
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import attrgetter
from typing import Any, NamedTuple

# Meta key that marks a service as registered by registrator on a given host. Only services
# carrying it (with this host's name) are ever deregistered by registrator.
OWNER_META_KEY = "registrator"


class Check(NamedTuple):
    """One Consul service check; field names follow Consul's ``AgentServiceCheck``."""

    http: str = ""
    method: str = ""
    header: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (name, values), sorted by name
    body: str = ""
    tcp: str = ""
    grpc: str = ""
    grpc_use_tls: bool = False
    tls_server_name: str = ""
    tls_skip_verify: bool = False
    ttl: str = ""
    args: tuple[str, ...] = ()
    interval: str = ""
    timeout: str = ""
    status: str = ""
    deregister_critical_service_after: str = ""
    check_id: str = ""  # "": the agent's own (service:<service id>)
    name: str = ""
    notes: str = ""
    output: str = ""  # a TTL check's output (written with its status, not registered)
    success_before_passing: int = 0
    failures_before_critical: int = 0

    @property
    def kind(self) -> str:
        """What the check probes: http, https, tcp, grpc, script or ttl (Docker health: health)."""
        if self.check_id.endswith(":docker-health"):
            return "health"
        if self.http:
            return self.http.split(":", 1)[0]
        return "tcp" if self.tcp else "grpc" if self.grpc else "script" if self.args else "ttl"

    def to_consul(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        pairs: list[tuple[str, Any]] = [
            ("CheckID", self.check_id),
            ("Name", self.name),
            ("Notes", self.notes),
            ("HTTP", self.http),
            ("Method", self.method),
            ("Header", {name: list(values) for name, values in self.header}),
            ("Body", self.body),
            ("TCP", self.tcp),
            ("GRPC", self.grpc),
            ("GRPCUseTLS", self.grpc_use_tls),
            ("TLSServerName", self.tls_server_name),
            ("TLSSkipVerify", self.tls_skip_verify),
            ("TTL", self.ttl),
            ("Args", list(self.args)),
            ("Interval", self.interval),
            ("Timeout", self.timeout),
            ("Status", self.status),
            ("SuccessBeforePassing", self.success_before_passing),
            ("FailuresBeforeCritical", self.failures_before_critical),
            ("DeregisterCriticalServiceAfter", self.deregister_critical_service_after),
        ]
        for key, value in pairs:
            if value:
                body[key] = value
        return body


DEFAULT_WEIGHTS = (1, 1)  # Consul's: Passing 1, Warning 1


def weights(passing: int, warning: int) -> tuple[int, int]:
    """A service's weights; Consul's defaults as the one shared tuple, not one per service."""
    return DEFAULT_WEIGHTS if passing == warning == 1 else (passing, warning)


class AgentCheck(NamedTuple):
    """One check as ``/v1/agent/checks`` lists it: what registrator compares."""

    service_id: str
    status: str
    output: str


# The TTL of a Docker health check. It must outlast any outage of registrator (a restart, an
# upgrade, a host's bad day): when it runs out the check turns critical and consul-template
# drops a healthy container. registrator writes the status again every 12 hours.
HEALTH_TTL = "24h"


def health_check_id(service_id: str) -> str:
    """The ID of the TTL check that carries a container's Docker health (``-health-sync``)."""
    return f"service:{service_id}:docker-health"


class Service(NamedTuple):
    """One agent service registration.

    Equality compares what ``/v1/agent/services`` gives back (``COMPARED_FIELDS``): not the
    checks, whose every setting is also kept in ``meta`` (as the original registrator does),
    so equal meta, address and port mean equal settings; which checks the agent holds is
    compared by ID (``plan.same_registration``). With ``enable_tag_override`` the
    catalog may change the tags, which the agent then adopts: tags are not compared, and
    are written only when the service is registered for another reason.
    """

    id: str
    name: str
    address: str = ""
    port: int = 0
    tags: tuple[str, ...] = ()
    meta: tuple[tuple[str, str], ...] = ()
    weights: tuple[int, int] = DEFAULT_WEIGHTS  # (passing, warning)
    enable_tag_override: bool = False
    checks: tuple[Check, ...] = ()
    container_id: str = ""
    container_name: str = ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Service) and _compared(self) == _compared(other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(_compared(self))

    @property
    def check(self) -> Check | None:
        """The first check (the unindexed ``SERVICE_CHECK_*`` one when there is one)."""
        return self.checks[0] if self.checks else None

    @property
    def health(self) -> Check | None:
        """The TTL check that carries the container's Docker health, if it has one."""
        wanted = health_check_id(self.id)
        return next((check for check in self.checks if check.check_id == wanted), None)

    def summary(self) -> str:
        """Checks, weights and tag override in a few words ("" when it has none of them)."""
        parts = []
        if self.checks:
            kinds = [
                f"{check.kind} {check.status}" if check is self.health else check.kind
                for check in self.checks
            ]
            parts.append(f"checks [{', '.join(kinds)}]")
        if self.weights != DEFAULT_WEIGHTS:
            parts.append(f"weights {self.weights[0]}/{self.weights[1]}")
        if self.enable_tag_override:
            parts.append("tag override")
        return ", ".join(parts)

    def check_ids(self) -> tuple[str, ...]:
        """The IDs the agent gives this service's checks."""
        if len(self.checks) == 1 and not self.checks[0].check_id:
            return (f"service:{self.id}",)
        return tuple(check.check_id for check in self.checks)

    def owns_check(self, check_id: str) -> bool:
        """Whether a check of this service's ID has an ID registrator gives its checks."""
        return check_id == f"service:{self.id}" or check_id.startswith(f"service:{self.id}:")

    @property
    def health_status(self) -> str:
        health = self.health
        return health.status if health is not None else ""

    @property
    def health_state(self) -> tuple[str, str]:
        """The Docker health check's status and output (what the agent shows of it)."""
        health = self.health
        return (health.status, health.output) if health is not None else ("", "")

    @property
    def meta_dict(self) -> dict[str, str]:
        return dict(self.meta)

    @property
    def owner(self) -> str:
        return self.meta_dict.get(OWNER_META_KEY, "")

    @property
    def plain(self) -> bool:
        """Registrable through python-consul2's ``register`` (at most one check, Consul's
        weights, no tag override): the fields it knows."""
        return (
            len(self.checks) <= 1
            and self.weights == DEFAULT_WEIGHTS
            and not self.enable_tag_override
        )

    def to_registration(self) -> dict[str, Any]:
        """Keyword arguments for python-consul2's ``agent.service.register`` (``plain`` ones)."""
        return {
            "name": self.name,
            "service_id": self.id,
            "address": self.address or None,
            "port": self.port or None,
            "tags": list(self.tags),
            "meta": dict(self.meta),
            "check": self.checks[0].to_consul() if self.checks else None,
        }

    def to_agent_body(self) -> dict[str, Any]:
        """The body of ``PUT /v1/agent/service/register`` (Consul's ``AgentServiceRegistration``)."""
        body: dict[str, Any] = {"ID": self.id, "Name": self.name, "Tags": list(self.tags)}
        if self.address:
            body["Address"] = self.address
        if self.port:
            body["Port"] = self.port
        body["Meta"] = dict(self.meta)
        if self.weights != DEFAULT_WEIGHTS:
            body["Weights"] = {"Passing": self.weights[0], "Warning": self.weights[1]}
        if self.enable_tag_override:
            body["EnableTagOverride"] = True
        if len(self.checks) == 1:
            body["Check"] = self.checks[0].to_consul()
        elif self.checks:
            body["Checks"] = [check.to_consul() for check in self.checks]
        return body

    @classmethod
    def from_agent(cls, body: Mapping[str, Any]) -> Service:
        """Build from one value of ``GET /v1/agent/services``."""
        meta = body.get("Meta") or {}
        given = body.get("Weights") or {}
        return cls(
            id=str(body.get("ID", "")),
            name=str(body.get("Service", "")),
            address=str(body.get("Address") or ""),
            port=int(body.get("Port") or 0),
            tags=tuple(str(t) for t in body.get("Tags") or ()),
            meta=tuple(sorted((str(k), str(v)) for k, v in meta.items())),
            weights=weights(int(given.get("Passing", 1)), int(given.get("Warning", 1))),
            enable_tag_override=bool(body.get("EnableTagOverride")),
        )


# What the agent gives back of a service, and all that equality compares (the tags only
# without tag override).
COMPARED_FIELDS = (
    "id",
    "name",
    "address",
    "port",
    "tags",
    "meta",
    "weights",
    "enable_tag_override",
)
_compared_all = attrgetter(*COMPARED_FIELDS)


def _compared(service: Service) -> tuple[Any, ...]:
    values: tuple[Any, ...] = _compared_all(service)
    if service.enable_tag_override:
        return values[:4] + values[5:]
    return values


def freeze_meta(meta: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(meta.items()))
