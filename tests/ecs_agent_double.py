"""An ECS agent introspection API double: a real HTTP server on 127.0.0.1 that answers like
the ECS agent's ``:51678`` API on a container instance.

Written from amazon-ecs-agent's source, not from what registrator sends:
``agent/handlers/v1/task_container_metadata_handler.go`` (the ``/v1/tasks`` handler: ``dockerid``
and ``taskarn`` both given -> 400 with an empty body; ``dockerid`` longer than 12 characters is
looked up exactly, else as a prefix of every container ID the agent knows, internal ones
included, and more than one match -> 400; not found -> 404 with an empty ``TaskResponse``;
neither -> ``{"Tasks": [...]}``), ``agent/handlers/v1/response.go`` (field names, ``omitempty``,
internal containers such as the pause container left out, ``HostPort`` = ``ContainerPort`` once
the task has an ENI, ``Networks`` only then, ``DesiredStatus`` left out when it contradicts
``KnownStatus``), ``agent/handlers/v1/agent_metadata_handler.go`` (``/v1/metadata``) and
``agent/handlers/introspection_server_setup.go`` (any other path: the list of commands).
The handler writes its JSON without a Content-Type, so Go sniffs ``text/plain; charset=utf-8``.
Go ranges over a map to list a task's containers: their order varies, and so it does here.

Tests drive it in-process: add tasks (with the real Docker IDs of the containers they started),
attach an ENI later, stop it (connection refused) and start it again on the same port, make it
slow, answer 404 or garbage, and read the requests it got.

Deliberate simplifications: ``Volumes`` are never reported; every task is "external" (listed by
``/v1/tasks``); ``/license`` answers a one-line text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import threading
import time
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.consul_double import TrackingServer

__all__ = ["DoubleContainer", "DoubleTask", "EcsAgentDouble", "EcsRequest"]

AGENT_VERSION = "Amazon ECS Agent - v1.89.0 (double)"
DOCKER_SHORT_ID_LEN = 12
TASKS_PATH = "/v1/tasks"
METADATA_PATH = "/v1/metadata"
LICENSE_PATH = "/license"
FAULTS = ("slow", "404", "garbage")
_SNIFFED_JSON = "text/plain; charset=utf-8"  # Go's DetectContentType of a JSON body
_JSON = "application/json"


@dataclasses.dataclass
class DoubleContainer:
    """One container of a task, as the agent knows it."""

    docker_id: str
    name: str  # the task definition's container name
    ports: Sequence[tuple[int, str]] = ()  # the task definition's (containerPort, protocol)
    docker_name: str = ""
    internal: bool = False  # the pause container: known by its ID, left out of answers
    host_ports: Sequence[int] = ()  # bridge mode: the host ports Docker bound, per port


@dataclasses.dataclass
class DoubleTask:
    arn: str
    family: str
    version: str
    containers: list[DoubleContainer]
    ipv4: list[str] = dataclasses.field(default_factory=list)  # the ENI; empty: none (yet)
    ipv6: list[str] = dataclasses.field(default_factory=list)
    known_status: str = "RUNNING"
    desired_status: str = "RUNNING"


@dataclasses.dataclass(frozen=True)
class EcsRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    status: int  # 0 when no answer was sent (stopped while slow)
    time: float  # time.monotonic() when it arrived


class _Server(TrackingServer):
    def __init__(self, port: int, double: EcsAgentDouble) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.double = double


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the request log instead."""

    def _serve(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.strip().isdigit():
            self.rfile.read(int(length))
        self.server.double._serve(self)

    def answer(self, status: int, body: bytes, content_type: str | None) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)

    # The agent's handlers do not look at the method.
    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve


