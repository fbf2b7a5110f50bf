"""What registrator sends to the Consul agent: plain, immutable values.

Services compare by the fields the agent gives back from ``/v1/agent/services`` so that a
service read from the agent equals the one derived from Docker when nothing changed: that
equality is what lets a resync make zero writes.

registrator's records are NamedTuples, not dataclasses: a frozen dataclass generates and
compiles six methods as its module loads (4.3 M instructions for one of six fields, against
0.6 M for a NamedTuple), and loading ``dataclasses`` loads ``inspect``, which nothing else
needs. Together that was 14 % of the work of a start-up with no container (measured with
``python -m benchmarks.instructions``).
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
    tcp: str = ""
    grpc: str = ""
    grpc_use_tls: bool = False
    tls_skip_verify: bool = False
    ttl: str = ""
    args: tuple[str, ...] = ()
    interval: str = ""
    timeout: str = ""
    status: str = ""
    deregister_critical_service_after: str = ""

    def to_consul(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        pairs: list[tuple[str, Any]] = [
            ("HTTP", self.http),
            ("Method", self.method),
            ("TCP", self.tcp),
            ("GRPC", self.grpc),
            ("GRPCUseTLS", self.grpc_use_tls),
            ("TLSSkipVerify", self.tls_skip_verify),
            ("TTL", self.ttl),
            ("Args", list(self.args)),
            ("Interval", self.interval),
            ("Timeout", self.timeout),
            ("Status", self.status),
            ("DeregisterCriticalServiceAfter", self.deregister_critical_service_after),
        ]
        for key, value in pairs:
            if value:
                body[key] = value
        return body


class Service(NamedTuple):
    """One agent service registration.

    ``check`` and ``container_*`` are left out of equality: the agent's service listing
    does not return checks, and every check setting is also kept in ``meta`` (as the
    original registrator does), so equal meta, address and port mean an equal check.
    """

    id: str
    name: str
    address: str = ""
    port: int = 0
    tags: tuple[str, ...] = ()
    meta: tuple[tuple[str, str], ...] = ()
    check: Check | None = None
    container_id: str = ""
    container_name: str = ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Service) and _compared(self) == _compared(other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(_compared(self))

    @property
    def meta_dict(self) -> dict[str, str]:
        return dict(self.meta)

    @property
    def owner(self) -> str:
        return self.meta_dict.get(OWNER_META_KEY, "")

    def to_registration(self) -> dict[str, Any]:
        """Keyword arguments for python-consul2's ``agent.service.register``."""
        return {
            "name": self.name,
            "service_id": self.id,
            "address": self.address or None,
            "port": self.port or None,
            "tags": list(self.tags),
            "meta": dict(self.meta),
            "check": self.check.to_consul() if self.check else None,
        }

    @classmethod
    def from_agent(cls, body: Mapping[str, Any]) -> Service:
        """Build from one value of ``GET /v1/agent/services``."""
        meta = body.get("Meta") or {}
        return cls(
            id=str(body.get("ID", "")),
            name=str(body.get("Service", "")),
            address=str(body.get("Address") or ""),
            port=int(body.get("Port") or 0),
            tags=tuple(str(t) for t in body.get("Tags") or ()),
            meta=tuple(sorted((str(k), str(v)) for k, v in meta.items())),
        )


# What the agent gives back of a service, and all that equality compares.
COMPARED_FIELDS = ("id", "name", "address", "port", "tags", "meta")
_compared = attrgetter(*COMPARED_FIELDS)


def freeze_meta(meta: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(meta.items()))
