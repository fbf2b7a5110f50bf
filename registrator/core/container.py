"""A read-only view of one ``docker inspect`` answer: the one place its layout is read.

Docker returns null for many empty maps and lists; the view reads null, missing and empty
alike, so the rules that use it never test types. Pure: no I/O.
"""

from __future__ import annotations

import datetime
import sys
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

SHORT_ID_LENGTH = 12
SERVICE_PREFIX = "SERVICE_"
PEER_NETWORK_PREFIX = "container:"  # NetworkMode of --network container:<id>
DEFAULT_BRIDGE = "bridge"  # the default network's name (NetworkMode "default" before API 1.44)


class Binding(NamedTuple):
    """Where the host publishes a container port: an address ("0.0.0.0", "::" and "" are every
    address, of one family or of both) and a port."""

    host_ip: str
    host_port: str


class NetworkAttachment(NamedTuple):
    """A container's addresses on one network ("" when it has none of that family)."""

    ipv4: str
    ipv6: str  # the global one (a link-local address is no use to other hosts)


def as_mapping(value: Any) -> Mapping[str, Any]:
    """Docker returns null for many empty maps: null, a missing key and {} read alike."""
    return value if isinstance(value, Mapping) else {}


def short_id(container_id: str) -> str:
    """The 12-character ID Docker's own commands show."""
    return container_id[:SHORT_ID_LENGTH]


def docker_time(text: str) -> float:
    """Docker's RFC 3339 time (``2024-05-01T10:00:00.123456789Z``, or with an offset as Podman
    writes it) in Unix seconds, to the microsecond; 0 for Docker's zero time or anything else."""
    try:
        stamp = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        return 0.0
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    seconds = stamp.timestamp()
    return seconds if seconds > 0 else 0.0


def display_name(name: str, container_id: str) -> str:
    """``name (short id)``: how every log line and report names a container."""
    return f"{name} ({short_id(container_id)})"


def split_tags(value: str) -> list[str]:
    """Split on commas; ``\\,`` keeps a comma in a tag. Blank tags are dropped."""
    tags: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(value):
        char = value[i]
        if char == "\\" and i + 1 < len(value) and value[i + 1] == ",":
            current.append(",")
            i += 2
            continue
        if char == ",":
            tags.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    tags.append("".join(current))
    return [t.strip() for t in tags if t.strip()]


