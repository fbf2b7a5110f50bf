"""Thin adapter over the Docker SDK: list, inspect, and the event stream as plain values.

It knows nothing of Consul. Errors become ``DockerUnavailable`` (the daemon is down or
broke the connection: reconnect and reconcile) or a ``None`` inspect (the container is gone).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import docker
import docker.errors
import docker.utils
import requests
import urllib3.exceptions
from docker.transport import UnixHTTPAdapter

from registrator.adapters.logs import brief

log = logging.getLogger(__name__)

# A container ID or name as Docker allows them (names: [a-zA-Z0-9][a-zA-Z0-9_.-]*).
CONTAINER_REFERENCE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")

# Container actions that can change a container's services ("kill" only with -drain, and to
# tell a stop from a crash for the flapping hold; "pause" takes a container out), by
# Docker's names: the daemon queues each. Docker's event filter takes them; Podman's does not
# match its own die and remove (containers/podman #16857), so on any engine but Docker the
# subscription asks for container events and they are filtered here.
WATCHED_ACTIONS = (
    "start", "die", "destroy", "rename", "kill", "health_status", "pause", "unpause",
)  # fmt: skip
# Podman's names (the compat API's and libpod's own) for Docker's.
DOCKER_ACTION = {"remove": "destroy", "died": "die"}
HEALTH_EVENT = "health_status"  # the action of Docker's health events (not a check's status)


class DockerUnavailable(Exception):
    """The Docker daemon did not answer or the connection broke."""


class ContainerEvent(NamedTuple):
    """One Docker event, read by Type/Action/Actor (Engine API 1.52 dropped status/id/from)."""

    action: str
    container_id: str
    name: str = ""
    time_nano: int = 0
    attributes: Mapping[str, str] = MappingProxyType({})
    health: str = ""  # a health_status event's state (healthy, unhealthy, starting)

    @property
    def base_action(self) -> str:
        """``health_status: healthy`` -> ``health_status``."""
        return self.action.split(":", 1)[0].strip()

    @property
    def time(self) -> float:
        return self.time_nano / 1e9


def parse_event(raw: Any) -> ContainerEvent | None:
    """A container event from the stream, or None for anything else or anything malformed.

    Podman's shapes become Docker's: ``remove`` is ``destroy``, ``died`` is ``die``, and its
    bare ``health_status`` with the state in the event's ``HealthStatus`` (containers/podman
    #14705) is ``health_status: <state>``, as Docker sends it."""
    if not isinstance(raw, Mapping) or raw.get("Type", "container") != "container":
        return None
    actor = _mapping(raw.get("Actor"))
    attributes = _mapping(actor.get("Attributes"))
    container_id = str(actor.get("ID") or raw.get("id") or "")
    action = str(raw.get("Action") or raw.get("status") or "")
    if not container_id or not action:
        return None
    action = DOCKER_ACTION.get(action, action)
    health = ""
    base, _, state = action.partition(":")
    if base.strip() == HEALTH_EVENT:
        health = state.strip()
        health = health or str(raw.get("HealthStatus") or attributes.get(HEALTH_EVENT) or "")
        action = f"{HEALTH_EVENT}: {health}" if health else HEALTH_EVENT
    time_nano = raw.get("timeNano")
    if not isinstance(time_nano, int):
        seconds = raw.get("time")
        time_nano = int(seconds * 1_000_000_000) if isinstance(seconds, int | float) else 0
    return ContainerEvent(
        action=action,
        container_id=container_id,
        name=str(attributes.get("name", "")),
        time_nano=time_nano,
        attributes={str(k): str(v) for k, v in attributes.items()},
        health=health,
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


class EventStream:
    """An open subscription: iterate for events; ``close()`` from any thread ends it.

    Only the watched actions come out (an engine that cannot filter them sends every
    container event). The SDK's generator simply ends when the daemon goes away; iteration
    here ends the same way, and a broken read raises ``DockerUnavailable``.
    """

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def __iter__(self) -> Iterator[ContainerEvent]:
        try:
            for item in self._raw:
                event = parse_event(item)
                if event is not None and event.base_action in WATCHED_ACTIONS:
                    yield event
        except (
            requests.exceptions.RequestException,
            docker.errors.DockerException,
            OSError,
            ValueError,
        ) as exc:
            raise DockerUnavailable(f"event stream broke: {exc}") from exc

    def close(self) -> None:
        try:
            self._raw.close()
        except Exception:  # closing a stream whose socket is already gone
            log.debug("closing the event stream", exc_info=True)


class _OnePoolUnixAdapter(UnixHTTPAdapter):  # type: ignore[misc]
    """The Docker SDK keys its Unix-socket connection pools by the full URL, so each
    container's inspect opened (and soon closed) a connection of its own; every request goes
    to the same socket, so one pool of kept-alive connections serves them all."""

    def get_connection(self, url: str = "", proxies: Any = None) -> Any:
        return super().get_connection("http+docker://localhost", proxies)


class _VersionKeepingClient(docker.APIClient):  # type: ignore[misc]
    """The SDK's client, keeping the whole ``/version`` answer it asks for the API version:
    it names the engine at no extra request."""

    server_version: Mapping[str, Any] = MappingProxyType({})

    def _retrieve_server_version(self) -> str:
        try:
            answer = self.version(api_version=False)
        except Exception as exc:  # what the SDK's own method wraps the same way
            raise docker.errors.DockerException(
                f"Error while fetching server API version: {exc}"
            ) from exc
        self.server_version = _mapping(answer)
        api = self.server_version.get("ApiVersion")
        if not isinstance(api, str):
            raise docker.errors.DockerException(
                'Invalid response from docker daemon: key "ApiVersion" is missing.'
            )
        return api


class Engine(NamedTuple):
    """Which engine answers, from its ``/version``: Docker and Podman differ in their events."""

    name: str  # "Docker", "Podman", or "unknown engine"
    version: str
    api_version: str

    @property
    def docker(self) -> bool:
        return self.name == "Docker"

    def __str__(self) -> str:
        return f"{self.name} {self.version or '(no version)'} (API {self.api_version})"


def engine_of(answer: Mapping[str, Any], api_version: str) -> Engine:
    """Podman lists a ``Podman Engine`` component, Docker an ``Engine`` one."""
    components = answer.get("Components")
    for component in components if isinstance(components, list) else ():
        component = _mapping(component)
        name = component.get("Name")
        if name in ("Podman Engine", "Engine"):
            version = str(component.get("Version") or answer.get("Version") or "")
            return Engine("Podman" if name == "Podman Engine" else "Docker", version, api_version)
    return Engine("unknown engine", str(answer.get("Version") or ""), api_version)


class DockerSource:
    """The Docker daemon (or Podman's Docker API), as registrator reads it."""

    def __init__(self, env: Mapping[str, str], base_url: str, timeout: float = 30.0) -> None:
        kwargs = docker.utils.kwargs_from_env(environment=dict(env))
        kwargs["base_url"] = base_url
        self.base_url = base_url
        try:
            self._api = _VersionKeepingClient(
                version="auto", timeout=timeout, max_pool_size=16, **kwargs
            )
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise DockerUnavailable(f"cannot reach Docker at {base_url}: {brief(exc)}") from exc
        # requests would otherwise scan the whole environment for proxy settings on every
        # request (a large share of a start-up sync's CPU: benchmarks/README.md), and a proxy
        # is never right for the local Docker socket.
        self._api.trust_env = False
        self.engine = engine_of(self._api.server_version, str(self._api.api_version))
        self._timeout = timeout
        self._unix: _OnePoolUnixAdapter | None = None
        adapter = getattr(self._api, "_custom_adapter", None)
        if isinstance(adapter, UnixHTTPAdapter):
            self._unix = _OnePoolUnixAdapter(
                "http+unix://" + adapter.socket_path, timeout, max_pool_size=16
            )
            self._api._custom_adapter = self._unix
            self._api.mount("http+docker://", self._unix)
        # What the SDK sends with every GET: its session headers (User-Agent) and the
        # HttpHeaders of the Docker CLI's config.json.
        self._headers = {**self._api.headers, **_configured_headers(self._api)}

    def events(self, since: float | None = None) -> EventStream:
        """Subscribe now (the request is made before returning), so a listing made after this
        call misses nothing."""
        filters: dict[str, list[str]] = {"type": ["container"]}
        if self.engine.docker:
            filters["event"] = list(WATCHED_ACTIONS)
        try:
            raw = self._api.events(
                since=f"{since:.9f}" if since else None, decode=True, filters=filters
            )
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise DockerUnavailable(f"cannot subscribe to events: {brief(exc)}") from exc
        return EventStream(raw)

    def container_ids(self, every: bool = False) -> list[str]:
        """The running containers' IDs (``every``: stopped ones too)."""
        try:
            listing = self._api.containers(quiet=True, all=every)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise DockerUnavailable(f"cannot list containers: {brief(exc)}") from exc
        return [str(item["Id"]) for item in listing]

    def running_fingerprints(self) -> dict[str, str]:
        """Running containers by ID, each with a digest of what the list API reports about it
        (state, health, ports, networks, labels, names): one request for all of them, so a
        periodic resync re-inspects only containers whose digest changed."""
        try:
            listing = self._api.containers()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise DockerUnavailable(f"cannot list containers: {brief(exc)}") from exc
        return {str(item.get("Id")): fingerprint(item) for item in listing if item.get("Id")}

    def inspect(self, container_id: str) -> dict[str, Any] | None:
        """The container's inspect data, or None when it no longer exists.

        On the Unix socket (the usual case) the request goes straight to the SDK's urllib3
        connection pool: the same kept-alive connections and the same request, without the
        requests machinery around it, which cost half the CPU of an inspect
        (benchmarks/README.md). Other Docker hosts (TCP, TLS, SSH) go through the SDK's own
        call."""
        if self._unix is None:
            return self._inspect_through_sdk(container_id)
        if not CONTAINER_REFERENCE.fullmatch(container_id):
            return None  # no container has such an ID or name
        path = f"/v{self._api.api_version}/containers/{container_id}/json"
        try:
            answer = self._unix.get_connection().urlopen(
                "GET",
                path,
                headers=self._headers,
                retries=False,
                redirect=False,
                timeout=self._timeout,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise DockerUnavailable(f"cannot inspect {container_id[:12]}: {brief(exc)}") from exc
        if answer.status == 404:
            return None
        try:
            result = json.loads(answer.data)
        except ValueError:
            result = None
        if answer.status != 200 or not isinstance(result, dict):
            raise DockerUnavailable(
                f"cannot inspect {container_id[:12]}: Docker answered {answer.status} "
                f"{_docker_message(result, answer.data)}"
            )
        return result

    def _inspect_through_sdk(self, container_id: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self._api.inspect_container(container_id)
            return result
        except docker.errors.NotFound:
            return None
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise DockerUnavailable(f"cannot inspect {container_id[:12]}: {brief(exc)}") from exc


def _configured_headers(api: Any) -> dict[str, str]:
    configured = getattr(api, "_general_configs", None) or {}
    headers = configured.get("HttpHeaders") if isinstance(configured, Mapping) else None
    return {str(k): str(v) for k, v in headers.items()} if isinstance(headers, Mapping) else {}


def _docker_message(answer: Any, raw: bytes) -> str:
    """The ``message`` of a Docker error answer, or the start of whatever it sent."""
    if isinstance(answer, Mapping) and isinstance(answer.get("message"), str):
        return str(answer["message"])[:200]
    return raw[:200].decode("utf-8", "replace") or "(no body)"


HEALTH_IN_STATUS = re.compile(r"\((healthy|unhealthy|health: starting)\)")


def fingerprint(summary: Mapping[str, Any]) -> str:
    """A digest of one list entry, leaving out its ever-changing uptime text."""
    health = HEALTH_IN_STATUS.search(str(summary.get("Status", "")))
    stable = {k: v for k, v in summary.items() if k not in ("Status", "Created")}
    stable["Health"] = health.group(1) if health else ""
    text = json.dumps(stable, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
