"""Pure core: an inspected container (plain dict) plus options -> the services it should have.

No I/O here: whatever needs Docker or DNS (the hostname's IP, the inspect of the container
whose network a container shares) is looked up by the caller and passed in. That keeps the
original registrator's many rules cheap to test exhaustively.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from registrator.model import OWNER_META_KEY, Service, freeze_meta
from registrator.service_checks import (
    SCRIPT_CHECK_KEYS,
    TRUE_WORDS,
    CheckTarget,
    build_checks,
    docker_health_check,
    health_sync_applies,
    is_true,
)
from registrator.service_checks import split_tags as split_tags
from registrator.service_checks import valid_duration as valid_duration

UNSPECIFIED_ADDRESSES = frozenset({"0.0.0.0", "::", ""})
DEFAULT_NETWORK_MODES = frozenset({"bridge", "default", "host"})

# Consul's own limits on service Meta (agent/structs: ValidateServiceMetadata).
META_MAX_PAIRS = 64
META_KEY_MAX = 128
META_VALUE_MAX = 512
META_KEY_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
META_RESERVED_PREFIX = "consul-"
DNS_LABEL_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")
SERVICE_ID_MAX = 256
SERVICE_ID_RE = re.compile(r"^[^/?#%\s\x00-\x1f\x7f]+$")
TAG_MAX = 256
PRINTABLE_RE = re.compile(r"^[^\x00-\x1f\x7f]+$")

# Keys that steer registrator and are not passed on as Meta.
CONTROL_KEYS = frozenset(
    {
        "id",
        "tags",
        "name",
        "require_healthy",
        "enable_tag_override",
        "weight_passing",
        "weight_warning",
    }
)

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


class DeriveOptions(NamedTuple):
    """The options that change which services a container produces."""

    hostname: str
    host_ip: str = ""  # the hostname's resolved IP, used for ports published on 0.0.0.0
    ip: str = ""  # -ip: forces the address of every service
    internal: bool = False
    explicit: bool = False
    force_tags: tuple[str, ...] = ()
    use_ip_from_label: str = ""
    allow_script_checks: bool = False
    require_healthy: bool = False  # -require-healthy: wait for Docker's HEALTHCHECK
    health_sync: bool = False  # -health-sync: Docker's health as a TTL check
    ecs: bool = False  # -ecs: awsvpc tasks from the ECS agent, ecs_* Meta from the labels


class AwsvpcNetwork(NamedTuple):
    """What the ECS agent says of one container of an awsvpc task: the addresses of the
    task's ENI (Docker knows nothing of it) and the container's port mappings."""

    ipv4_addresses: tuple[str, ...]
    ports: tuple[tuple[int, str], ...] = ()  # (container port, "tcp" or "udp")


class Problem(NamedTuple):
    """Something wrong with a container's metadata, said so an operator can fix it."""

    container: str
    key: str
    message: str

    def __str__(self) -> str:
        where = f"container {self.container}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class Derivation(NamedTuple):
    services: tuple[Service, ...] = ()
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()  # why ports were skipped: informational, not errors


class PortCandidate(NamedTuple):
    exposed_port: str
    protocol: str
    host_port: str
    host_ip: str
    exposed_ip: str
    awsvpc: bool = False  # the address is the task ENI's: -ip and peers do not apply


class _Collector:
    """A container's problems and notes, gathered while its services are derived."""

    def __init__(self, container: str) -> None:
        self.container = container
        self.problems: list[Problem] = []
        self.notes: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(Problem(self.container, key, message))


def container_label(container: Mapping[str, Any]) -> str:
    """``name (shortid)``: how every log line names a container."""
    return f"{container_name(container)} ({str(container.get('Id', ''))[:12]})"


def container_name(container: Mapping[str, Any]) -> str:
    return str(container.get("Name") or "").lstrip("/")


def _d(value: Any) -> Mapping[str, Any]:
    """Docker returns null for many empty maps; treat null, missing and {} alike."""
    return value if isinstance(value, Mapping) else {}


def default_service_name(image: str) -> str:
    """Base of the image name without tag or digest: ``example/redis:7`` -> ``redis``."""
    base = image.rstrip("/").rsplit("/", 1)[-1]
    return base.split("@", 1)[0].split(":", 1)[0]


