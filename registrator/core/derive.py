"""Pure core: an inspected container (plain dict) plus options -> the services it should have.

No I/O here: whatever needs Docker or DNS (the hostname's IP, the inspect of the container
whose network a container shares) is looked up by the caller and passed in. That keeps the
original registrator's many rules cheap to test exhaustively.

This module holds the service rules: which ports, and each one's name, ID, tags, address
and Meta. The rest of the pure core: ``container`` reads the inspect data, ``ports`` lists
the candidate ports, ``checks`` builds checks, ``consul_limits`` keeps what Consul refuses
out, ``ecs_rules`` reads the ECS agent's labels, ``lifecycle`` says when services belong in
Consul at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from registrator.core.addresses import ServiceAddresses
from registrator.core.checks import (
    SCRIPT_CHECK_KEYS,
    TRUE_WORDS,
    CheckTarget,
    build_checks,
    docker_health_check,
    health_sync_applies,
)
from registrator.core.consul_limits import (
    DNS_LABEL_RE,
    dns_label,
    valid_meta,
    valid_service_id,
    valid_tags,
    valid_weights,
)
from registrator.core.container import ContainerView, view_of
from registrator.core.container import split_tags as split_tags
from registrator.core.ecs_rules import AwsvpcNetwork, awsvpc_task_arn, ecs_meta, is_ecs_pause
from registrator.core.model import OWNER_META_KEY, Service, freeze_meta
from registrator.core.networks import (
    NETWORK_KEY,
)
from registrator.core.ports import (
    PortCandidate,
    awsvpc_candidates,
    port_candidates,
)
from registrator.core.reasons import PortOutcome, Problem, Reason, Why

if TYPE_CHECKING:
    from registrator.core.config import Config
    from registrator.core.tag_template import Fetch, TagTemplate

# Keys that steer registrator and are not passed on as Meta. (``check_docker_health`` adds a
# check or not: comparing the agent's checks is what re-registers when it changes.)
CONTROL_KEYS = frozenset(
    {"id", "tags", "name", "require_healthy", "enable_tag_override", "weight_passing",
     "weight_warning", "check_docker_health", NETWORK_KEY}
)  # fmt: skip


class DeriveOptions(NamedTuple):
    """The settings that change which services a container produces. Each field but
    ``host_ip`` is the ``Config`` field of the same name (``from_config`` copies them by
    name; a test keeps the names and defaults in step)."""

    hostname: str
    host_ip: str = ""  # the hostname's resolved IP, used for ports published on 0.0.0.0
    ip: str = ""  # -ip: forces the address of every service
    internal: bool = False
    explicit: bool = False
    force_tags: tuple[str, ...] = ()
    tags_template: TagTemplate | None = None  # -tags with {{ }}: evaluated per container
    use_ip_from_label: str = ""
    allow_script_checks: bool = False
    require_healthy: bool = False  # -require-healthy: wait for Docker's HEALTHCHECK
    health_sync: bool = False  # -health-sync: Docker's health as a TTL check
    ecs: bool = False  # -ecs: awsvpc tasks from the ECS agent, ecs_* Meta from the labels

    @classmethod
    def from_config(cls, config: Config, host_ip: str) -> DeriveOptions:
        """The derivation's settings from ``config``, plus the hostname's IP, which only the
        caller can resolve (DNS is I/O)."""
        copied = {name: getattr(config, name) for name in cls._fields if name != "host_ip"}
        return cls(host_ip=host_ip, **copied)


class Derivation(NamedTuple):
    services: tuple[Service, ...] = ()
    problems: tuple[Problem, ...] = ()  # refused metadata
    ports: tuple[PortOutcome, ...] = ()  # each candidate port: its service, or why none
    skipped: Why | None = None  # why the container gives none without a port to look at


def _skipped(code: Reason, detail: str) -> Derivation:
    return Derivation(skipped=Why(code, detail))


def default_service_name(image: str) -> str:
    """Base of the image name without tag or digest: ``example/redis:7`` -> ``redis``."""
    base = image.rstrip("/").rsplit("/", 1)[-1]
    return base.split("@", 1)[0].split(":", 1)[0]


def derive_services(
    container: ContainerView | Mapping[str, Any],
    options: DeriveOptions,
    network_peer: ContainerView | Mapping[str, Any] | None = None,
    awsvpc: AwsvpcNetwork | None = None,
    fetch: Fetch | None = None,
) -> Derivation:
    """The services a container should have, whether or not it is running now.

    ``container`` is its inspect answer or the view of it the caller made (the view reads
    each part once). ``network_peer`` is the inspect of the container named by ``NetworkMode: container:<id>``
    (its IP is the service address), when there is one. ``awsvpc`` is what the ECS agent said
    of the container when it is in an awsvpc task (see ``awsvpc_task_arn``; with ``-ecs``).
    ``fetch`` is how a ``-tags`` template's ``httpGet`` reads a URL (none: an empty body).
    """
    view = view_of(container)
    if options.ecs and is_ecs_pause(view):
        return _skipped(Reason.ECS_PAUSE, "the pause container of an ECS task")
    if options.ecs and (awsvpc is not None or awsvpc_task_arn(view, network_peer)):
        if awsvpc is None:
            return _skipped(Reason.ECS_WAITING, "awsvpc ECS task, and no answer from the ECS agent")
        if not awsvpc.ipv4_addresses and not awsvpc.ipv6_addresses:
            return _skipped(
                Reason.NO_ADDRESS, "the ECS task has no ENI address (network mode none)"
            )
        candidates = awsvpc_candidates(awsvpc)
        if not candidates:
            return _skipped(Reason.NO_PORTS, "no port mappings in the ECS task definition")
    else:
        candidates = port_candidates(view)
    if not candidates:
        return _skipped(Reason.NO_PORTS, "no exposed or published ports")
    peer = None if network_peer is None else view_of(network_peer)
    return _ContainerServices(view, peer, options, fetch).derive(candidates)


class _ContainerServices:
    """One container's services being derived, with the problems found on the way and, for
    each port that gives none, why."""

    def __init__(
        self,
        container: ContainerView,
        peer: ContainerView | None,
        options: DeriveOptions,
        fetch: Fetch | None = None,
    ) -> None:
        self.container = container
        self.peer = peer  # the container whose network this one shares, if any
        self.options = options
        self.fetch = fetch
        self.problems: list[Problem] = []
        self.port = ""  # the port being derived ("8080/tcp")
        self.why: Why | None = None  # why that port gives no service
        self._templated: list[str] | None = None  # the -tags template's, once per container

    def templated_tags(self) -> list[str]:
        """The ``-tags`` template's tags for this container, evaluated once (so each URL
        ``httpGet`` names is fetched once, not once per port). A template that fails here
        costs only this container its templated tags, with a problem saying why."""
        template = self.options.tags_template
        if template is None:
            return []
        if self._templated is None:
            from registrator.core.gotemplate_lex import TemplateError  # only with a template

            try:
                text = template.render(self.container.inspect, self.fetch)
            except TemplateError as exc:
                self.problem("-tags", f"{exc}; registered without the template's tags")
                text = ""
            self._templated = valid_tags(
                split_tags(text), lambda key, message: self.problem("-tags", message)
            )
        return self._templated

    def problem(self, key: str, message: str) -> None:
        """Report one problem; the same one found for several ports is reported once."""
        value = self.container.setting(key, self.port.partition("/")[0]) if key else ""
        if key == "-ip":
            value = self.options.ip
        problem = Problem(self.container.display, key, message, value)
        if problem not in self.problems:
            self.problems.append(problem)

    def skip(self, code: Reason, detail: str) -> None:
        """Say why the port being derived gives no service (its callers then return None)."""
        self.why = Why(code, detail)

    def derive(self, candidates: list[PortCandidate]) -> Derivation:
        published = [c for c in candidates if self.options.internal or c.bindings]
        is_group = len(published) > 1
        # Not kept on self: the rules report to self, and the cycle would keep the container's
        # inspect until the collector runs (several inspects at a time at start-up).
        addresses = ServiceAddresses(self.container, self.peer, self.options, self)
        services: list[Service] = []
        outcomes: list[PortOutcome] = []
        for candidate in candidates:
            self.port, self.why = f"{candidate.exposed_port}/{candidate.protocol}", None
            service = None
            if candidate not in published:
                self.skip(Reason.NOT_PUBLISHED, f"port {self.port} is exposed, not published")
            else:
                service = self.service_for_port(candidate, is_group, addresses)
            if service is not None and any(s.id == service.id for s in services):
                message = (
                    f"{service.id!r} is used by several ports; port {self.port} not registered"
                )
                self.problem("SERVICE_ID", message + " (use SERVICE_<port>_ID)")
                self.skip(Reason.DUPLICATE_ID, message)
                service = None
            if service is not None:
                services.append(service)
            why = None if service is not None else self.why or Why(Reason.NO_ADDRESS)
            outcomes.append(PortOutcome(self.port, service, why))
        return Derivation(tuple(services), tuple(self.problems), tuple(outcomes))

    def service_for_port(
        self, port: PortCandidate, is_group: bool, addresses: ServiceAddresses
    ) -> Service | None:
        options, container = self.options, self.container
        metadata, from_port = container.service_keys(port.exposed_port)
        if metadata.get("ignore", ""):
            key = (
                f"SERVICE_{port.exposed_port}_IGNORE" if "ignore" in from_port else "SERVICE_IGNORE"
            )
            self.skip(Reason.IGNORED, f"{key} is set")
            return None

        name = self.service_name(metadata, from_port, port, is_group)
        if name is None:
            return None
        located = addresses.address(port, metadata, from_port)
        if located is None:
            return None
        address, port_number = located
        default_id = f"{options.hostname}:{container.name}:{port.exposed_port}"
        if port.protocol == "udp":
            default_id += ":udp"
        service_id = valid_service_id(metadata.get("id", ""), default_id, self.problem)
        tags = valid_tags(split_tags(metadata.get("tags", "")), self.problem)
        tags += options.force_tags
        tags += self.templated_tags()
        if port.protocol == "udp":
            tags.append("udp")

        attrs = {k: v for k, v in metadata.items() if k not in CONTROL_KEYS}
        if options.ecs:  # the container's own SERVICE_ECS_* keys win
            attrs = {**ecs_meta(container.labels), **attrs}
        health_sync = health_sync_applies(metadata, options.health_sync, self.problem)
        target = CheckTarget(
            address, port_number, container.short_id, port.exposed_port, service_id
        )
        health = docker_health_check(container, service_id, health_sync)
        checks = build_checks(attrs, target, options.allow_script_checks, health, self.problem)
        refused = () if options.allow_script_checks else SCRIPT_CHECK_KEYS
        meta = valid_meta(attrs, refused, self.problem)
        meta[OWNER_META_KEY] = options.hostname

        return Service(
            id=service_id,
            name=name,
            address=address,
            port=port_number,
            tags=tuple(tags),
            meta=freeze_meta(meta),
            weights=valid_weights(metadata, self.problem),
            enable_tag_override=metadata.get("enable_tag_override", "").strip().lower()
            in TRUE_WORDS,
            checks=checks,
            container_id=container.id,
            container_name=container.name,
        )

    def service_name(
        self, metadata: Mapping[str, str], from_port: set[str], port: PortCandidate, is_group: bool
    ) -> str | None:
        """The service name, or None to skip the service. Names must be usable as a DNS label
        (Consul DNS and the ``<name>.example.com`` vhosts): a bad SERVICE_NAME skips the
        service; a default taken from an image name is made into one."""
        key = f"SERVICE_{port.exposed_port}_NAME" if "name" in from_port else "SERVICE_NAME"
        name = metadata.get("name", "").strip()
        if name:
            if is_group and "name" not in from_port:
                name = f"{name}-{port.exposed_port}"
            if not DNS_LABEL_RE.fullmatch(name):
                self.problem(
                    key,
                    f"{name[:80]!r} is not usable as a DNS label (1-63 letters, digits and '-', "
                    "not starting or ending with '-'); service not registered",
                )
                self.skip(Reason.BAD_NAME, f"{key}: {name[:80]!r} is not a DNS label")
                return None
            return name
        if self.options.explicit:
            self.skip(Reason.NOT_EXPLICIT, f"no SERVICE_NAME for port {self.port}")
            return None
        name = dns_label(default_service_name(self.container.image))
        if is_group:
            name = dns_label(f"{name}-{port.exposed_port}" if name else "")
        if not name:
            message = "no name set and none can be made from the image name"
            self.problem("SERVICE_NAME", message)
            self.skip(Reason.BAD_NAME, message)
            return None
        return name