def _go_json(value: Any) -> bytes:
    """Go's json.Marshal: compact, HTML characters escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(raw, escaped)
    return text.encode()


# An empty TaskResponse, as the agent marshals it for "not found" (nil Containers: null).
EMPTY_TASK = {"Arn": "", "KnownStatus": "", "Family": "", "Version": "", "Containers": None}


class EcsAgentDouble:
    """A fake ECS agent introspection API on 127.0.0.1; ``with EcsAgentDouble() as agent``."""

    def __init__(
        self,
        *,
        cluster: str = "test-cluster",
        container_instance_arn: str = (
            "arn:aws:ecs:eu-west-1:123456789012:container-instance/test-cluster/0123abcd"
        ),
        port: int = 0,
        slow_seconds: float = 5.0,
    ) -> None:
        self.cluster = cluster
        self.container_instance_arn = container_instance_arn
        self.port = port
        self.slow_seconds = slow_seconds
        self._cond = threading.Condition()
        self._tasks: dict[str, DoubleTask] = {}
        self._requests: list[EcsRequest] = []
        self._fault: tuple[str, bytes] | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._random = random.Random(51678)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> EcsAgentDouble:
        """Listen (again: on the same port after a stop) and serve from a daemon thread."""
        if self._server is not None:
            return self
        server = _Server(self.port, self)
        self.port = server.server_address[1]
        self._server = server
        self._thread = server.serve_in_thread(f"ecs-agent-double-{self.port}")
        return self

    def stop(self) -> None:
        """The agent goes away: the listener closes (connection refused) and open
        connections are cut; a slow answer in flight is never sent. Tasks are kept."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.close(thread)

    def __enter__(self) -> EcsAgentDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state -------------------------------------------------------------------------------

    def add_task(
        self,
        arn: str,
        containers: Iterable[DoubleContainer],
        *,
        family: str = "web",
        version: str = "1",
        ipv4: Iterable[str] = (),
        ipv6: Iterable[str] = (),
        known_status: str = "",
        desired_status: str = "RUNNING",
    ) -> DoubleTask:
        """A task the agent manages. Without ``ipv4`` or ``ipv6`` it has no ENI yet and is
        PENDING (unless ``known_status`` says otherwise)."""
        ipv4, ipv6 = list(ipv4), list(ipv6)
        task = DoubleTask(
            arn=arn,
            family=family,
            version=version,
            containers=list(containers),
            ipv4=ipv4,
            ipv6=ipv6,
            known_status=known_status or ("RUNNING" if ipv4 or ipv6 else "PENDING"),
            desired_status=desired_status,
        )
        for container in task.containers:
            if not container.docker_name:
                container.docker_name = f"ecs-{family}-{version}-{container.name}-{arn[-8:]}"
        with self._cond:
            self._tasks[arn] = task
        return task

    def attach_eni(self, arn: str, ipv4: Iterable[str], known_status: str = "RUNNING") -> None:
        """The CNI plugins attached the task's ENI: it now has addresses."""
        with self._cond:
            task = self._tasks[arn]
            task.ipv4 = list(ipv4)
            task.known_status = known_status

    def remove_task(self, arn: str) -> None:
        with self._cond:
            self._tasks.pop(arn, None)

    def fail(self, mode: str | None, body: str = "<html>502 Bad Gateway</html>") -> None:
        """None: answer normally. "slow": wait ``slow_seconds`` before answering /v1/tasks.
        "404": not found for every task lookup. "garbage": 200 with ``body`` (not the schema)."""
        if mode is not None and mode not in FAULTS:
            raise ValueError(f"mode must be None or one of {FAULTS}")
        with self._cond:
            self._fault = None if mode is None else (mode, body.encode())

    # -- recording ---------------------------------------------------------------------------

    def requests(self) -> list[EcsRequest]:
        with self._cond:
            return list(self._requests)

    def task_requests(self) -> list[EcsRequest]:
        """The requests to /v1/tasks (with or without a query)."""
        return [r for r in self.requests() if r.path == TASKS_PATH]

    def clear_requests(self) -> None:
        with self._cond:
            self._requests.clear()

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[EcsRequest]:
        """Wait until at least ``count`` requests to /v1/tasks have been answered."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                done = [r for r in self._requests if r.path == TASKS_PATH and r.status]
                if len(done) >= count:
                    return done
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{len(done)} of {count} /v1/tasks requests answered")
                self._cond.wait(remaining)

    # -- serving -----------------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        split = urlsplit(handler.path)
        query = parse_qs(split.query, keep_blank_values=True)
        arrived = time.monotonic()
        with self._cond:
            fault = self._fault
        slow = fault is not None and fault[0] == "slow" and split.path == TASKS_PATH
        if slow and handler.server.stopping.wait(self.slow_seconds):
            self._record(handler.command, split.path, query, 0, arrived)
            handler.close_connection = True
            return
        status, body, content_type = self._route(split.path, query, fault)
        self._record(handler.command, split.path, query, status, arrived)
        handler.answer(status, body, content_type)

    def _record(
        self, method: str, path: str, query: dict[str, list[str]], status: int, arrived: float
    ) -> None:
        with self._cond:
            self._requests.append(EcsRequest(method, path, query, status, arrived))
            self._cond.notify_all()

    def _route(
        self, path: str, query: dict[str, list[str]], fault: tuple[str, bytes] | None
    ) -> tuple[int, bytes, str | None]:
        if path == METADATA_PATH:
            body = {
                "Cluster": self.cluster,
                "ContainerInstanceArn": self.container_instance_arn,
                "Version": AGENT_VERSION,
            }
            return 200, _go_json(body), _JSON
        if path == LICENSE_PATH:
            return 200, b"Amazon Elastic Container Service Agent (double)\n", _SNIFFED_JSON
        if path != TASKS_PATH:
            commands = {"AvailableCommands": [METADATA_PATH, TASKS_PATH, LICENSE_PATH]}
            return 200, _go_json(commands), _SNIFFED_JSON
        if fault is not None and fault[0] == "garbage":
            return 200, fault[1], _SNIFFED_JSON
        not_found = (404, _go_json(EMPTY_TASK), _SNIFFED_JSON)
        has_docker_id, has_task_arn = "dockerid" in query, "taskarn" in query
        if has_docker_id and has_task_arn:
            return 400, b"", None
        with self._cond:
            if has_docker_id:
                docker_id = query["dockerid"][0]
                matches = self._tasks_by_container(docker_id)
                if len(matches) > 1:
                    return 400, b"", None
                if not matches or (fault is not None and fault[0] == "404"):
                    return not_found
                return 200, _go_json(self._task_response(matches[0])), _SNIFFED_JSON
            if has_task_arn:
                task = self._tasks.get(query["taskarn"][0])
                if task is None or (fault is not None and fault[0] == "404"):
                    return not_found
                return 200, _go_json(self._task_response(task)), _SNIFFED_JSON
            tasks = [self._task_response(t) for t in self._tasks.values()]
        return 200, _go_json({"Tasks": tasks}), _SNIFFED_JSON

    def _tasks_by_container(self, docker_id: str) -> list[DoubleTask]:
        """The agent's TaskByID (exact, for IDs longer than 12) or TaskByShortID (a prefix of
        every container ID it knows: one task per matching container)."""
        if len(docker_id) > DOCKER_SHORT_ID_LEN:
            return [
                t
                for t in self._tasks.values()
                if any(c.docker_id == docker_id for c in t.containers)
            ]
        return [
            task
            for task in self._tasks.values()
            for container in task.containers
            if container.docker_id.startswith(docker_id)
        ]

    def _task_response(self, task: DoubleTask) -> dict[str, Any]:
        has_eni = bool(task.ipv4 or task.ipv6)
        containers = [
            self._container_response(c, task, has_eni) for c in task.containers if not c.internal
        ]
        self._random.shuffle(containers)  # Go ranges over a map
        desired = task.desired_status
        if (task.known_status == "STOPPED" and desired != "STOPPED") or (
            task.known_status == "RUNNING" and desired == "PENDING"
        ):
            desired = ""
        body: dict[str, Any] = {"Arn": task.arn}
        if desired:
            body["DesiredStatus"] = desired
        body.update(
            KnownStatus=task.known_status,
            Family=task.family,
            Version=task.version,
            Containers=containers,
        )
        return body

    @staticmethod
    def _container_response(
        container: DoubleContainer, task: DoubleTask, has_eni: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "DockerId": container.docker_id,
            "DockerName": container.docker_name,
            "Name": container.name,
        }
        ports = []
        for n, (container_port, protocol) in enumerate(container.ports):
            port: dict[str, Any] = {"ContainerPort": container_port, "Protocol": protocol}
            host_port = container_port if has_eni else _at(container.host_ports, n)
            if host_port:
                port["HostPort"] = host_port
            ports.append(port)
        if ports:
            body["Ports"] = ports
        if has_eni:
            network: dict[str, Any] = {"NetworkMode": "awsvpc"}
            if task.ipv4:
                network["IPv4Addresses"] = list(task.ipv4)
            if task.ipv6:
                network["IPv6Addresses"] = list(task.ipv6)
            body["Networks"] = [network]
        return body


def _at(values: Sequence[int], index: int) -> int:
    return values[index] if index < len(values) else 0