def service_metadata(
    env: list[str], labels: Mapping[str, str], exposed_port: str
) -> tuple[dict[str, str], set[str]]:
    """``SERVICE_*`` keys for one port: env first, then labels (a label wins over an env var
    of the same key); a ``SERVICE_<port>_<key>`` for this port wins over ``SERVICE_<key>``.
    Returns the metadata (keys lower-cased, prefix removed) and the keys set per port."""
    pairs: list[tuple[str, str]] = []
    for entry in env:
        if isinstance(entry, str) and "=" in entry:
            key, value = entry.split("=", 1)
            pairs.append((key, value))
    pairs.extend((str(k), str(v)) for k, v in labels.items())

    metadata: dict[str, str] = {}
    from_port: set[str] = set()
    for raw_key, value in pairs:
        if not raw_key.startswith("SERVICE_"):
            continue
        key = raw_key[len("SERVICE_") :].lower()
        if key in from_port:
            continue
        first, sep, rest = key.partition("_")
        if first.isdigit() and sep and rest:
            if first != exposed_port:
                continue
            metadata[rest] = value
            from_port.add(rest)
        else:
            metadata[key] = value
    return metadata, from_port


def port_candidates(container: Mapping[str, Any]) -> list[PortCandidate]:
    """Exposed ports (host port = exposed port, as with host networking), overridden by
    the published bindings Docker reports; the first binding of a port wins."""
    config = _d(container.get("Config"))
    settings = _d(container.get("NetworkSettings"))
    network_mode = _network_mode(container)

    exposed_ip = str(settings.get("IPAddress") or "")
    if not exposed_ip:
        for network in _d(settings.get("Networks")).values():
            exposed_ip = str(_d(network).get("IPAddress") or "") or exposed_ip

    found: dict[str, tuple[str, str]] = {}
    for port in _d(config.get("ExposedPorts")):
        found[str(port)] = (str(port).split("/", 1)[0], "0.0.0.0")
    for port, bindings in _d(settings.get("Ports")).items():
        host_port, host_ip = "", ""
        if isinstance(bindings, list) and bindings and isinstance(bindings[0], Mapping):
            host_port = str(bindings[0].get("HostPort") or "")
            host_ip = str(bindings[0].get("HostIp") or "")
        found[str(port)] = (host_port, host_ip or "0.0.0.0")

    candidates: list[PortCandidate] = []
    for port, (host_port, host_ip) in found.items():
        number, _, protocol = port.partition("/")
        if not number.isdigit():
            continue  # not a port Docker would report
        if network_mode and network_mode not in DEFAULT_NETWORK_MODES:
            network = _d(_d(settings.get("Networks")).get(network_mode))
            host_ip = str(network.get("IPAddress") or "")
        candidates.append(
            PortCandidate(
                exposed_port=number,
                protocol=protocol or "tcp",
                host_port=host_port,
                host_ip=host_ip,
                exposed_ip=exposed_ip,
            )
        )
    candidates.sort(key=lambda c: (int(c.exposed_port), c.protocol))
    return candidates


def awsvpc_candidates(network: AwsvpcNetwork) -> list[PortCandidate]:
    """An awsvpc container's ports, from the ECS agent: each at the task ENI's first IPv4
    address, the container port being the port (in awsvpc the host port equals it)."""
    address = network.ipv4_addresses[0] if network.ipv4_addresses else ""
    found: dict[tuple[int, str], PortCandidate] = {}
    for number, protocol in network.ports:
        found.setdefault(
            (number, protocol),
            PortCandidate(str(number), protocol, str(number), address, address, awsvpc=True),
        )
    return [found[key] for key in sorted(found)]


def container_labels(container: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in _d(_d(container.get("Config")).get("Labels")).items()}


def is_ecs_pause(container: Mapping[str, Any]) -> bool:
    """The pause container the ECS agent makes for an awsvpc task: never a service."""
    return container_labels(container).get(ECS_CONTAINER_NAME_LABEL) == ECS_PAUSE_CONTAINER_NAME


def awsvpc_task_arn(
    container: Mapping[str, Any], network_peer: Mapping[str, Any] | None = None
) -> str:
    """The task ARN of an ECS app container that Docker gives no address because it is in an
    awsvpc task: network mode ``none``, or ``container:<id>`` of a container in ``none`` (the
    task's pause container, whose ENI the ECS agent attached with CNI). "" otherwise."""
    arn = container_labels(container).get(ECS_TASK_ARN_LABEL, "")
    if not arn or is_ecs_pause(container):
        return ""
    mode = _network_mode(container)
    if mode == "none":
        return arn
    if mode.startswith("container:") and network_peer is not None:
        return arn if _network_mode(network_peer) == "none" else ""
    return ""


