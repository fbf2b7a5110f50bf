"""The Docker adapter's inspect, against the real engine: on the Unix socket it goes straight to
the SDK's connection pool and must answer exactly what the SDK's own call answers; over TCP
the SDK's call is used; a container that is gone (or cannot exist) is None, and a failing
daemon is a DockerUnavailable naming the container."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import socket
import socketserver
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registrator.adapters.docker_source import DockerSource, DockerUnavailable
from registrator.core.config import docker_host
from tests.conftest import Containers

ENGINE = docker_host(os.environ)


def test_inspect_on_the_unix_socket_answers_what_the_sdk_answers(
    containers: Containers, docker_client: Any
) -> None:
    name = f"src-{uuid.uuid4().hex[:6]}"
    cid = containers.run(name, "-e", "SERVICE_NAME=web", "--label", "team=a", "--expose", "80")
    source = DockerSource(os.environ, ENGINE)
    assert ENGINE.startswith("unix://")
    assert source.inspect(cid) == docker_client.api.inspect_container(cid)
    by_name = source.inspect(name)
    assert by_name is not None and by_name["Id"] == cid
    containers.rm(name)
    assert source.inspect(cid) is None


@pytest.mark.parametrize("reference", ["", "..", "a/b", "-x", f"nope-{uuid.uuid4().hex}"])
def test_inspect_of_what_no_container_can_be_is_none(reference: str) -> None:
    assert DockerSource(os.environ, ENGINE).inspect(reference) is None


class _Relay(socketserver.ThreadingTCPServer):
    """127.0.0.1:<port> -> the engine's Unix socket, byte for byte: Docker over TCP."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, unix_path: str) -> None:
        self.unix_path = unix_path
        super().__init__(("127.0.0.1", 0), _RelayHandler)


class _RelayHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        assert isinstance(self.server, _Relay)
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(self.server.unix_path)
        pump = threading.Thread(target=_pump, args=(upstream, self.request), daemon=True)
        pump.start()
        _pump(self.request, upstream)
        pump.join(10)
        upstream.close()


def _pump(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


def test_inspect_over_tcp_answers_what_the_unix_socket_answers(containers: Containers) -> None:
    name = f"src-{uuid.uuid4().hex[:6]}"
    cid = containers.run(name, "-e", "SERVICE_80_NAME=api", "--expose", "80")
    relay = _Relay(ENGINE.removeprefix("unix://"))
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    try:
        over_tcp = DockerSource({}, f"tcp://127.0.0.1:{relay.server_address[1]}")
        assert over_tcp.inspect(cid) == DockerSource(os.environ, ENGINE).inspect(cid)
        containers.rm(name)
        assert over_tcp.inspect(cid) is None
    finally:
        relay.shutdown()
        relay.server_close()


class _FailingDockerd(socketserver.ThreadingUnixStreamServer):
    """A daemon that answers its version and ends every event stream at once (as dockerd does
    when it shuts down), keeping the connection open, then fails every inspect the way
    ``fault`` says: ``500`` (Docker's error body), ``hangup`` (closes the connection
    unanswered), ``garbage`` (answers something other than HTTP) or ``hang`` (never
    answers)."""

    daemon_threads = True

    def __init__(self, path: str, fault: str) -> None:
        self.fault = fault
        self.released = threading.Event()  # ends the hung answers
        super().__init__(path, _FailingHandler)


class _FailingHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        assert isinstance(self.server, _FailingDockerd)
        if self.path.endswith("/version"):
            self._answer(200, {"ApiVersion": "1.41", "Version": "20.10.24"})
        elif "/events" in self.path:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"0\r\n\r\n")  # the stream's end; the connection stays open
        elif self.server.fault == "hang":
            self.server.released.wait()
            self.close_connection = True
        elif self.server.fault == "500":
            self._answer(500, {"message": "open /var/lib/docker/x/config.v2.json: input/output error"})  # fmt: skip
        elif self.server.fault == "garbage":  # not HTTP at all
            self.wfile.write(b"SSH-2.0-OpenSSH_9.2\r\n")
            self.close_connection = True
        else:
            self.close_connection = True

    def _answer(self, status: int, body: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def address_string(self) -> str:
        return "unix"

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def failing_dockerd(request: pytest.FixtureRequest) -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="rtest-failing-")
    path = str(Path(folder) / "docker.sock")
    server = _FailingDockerd(path, request.param)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"unix://{path}"
    finally:
        server.released.set()
        server.shutdown()
        server.server_close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize(
    ("failing_dockerd", "expected"),
    [
        ("500", "Docker answered 500 open /var/lib/docker/x/config.v2.json"),
        ("hangup", ""),
        ("garbage", "SSH-2.0"),
    ],
    indirect=["failing_dockerd"],
)
def test_a_failing_inspect_is_docker_unavailable_naming_the_container(
    failing_dockerd: str, expected: str
) -> None:
    source = DockerSource({}, failing_dockerd, timeout=5)
    for _ in range(2):  # and again on the connection that replaced the broken one
        with pytest.raises(DockerUnavailable, match="cannot inspect 0123456789ab: ") as raised:
            source.inspect("0123456789ab" * 5 + "cdef")
        assert expected in str(raised.value)


@pytest.mark.parametrize("failing_dockerd", ["hang"], indirect=True)
def test_an_inspect_times_out_even_on_a_connection_that_carried_the_event_stream(
    failing_dockerd: str,
) -> None:
    """The SDK reads the event stream with no timeout; once the stream has ended, its pool
    hands that connection to the next request, and an inspect on it must still give up after
    the adapter's timeout."""
    source = DockerSource({}, failing_dockerd, timeout=1)
    assert list(source.events()) == []
    outcome: list[BaseException] = []

    def inspect() -> None:
        try:
            source.inspect("0123456789ab" * 5 + "cdef")
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=inspect, daemon=True)
    worker.start()
    worker.join(15)
    assert not worker.is_alive(), "the inspect hung past its 1 s timeout"
    assert len(outcome) == 1 and isinstance(outcome[0], DockerUnavailable), outcome
    assert "cannot inspect 0123456789ab: " in str(outcome[0])
