"""Thin adapter over the ECS agent's introspection API: what an awsvpc task's container is.

``GET {uri}/v1/tasks?dockerid=<full container ID>`` answers the container's task (schema:
amazon-ecs-agent ``agent/handlers/v1/response.go``), which lists every container of the task
with its Docker ID, port mappings and the task ENI's addresses. Answers are validated into
plain values (``EcsTask``), or an ``EcsAgentError`` says what went wrong; nothing here knows
Docker or Consul.

One request serves a whole task: a task is cached by its ARN (the ``com.amazonaws.ecs.task-arn``
label every container carries, so the second container of a task is answered without asking),
until the caller ``forget``s it, and concurrent asks for one task share one request.

Standard library only (``http.client``: no proxy is ever used; the API is on the instance's
loopback), one short-lived connection per request, a bounded timeout.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import Callable, Mapping
from http.client import HTTPConnection, HTTPException
from typing import Any, NamedTuple
from urllib.parse import quote

from registrator.core.config import parse_ecs_agent_uri
from registrator.core.ecs_rules import AwsvpcNetwork

TASKS_PATH = "/v1/tasks"
DEFAULT_TIMEOUT = 2.0
MAX_ANSWER_BYTES = 4 << 20  # a task of ten containers answers in about 5 kB
PROTOCOLS = frozenset({"tcp", "udp"})


class EcsAgentError(Exception):
    """The ECS agent could not say where an awsvpc container answers. ``answered`` tells
    whether the agent answered at all (for its reachability); ``reason`` labels the metric."""

    answered = True
    reason = "ecs_rejected"


class EcsAgentUnavailable(EcsAgentError):
    """No answer: connection refused or broken (the agent is down or restarting)."""

    answered = False
    reason = "ecs_unavailable"


class EcsAgentTimeout(EcsAgentUnavailable):
    """No answer within the timeout."""


class EcsTaskNotFound(EcsAgentError):
    """404: the agent knows no task with this container (yet)."""


class EcsBadAnswer(EcsAgentError):
    """An answer that is not the documented shape, or a status the API does not document."""


class EcsNoAddressYet(EcsAgentError):
    """The task is known but its ENI is not attached yet (``Networks`` left out)."""


class EcsContainer(NamedTuple):
    docker_id: str
    name: str
    ports: tuple[tuple[int, str], ...] = ()
    ipv4_addresses: tuple[str, ...] = ()
    ipv6_addresses: tuple[str, ...] = ()


class EcsTask(NamedTuple):
    arn: str
    known_status: str
    family: str = ""
    version: str = ""
    containers: tuple[EcsContainer, ...] = ()

    def container(self, docker_id: str) -> EcsContainer | None:
        return next((c for c in self.containers if c.docker_id == docker_id), None)

    def network(self, docker_id: str) -> AwsvpcNetwork:
        """Where this container of the task answers; raises when the agent cannot say yet.

        A task still PENDING (the agent's backend status until all its containers run) may
        not have its ENI yet: ask again later. A RUNNING or STOPPED one without an ENI will
        not get one (an ECS task in network mode ``none``): no addresses, nothing to register.
        The ENI's IPv6 addresses are given only when it has no IPv4 one (an IPv6-only task).
        """
        container = self.container(docker_id)
        if container is None:
            raise EcsBadAnswer(f"the agent's task {self.arn} does not list this container")
        addressed = container.ipv4_addresses or container.ipv6_addresses
        if not addressed and self.known_status in ("", "PENDING"):
            raise EcsNoAddressYet(
                f"task {self.arn} has no ENI address yet (KnownStatus {self.known_status or '-'})"
            )
        ipv6_only = () if container.ipv4_addresses else container.ipv6_addresses
        return AwsvpcNetwork(container.ipv4_addresses, container.ports, ipv6_only)


def parse_task(body: Any) -> EcsTask:
    """A ``TaskResponse`` as the agent marshals it, validated; raises EcsBadAnswer."""
    task = _object(body, "the answer")
    arn = _string(task, "Arn", "the task", required=True)
    containers = task.get("Containers")
    if not isinstance(containers, list):
        raise EcsBadAnswer("the task's Containers is not a list")
    return EcsTask(
        arn=arn,
        known_status=_string(task, "KnownStatus", "the task"),
        family=_string(task, "Family", "the task"),
        version=_string(task, "Version", "the task"),
        containers=tuple(_container(item) for item in containers),
    )


def _container(item: Any) -> EcsContainer:
    container = _object(item, "a container")
    docker_id = _string(container, "DockerId", "a container")
    where = f"container {docker_id[:12] or '?'}"
    ports: list[tuple[int, str]] = []
    for raw in _list(container, "Ports", where):
        port = _object(raw, f"a port of {where}")
        number = port.get("ContainerPort")
        if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 65536:
            raise EcsBadAnswer(f"{where}: ContainerPort {number!r} is not a port number")
        protocol = _string(port, "Protocol", where) or "tcp"
        if protocol not in PROTOCOLS:
            raise EcsBadAnswer(f"{where}: port {number} has protocol {protocol!r}")
        ports.append((number, protocol))
    addresses: dict[int, list[str]] = {4: [], 6: []}
    for raw in _list(container, "Networks", where):
        network = _object(raw, f"a network of {where}")
        for version, found in addresses.items():
            for address in _list(network, f"IPv{version}Addresses", where):
                if not _is_ip(address, version):
                    raise EcsBadAnswer(f"{where}: {address!r} is not an IPv{version} address")
                found.append(address)
    return EcsContainer(
        docker_id=docker_id,
        name=_string(container, "Name", where),
        ports=tuple(ports),
        ipv4_addresses=tuple(addresses[4]),
        ipv6_addresses=tuple(addresses[6]),
    )


def _is_ip(value: Any, version: int) -> bool:
    if not isinstance(value, str) or "%" in value:
        return False
    try:
        return ipaddress.ip_address(value).version == version
    except ValueError:
        return False


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise EcsBadAnswer(f"{what} is not a JSON object")
    return value


def _string(obj: Mapping[str, Any], key: str, where: str, required: bool = False) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise EcsBadAnswer(f"{where}: {key} {value!r} is not a non-empty string")
    return value


def _list(obj: Mapping[str, Any], key: str, where: str) -> list[Any]:
    """A list the agent leaves out when empty (``omitempty``)."""
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise EcsBadAnswer(f"{where}: {key} is not a list")
    return value


class _Flight:
    """One request for a task, shared by the callers that asked while it was in flight."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.task: EcsTask | None = None
        self.error: EcsAgentError | None = None


class EcsAgent:
    """The ECS agent's introspection API, as registrator reads it.

    ``observer`` is called after every request with None (it answered usefully) or the
    error: the daemon counts failures and the agent's reachability from it.
    """

    def __init__(
        self,
        uri: str,
        timeout: float = DEFAULT_TIMEOUT,
        observer: Callable[[EcsAgentError | None], None] | None = None,
    ) -> None:
        self.uri = uri.rstrip("/")
        self.host, self.port = parse_ecs_agent_uri(uri)
        self.timeout = timeout
        self._observer = observer
        self._lock = threading.Lock()
        self._tasks: dict[str, EcsTask] = {}
        self._flights: dict[str, _Flight] = {}

    def network(self, task_arn: str, docker_id: str) -> AwsvpcNetwork:
        """Where the container ``docker_id`` of the task ``task_arn`` (its label) answers.

        Served from the cache when the cached task lists the container; otherwise one
        request, shared with whoever asks for the same task meanwhile. A task is cached only
        once it has its ENI address. Raises EcsAgentError.
        """
        while True:
            with self._lock:
                cached = self._tasks.get(task_arn)
                if cached is not None and cached.container(docker_id) is not None:
                    return cached.network(docker_id)
                flight = self._flights.get(task_arn)
                leading = flight is None
                if flight is None:
                    flight = self._flights[task_arn] = _Flight()
            if leading:
                return self._lead(flight, task_arn, docker_id)
            flight.done.wait()
            if flight.error is not None and not flight.error.answered:
                raise flight.error  # the agent is down for everyone
            if flight.task is not None and flight.task.container(docker_id) is not None:
                return flight.task.network(docker_id)
            # The shared answer does not cover this container: ask for it ourselves.

    def _lead(self, flight: _Flight, task_arn: str, docker_id: str) -> AwsvpcNetwork:
        try:
            task = self.task_of(docker_id)
            if task.arn != task_arn:
                raise EcsBadAnswer(
                    f"the agent puts this container in task {task.arn}, its label says {task_arn}"
                )
            flight.task = task
            network = task.network(docker_id)
            with self._lock:
                self._tasks[task_arn] = task
            return network
        except EcsAgentError as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                self._flights.pop(task_arn, None)
            flight.done.set()

    def forget(self, task_arn: str) -> None:
        """The task's containers are gone: drop it from the cache."""
        with self._lock:
            self._tasks.pop(task_arn, None)

    def task_of(self, docker_id: str) -> EcsTask:
        """One request: the task of the container with this (full) Docker ID; no cache."""
        try:
            status, body = self._get(f"{TASKS_PATH}?dockerid={quote(docker_id, safe='')}")
            if status == 404:
                raise EcsTaskNotFound("the ECS agent knows no task with this container (404)")
            if status != 200:
                raise EcsBadAnswer(f"the ECS agent answered HTTP {status}")
            try:
                parsed = json.loads(body)
            except ValueError:
                raise EcsBadAnswer(f"the ECS agent's answer is not JSON: {body[:60]!r}") from None
            task = parse_task(parsed)
        except EcsAgentError as exc:
            self._observe(exc)
            raise
        self._observe(None)
        return task

    def _observe(self, error: EcsAgentError | None) -> None:
        if self._observer is not None:
            self._observer(error)

    def _get(self, path: str) -> tuple[int, bytes]:
        connection = HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.request("GET", path, headers={"Accept": "application/json"})
            response = connection.getresponse()
            body = response.read(MAX_ANSWER_BYTES + 1)
        except TimeoutError:
            raise EcsAgentTimeout(
                f"the ECS agent at {self.uri} did not answer within {self.timeout:g}s"
            ) from None
        except (OSError, HTTPException) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise EcsAgentUnavailable(
                f"the ECS agent at {self.uri} is unreachable: {reason}"
            ) from None
        finally:
            connection.close()
        if len(body) > MAX_ANSWER_BYTES:
            raise EcsBadAnswer(f"the ECS agent's answer is over {MAX_ANSWER_BYTES} bytes")
        return response.status, body