def _network_mode(container: Mapping[str, Any]) -> str:
    return str(_d(container.get("HostConfig")).get("NetworkMode") or "")


def ecs_meta(labels: Mapping[str, str]) -> dict[str, str]:
    """The ``ecs_*`` Meta of an ECS container's services, from its Docker labels."""
    if not labels.get(ECS_TASK_ARN_LABEL):
        return {}
    return {key: labels[label] for key, label in ECS_META_LABELS if labels.get(label)}


def derive_services(
    container: Mapping[str, Any],
    options: DeriveOptions,
    network_peer: Mapping[str, Any] | None = None,
    awsvpc: AwsvpcNetwork | None = None,
) -> Derivation:
    """The services a container should have, whether or not it is running now.

    ``network_peer`` is the inspect of the container named by ``NetworkMode: container:<id>``
    (its IP is the service address), when there is one. ``awsvpc`` is what the ECS agent said
    of the container when it is in an awsvpc task (see ``awsvpc_task_arn``; with ``-ecs``).
    """
    label = container_label(container)
    out = _Collector(label)
    if options.ecs and is_ecs_pause(container):
        return Derivation(notes=("the pause container of an ECS task",))
    if options.ecs and awsvpc_task_arn(container, network_peer):
        if awsvpc is None:
            return Derivation(notes=("awsvpc ECS task, and no answer from the ECS agent",))
        if not awsvpc.ipv4_addresses:
            return Derivation(notes=("the ECS task has no ENI address (network mode none)",))
        candidates = awsvpc_candidates(awsvpc)
        if not candidates:
            return Derivation(notes=("no port mappings in the ECS task definition",))
    else:
        candidates = port_candidates(container)
    if not candidates:
        out.notes.append("no published ports")
        return Derivation((), (), tuple(out.notes))

    published = []
    for candidate in candidates:
        if not options.internal and not candidate.host_port:
            out.notes.append(f"port {candidate.exposed_port} not published on host")
            continue
        published.append(candidate)
    is_group = len(published) > 1

    services: list[Service] = []
    for candidate in published:
        service = _service_for_port(container, candidate, is_group, options, network_peer, out)
        if service is None:
            continue
        if any(s.id == service.id for s in services):
            out.problem(
                "SERVICE_ID",
                f"{service.id!r} is used by several ports; port {candidate.exposed_port} not "
                "registered (use SERVICE_<port>_ID)",
            )
            continue
        services.append(service)
    return Derivation(tuple(services), tuple(out.problems), tuple(out.notes))


def _service_for_port(
    container: Mapping[str, Any],
    port: PortCandidate,
    is_group: bool,
    options: DeriveOptions,
    network_peer: Mapping[str, Any] | None,
    out: _Collector,
) -> Service | None:
    config = _d(container.get("Config"))
    env = config.get("Env") if isinstance(config.get("Env"), list) else []
    labels = container_labels(container)
    metadata, from_port = service_metadata(env or [], labels, port.exposed_port)

    if metadata.get("ignore", ""):
        out.notes.append(f"service on port {port.exposed_port} ignored (SERVICE_IGNORE)")
        return None

    name = _service_name(metadata, from_port, config, port, is_group, options, out)
    if name is None:
        return None
    address, port_number = _address(container, labels, port, options, network_peer, out)
    default_id = f"{options.hostname}:{container_name(container)}:{port.exposed_port}"
    if port.protocol == "udp":
        default_id += ":udp"
    service_id = _service_id(metadata.get("id", ""), default_id, out)
    tags = _valid_tags(split_tags(metadata.get("tags", "")), out) + list(options.force_tags)
    if port.protocol == "udp":
        tags.append("udp")

    attrs = {k: v for k, v in metadata.items() if k not in CONTROL_KEYS}
    if options.ecs:  # the container's own SERVICE_ECS_* keys win
        attrs = {**ecs_meta(labels), **attrs}
    health_sync = health_sync_applies(attrs, options.health_sync, out.problem)
    if health_sync:
        attrs["check_docker_health"] = "true"  # in Meta, so that turning it on re-registers
    target = CheckTarget(
        service_id, address, port_number, str(container.get("Id", ""))[:12], port.exposed_port,
        options.allow_script_checks,
    )  # fmt: skip
    health = docker_health_check(container, service_id, health_sync)
    checks = build_checks(attrs, target, health, out.problem)
    meta = _valid_meta(attrs, options, out)
    meta[OWNER_META_KEY] = options.hostname

    return Service(
        id=service_id,
        name=name,
        address=address,
        port=port_number,
        tags=tuple(tags),
        meta=freeze_meta(meta),
        weights=_weights(metadata, out),
        enable_tag_override=is_true(metadata.get("enable_tag_override", "")),
        checks=checks,
        container_id=str(container.get("Id", "")),
        container_name=container_name(container),
    )