def service_pairs(env: Iterable[str], labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Every ``SERVICE_*`` key (lower-cased, prefix removed) with its value: env first, then
    labels, in Docker's order. Read once per container; ``select_service_keys`` picks a
    port's settings from it."""
    pairs: list[tuple[str, str]] = []
    for entry in env:
        if entry.startswith(SERVICE_PREFIX) and "=" in entry:
            key, value = entry.split("=", 1)
            pairs.append((key[len(SERVICE_PREFIX) :].lower(), value))
    for key, value in labels.items():
        if key.startswith(SERVICE_PREFIX):
            pairs.append((key[len(SERVICE_PREFIX) :].lower(), value))
    return tuple(pairs)


def select_service_keys(
    pairs: Iterable[tuple[str, str]], exposed_port: str
) -> tuple[dict[str, str], set[str]]:
    """One port's settings: a later pair wins over an earlier one of the same key (a label
    over an env var); a ``SERVICE_<port>_<key>`` for this port wins over ``SERVICE_<key>``.
    Returns the metadata and the keys set per port."""
    metadata: dict[str, str] = {}
    from_port: set[str] = set()
    for key, value in pairs:
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


def service_metadata(
    env: Iterable[str], labels: Mapping[str, str], exposed_port: str
) -> tuple[dict[str, str], set[str]]:
    """``SERVICE_*`` keys for one port: env first, then labels (a label wins over an env var
    of the same key); a ``SERVICE_<port>_<key>`` for this port wins over ``SERVICE_<key>``.
    Returns the metadata (keys lower-cased, prefix removed) and the keys set per port.
    The order of ``env`` matters (the original reads Docker's list in order)."""
    return select_service_keys(service_pairs(env, labels), exposed_port)


def view_of(container: ContainerView | Mapping[str, Any]) -> ContainerView:
    """The view of an inspect answer, made once per assessment and passed on as it is."""
    return container if isinstance(container, ContainerView) else ContainerView(container)


class ContainerView:
    """Typed, read-only access to an inspected container; what a rule needs, read once."""

    __slots__ = ("_config", "_env", "_labels", "_service", "_settings", "_state", "inspect", "name")

    def __init__(self, inspect: Mapping[str, Any]) -> None:
        self.inspect = inspect
        self._config = as_mapping(inspect.get("Config"))
        self._settings = as_mapping(inspect.get("NetworkSettings"))
        self._state = as_mapping(inspect.get("State"))
        self._labels: dict[str, str] | None = None
        self._env: tuple[str, ...] | None = None
        self._service: tuple[tuple[str, str], ...] | None = None
        # The name without Docker's leading '/', made once: the services and the explanation
        # the daemon keeps of the container share it.
        self.name = str(inspect.get("Name") or "").lstrip("/")

    @property
    def id(self) -> str:
        return str(self.inspect.get("Id", ""))

    @property
    def short_id(self) -> str:
        return short_id(self.id)

    @property
    def display(self) -> str:
        """``name (short id)``, for log lines and problems."""
        return display_name(self.name, self.id)

    @property
    def image(self) -> str:
        return str(self._config.get("Image") or "")

    @property
    def env(self) -> tuple[str, ...]:
        """``KEY=value`` entries in Docker's order (the order decides which duplicate wins)."""
        if self._env is None:
            entries = self._config.get("Env")
            listed = entries if isinstance(entries, list) else []
            self._env = tuple(entry for entry in listed if isinstance(entry, str))
        return self._env

    @property
    def labels(self) -> dict[str, str]:
        """Docker's labels on the container, as strings."""
        if self._labels is None:
            labels = as_mapping(self._config.get("Labels"))
            self._labels = {str(key): str(value) for key, value in labels.items()}
        return self._labels

    def service_keys(self, exposed_port: str) -> tuple[dict[str, str], set[str]]:
        """The container's ``SERVICE_*`` settings for one port (see ``service_metadata``); the
        keys are read from the env and labels once per view."""
        if self._service is None:
            self._service = service_pairs(self.env, self.labels)
        return select_service_keys(self._service, exposed_port)

    def setting(self, key: str, exposed_port: str = "") -> str:
        """The value a ``SERVICE_*`` key has on the container, as the rules read it: the
        port's own ``SERVICE_<port>_*`` first, a label over an env var ("" when unset)."""
        keys = [key]
        if exposed_port and key.startswith(SERVICE_PREFIX):
            keys.insert(0, f"{SERVICE_PREFIX}{exposed_port}_{key[len(SERVICE_PREFIX) :]}")
        env = dict(entry.split("=", 1) for entry in self.env if "=" in entry)
        for name in keys:
            if name in self.labels or name in env:
                return self.labels.get(name, env.get(name, ""))
        return ""

    @property
    def network_mode(self) -> str:
        return str(as_mapping(self.inspect.get("HostConfig")).get("NetworkMode") or "")

    @property
    def shares_network(self) -> bool:
        """Whether it runs in another container's network (``--network container:<id>``)."""
        return self.network_mode.startswith(PEER_NETWORK_PREFIX)

    @property
    def network_peer_id(self) -> str:
        """The ID (or name) of the container whose network it shares; "" when none."""
        mode = self.network_mode
        return mode[len(PEER_NETWORK_PREFIX) :] if mode.startswith(PEER_NETWORK_PREFIX) else ""

    @property
    def ip_address(self) -> str:
        """The original's pick of the container's address: Docker's top-level one (the default
        bridge's, before API 1.52), else the last network's that has one. Services take
        their address from ``networks`` by the rule in ``registrator.core.networks`` instead."""
        address = str(self._settings.get("IPAddress") or "")
        if address:
            return address
        for network in as_mapping(self._settings.get("Networks")).values():
            address = str(as_mapping(network).get("IPAddress") or "") or address
        return address

    @property
    def networks(self) -> dict[str, NetworkAttachment]:
        """Network name -> the container's addresses there, from ``NetworkSettings.Networks``,
        the one place every Engine API version lists them (API 1.52 dropped the top-level
        ``IPAddress`` and ``GlobalIPv6Address``, which only ever described the default bridge).
        An engine that lists no ``Networks`` but a top-level address has it on the bridge."""
        networks = {
            str(name): NetworkAttachment(
                str(as_mapping(settings).get("IPAddress") or ""),
                str(as_mapping(settings).get("GlobalIPv6Address") or ""),
            )
            for name, settings in as_mapping(self._settings.get("Networks")).items()
        }
        if not networks:
            top = NetworkAttachment(
                str(self._settings.get("IPAddress") or ""),
                str(self._settings.get("GlobalIPv6Address") or ""),
            )
            if any(top):
                networks[DEFAULT_BRIDGE] = top
        return networks

    def network_address(self, network: str) -> str:
        """The container's address on one named network ("" when not attached)."""
        networks = as_mapping(self._settings.get("Networks"))
        return str(as_mapping(networks.get(network)).get("IPAddress") or "")

    @property
    def exposed_ports(self) -> list[str]:
        """``EXPOSE``d ports as Docker names them: ``"80/tcp"``."""
        return [str(port) for port in as_mapping(self._config.get("ExposedPorts"))]

    @property
    def published_ports(self) -> dict[str, tuple[Binding, ...]]:
        """Port -> its bindings on the host, in Docker's order; () when not published. Docker
        20.10 publishes ``-p 8080`` twice, on 0.0.0.0 and on ::, with ports drawn apart."""
        published: dict[str, tuple[Binding, ...]] = {}
        for port, bindings in as_mapping(self._settings.get("Ports")).items():
            listed = bindings if isinstance(bindings, list) else []
            published[str(port)] = tuple(
                Binding(str(b.get("HostIp") or ""), str(b.get("HostPort") or ""))
                for b in listed
                if isinstance(b, Mapping) and b.get("HostPort")
            )
        return published

    @property
    def status(self) -> str:
        """Docker's word for the state: running, exited, paused, created, ... (interned: the
        daemon keeps it for every container, in its explanation)."""
        return sys.intern(
            str(self._state.get("Status") or ("running" if self.running else "exited"))
        )

    @property
    def running(self) -> bool:
        """Running, and not waiting for its restart policy's next start: Docker says
        ``Running`` of a restarting container too, with its last run's start and no ports."""
        return bool(self._state.get("Running")) and not self._state.get("Restarting")

    @property
    def paused(self) -> bool:
        """Frozen by ``docker pause``: still "running", but its processes answer nothing."""
        return bool(self._state.get("Paused"))

    @property
    def started_at(self) -> float:
        """When its current (or last) run began, in Unix seconds (0: unknown)."""
        return docker_time(str(self._state.get("StartedAt") or ""))

    @property
    def finished_at(self) -> float:
        """When its last run ended, in Unix seconds (0: it never ended)."""
        return docker_time(str(self._state.get("FinishedAt") or ""))

    @property
    def restart_count(self) -> int:
        """How many times its restart policy restarted it since it was last started by hand."""
        count = self.inspect.get("RestartCount")
        return count if isinstance(count, int) else 0

    @property
    def exit_code(self) -> int:
        return int(self._state.get("ExitCode") or 0)

    @property
    def health_output(self) -> str:
        """The output of Docker's last health probe ("" when there is none)."""
        log = as_mapping(self._state.get("Health")).get("Log")
        if isinstance(log, list) and log and isinstance(log[-1], Mapping):
            return str(log[-1].get("Output") or "").strip()
        return ""

    @property
    def health_status(self) -> str | None:
        """Docker's health status; None when the container has no HEALTHCHECK."""
        health = as_mapping(self._state.get("Health"))
        return sys.intern(str(health.get("Status") or "")) if health else None