def _weights(metadata: Mapping[str, str], out: _Collector) -> tuple[int, int]:
    """``SERVICE_WEIGHT_PASSING`` and ``SERVICE_WEIGHT_WARNING``: positive whole numbers
    (Consul's defaults, 1 and 1, otherwise)."""
    weights = []
    for key in ("weight_passing", "weight_warning"):
        value = metadata.get(key, "").strip()
        if value and (not value.isdigit() or int(value) < 1):
            out.problem(f"SERVICE_{key.upper()}", f"{value!r} is not a whole number >= 1; using 1")
            value = ""
        weights.append(int(value) if value else 1)
    return weights[0], weights[1]


def _service_name(
    metadata: Mapping[str, str],
    from_port: set[str],
    config: Mapping[str, Any],
    port: PortCandidate,
    is_group: bool,
    options: DeriveOptions,
    out: _Collector,
) -> str | None:
    """The service name, or None to skip the service. Names must be usable as a DNS label
    (Consul DNS and the ``<name>.example.com`` vhosts): a bad SERVICE_NAME skips the
    service; a default taken from an image name is made into one."""
    key = f"SERVICE_{port.exposed_port}_NAME" if "name" in from_port else "SERVICE_NAME"
    name = metadata.get("name", "").strip()
    if name:
        if is_group and "name" not in from_port:
            name = f"{name}-{port.exposed_port}"
        if not DNS_LABEL_RE.match(name):
            out.problem(
                key,
                f"{name[:80]!r} is not usable as a DNS label (1-63 letters, digits and '-', "
                "not starting or ending with '-'); service not registered",
            )
            return None
        return name
    if options.explicit:
        out.notes.append(f"port {port.exposed_port} has no SERVICE_NAME (-explicit)")
        return None
    name = dns_label(default_service_name(str(config.get("Image") or "")))
    if is_group:
        name = dns_label(f"{name}-{port.exposed_port}" if name else "")
    if not name:
        out.problem("SERVICE_NAME", "no name set and none can be made from the image name")
        return None
    return name


def dns_label(text: str) -> str:
    """Turn an image base name into a DNS label: other characters become '-'."""
    label = re.sub(r"[^a-zA-Z0-9-]+", "-", text).strip("-")
    return label[:63].rstrip("-")


def _service_id(wanted: str, default: str, out: _Collector) -> str:
    """SERVICE_ID, unless Consul could not address it (it travels in URL paths)."""
    if not wanted:
        return default
    if len(wanted) > SERVICE_ID_MAX or not SERVICE_ID_RE.match(wanted):
        out.problem(
            "SERVICE_ID",
            f"{wanted[:80]!r} is not a usable service ID (printable, no '/', '?', '#' or '%', "
            f"at most {SERVICE_ID_MAX} characters); using {default}",
        )
        return default
    return wanted


def _valid_tags(tags: list[str], out: _Collector) -> list[str]:
    kept = []
    for tag in tags:
        if len(tag.encode()) > TAG_MAX or not PRINTABLE_RE.match(tag):
            out.problem("SERVICE_TAGS", f"tag {tag[:40]!r}... is unprintable or too long; dropped")
        else:
            kept.append(tag)
    return kept


def _address(
    container: Mapping[str, Any],
    labels: Mapping[str, str],
    port: PortCandidate,
    options: DeriveOptions,
    network_peer: Mapping[str, Any] | None,
    out: _Collector,
) -> tuple[str, int]:
    """Where the service answers: the original's precedence of host IP, ``-ip``,
    ``-internal``, ``-useIpFromLabel`` and ``--network container:<id>``. An awsvpc task's
    port is at its ENI's address, which only ``-useIpFromLabel`` overrides (``-ip`` names the
    host's address for published ports; the task has an address of its own)."""
    if port.awsvpc:
        address, number = port.host_ip, port.host_port
    elif options.internal:
        address, number = port.exposed_ip, port.exposed_port
    else:
        address = port.host_ip
        if address in UNSPECIFIED_ADDRESSES and options.host_ip:
            address = options.host_ip
        address, number = options.ip or address, port.host_port

    if options.use_ip_from_label:
        from_label = labels.get(options.use_ip_from_label, "")
        if from_label:
            address = from_label.rsplit("/", 1)[0] if "/" in from_label else from_label
        else:
            out.notes.append(f"label {options.use_ip_from_label!r} not found")

    network_mode = _network_mode(container)
    if network_mode.startswith("container:") and network_peer is not None and not port.awsvpc:
        peer_settings = _d(network_peer.get("NetworkSettings"))
        address = str(peer_settings.get("IPAddress") or "")
        if not address:
            for network in _d(peer_settings.get("Networks")).values():
                address = str(_d(network).get("IPAddress") or "") or address

    if address in UNSPECIFIED_ADDRESSES - {""}:
        out.problem("", f"address {address} cannot be registered; left empty (the agent's)")
        address = ""
    try:
        return address, int(number)
    except ValueError:
        return address, 0


def _valid_meta(
    attrs: Mapping[str, str], options: DeriveOptions, out: _Collector
) -> dict[str, str]:
    """Keep the metadata Consul accepts; drop each bad key with a problem naming it."""
    meta: dict[str, str] = {}
    for key, value in sorted(attrs.items()):
        env_key = f"SERVICE_{key.upper()}"
        if key in SCRIPT_CHECK_KEYS and not options.allow_script_checks:
            continue  # refused in _build_check, with its own problem
        if key == OWNER_META_KEY:
            out.problem(env_key, "reserved for registrator's ownership mark; dropped")
        elif not META_KEY_RE.match(key):
            out.problem(env_key, "Meta key has characters Consul refuses; dropped")
        elif len(key) > META_KEY_MAX:
            out.problem(env_key, f"Meta key longer than {META_KEY_MAX} characters; dropped")
        elif key.startswith(META_RESERVED_PREFIX):
            out.problem(env_key, "Meta key prefix 'consul-' is reserved by Consul; dropped")
        elif len(value.encode()) > META_VALUE_MAX:  # Consul counts bytes
            out.problem(env_key, f"value longer than {META_VALUE_MAX} characters; dropped")
        elif len(meta) >= META_MAX_PAIRS - 1:  # one pair is the ownership mark
            out.problem(env_key, f"more than {META_MAX_PAIRS} Meta pairs; dropped")
        else:
            meta[key] = value
    return meta


def retained_after_exit(container: Mapping[str, Any], deregister: str) -> bool:
    """With ``-deregister on-success`` a container that failed keeps its services (so its
    Consul check shows the failure), as the original does: exit 0 or a signal exit (the 128
    bit set) deregisters; any other exit code keeps them."""
    state = _d(container.get("State"))
    if state.get("Running"):
        return deregister == "on-success"
    return keeps_services(int(state.get("ExitCode") or 0), deregister)


def keeps_services(exit_code: int, deregister: str) -> bool:
    """Whether a container that exited with ``exit_code`` keeps its services."""
    return deregister == "on-success" and exit_code != 0 and not exit_code & 128


def withheld_reason(container: Mapping[str, Any], options: DeriveOptions) -> str:
    """Why a running container's services must not be in Consul now ("" when they may).

    With ``-require-healthy`` (or ``SERVICE_REQUIRE_HEALTHY=true`` on the container; ``false``
    opts out) a container that has a Docker HEALTHCHECK is registered only while Docker says
    it is healthy. A container without a HEALTHCHECK is not held back.
    """
    config = _d(container.get("Config"))
    env = config.get("Env") if isinstance(config.get("Env"), list) else []
    metadata, _ = service_metadata(env or [], container_labels(container), "")
    setting = metadata.get("require_healthy", "").strip().lower()
    required = setting in TRUE_WORDS if setting else options.require_healthy
    health = _d(_d(container.get("State")).get("Health"))
    if not required or not health:
        return ""
    # With health sync as well, the service stays registered and its check carries the
    # health (consul-template leaves it out of the upstream all the same): the container's
    # own key beats a flag, and between two of a kind health sync wins.
    sync_setting = metadata.get("check_docker_health", "").strip()
    if health_sync_applies(metadata, options.health_sync, lambda *_: None) and (
        sync_setting or not setting
    ):
        return ""
    status = str(health.get("Status") or "")
    return "" if status == "healthy" else f"Docker health is {status or 'unknown'}"


def is_running(container: Mapping[str, Any]) -> bool:
    return bool(_d(container.get("State")).get("Running"))
