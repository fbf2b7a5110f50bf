"""The daemon wired as in production (informer, work queue, records, sync loop) against a fake
Docker source and the Consul double: no Docker engine needed."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from typing import Any, cast

import pytest

from registrator.adapters.docker_source import ContainerEvent, DockerSource, Engine
from registrator.app.cli import parse_config
from registrator.app.daemon import Daemon
from registrator.core.derive import DeriveOptions
from registrator.sync.agent_sync import AgentSync
from registrator.sync.processing import ContainerProcessor
from registrator.sync.records import Records
from tests.conftest import wait_until
from tests.consul_double import ConsulDouble
from tests.inspect_data import inspect
from tests.test_reconcile import agent_for

HOST = "host1"


def container_id(n: int) -> str:
    return f"{n:012d}" + "c" * 52


def web(n: int, port: str = "8080") -> dict[str, Any]:
    return inspect(name=f"web.{n}", published={"80/tcp": port}, container_id=container_id(n))


def sid(n: int) -> str:
    return f"{HOST}:web.{n}:80"


class FakeStream:
    """An event subscription: iterating blocks until an event comes or the stream ends."""

    def __init__(self) -> None:
        self._events: queue.Queue[ContainerEvent | None] = queue.Queue()

    def __iter__(self) -> Iterator[ContainerEvent]:
        while (event := self._events.get()) is not None:
            yield event

    def put(self, event: ContainerEvent) -> None:
        self._events.put(event)

    def close(self) -> None:
        self._events.put(None)


class FakeDocker:
    """The containers of a Docker engine and its event stream, changed by the test."""

    engine = Engine("Docker", "test", "1.41")
    base_url = "fake://docker"

    def __init__(self, *containers: dict[str, Any]) -> None:
        self.containers = {str(c["Id"]): c for c in containers}
        self.streams: list[FakeStream] = []
        self.subscribed = threading.Event()
        self._time = 1_000_000_000

    # --- what the daemon calls -----------------------------------------------------------

    def events(self, since: float | None = None) -> FakeStream:
        stream = FakeStream()
        self.streams.append(stream)
        self.subscribed.set()
        return stream

    def container_ids(self) -> list[str]:
        return [cid for cid, c in self.containers.items() if c["State"]["Running"]]

    def running_fingerprints(self) -> dict[str, str]:
        return {
            cid: json.dumps(self.containers[cid], sort_keys=True) for cid in self.container_ids()
        }

    def inspect(self, cid: str) -> dict[str, Any] | None:
        return self.containers.get(cid)

    # --- what the test does --------------------------------------------------------------

    def emit(self, action: str, cid: str, **attributes: str) -> None:
        self._time += 1_000_000
        self.streams[-1].put(ContainerEvent(action, cid, "", self._time, attributes))

    def start(self, container: dict[str, Any], event: bool = True) -> None:
        self.containers[str(container["Id"])] = container
        if event:
            self.emit("start", str(container["Id"]))

    def die(self, cid: str, code: int = 0) -> None:
        self.containers[cid]["State"].update(Running=False, ExitCode=code)
        self.emit("die", cid, exitCode=str(code))

    def destroy(self, cid: str) -> None:
        del self.containers[cid]
        self.emit("destroy", cid)


def config(port: int, *flags: str) -> Any:
    return parse_config(
        ["-agent-poll", "0.2", *flags, f"consul://127.0.0.1:{port}"], {}, hostname=HOST
    )[1]


@pytest.fixture
def double() -> Iterator[ConsulDouble]:
    with ConsulDouble() as running:
        yield running


def start_daemon(
    double: ConsulDouble, docker: FakeDocker, *flags: str, records: Records | None = None
) -> Daemon:
    conf = config(double.port, *flags)
    agent_sync = AgentSync(agent_for(double), HOST, metrics=None, poll=conf.agent_poll)
    processor = ContainerProcessor(DeriveOptions(hostname=HOST, host_ip="10.0.0.7"), "always")
    daemon = Daemon(conf, processor, agent_sync, lambda: cast(DockerSource, docker), None, records)
    daemon.start()
    return daemon


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()


def registered(double: ConsulDouble) -> set[str]:
    return set(double.services())


def wait_for_services(double: ConsulDouble, expected: set[str]) -> None:
    wait_until(lambda: registered(double) == expected, 10, f"services {sorted(expected)}")


def test_start_up_registers_every_running_container_then_writes_nothing_at_rest(double, daemons):
    docker = FakeDocker(web(1), web(2), inspect(name="plain", container_id=container_id(3)))
    daemons.append(daemon := start_daemon(double, docker))
    wait_until(daemon.synced.is_set, 10, "synced")
    assert registered(double) == {sid(1), sid(2)}
    double.clear_requests()
    reads = lambda: sum(r.path == "/v1/agent/services" for r in double.requests())  # noqa: E731
    wait_until(lambda: reads() >= 3, 10, "three comparisons with the agent")
    assert double.writes() == []


def test_assessments_are_kept_only_when_served(double, daemons):
    """/containers (with -metrics-addr) shows each container's last assessment; without it
    nobody can ask for one, and none is kept."""
    docker = FakeDocker(web(1), inspect(name="plain", container_id=container_id(3)))
    for keep, shown in ((True, ["plain", "web.1"]), (False, [])):
        daemons.append(daemon := start_daemon(double, docker, records=Records(keep)))
        wait_until(daemon.synced.is_set, 10, "synced")
        view = daemon.containers_view()
        assert [entry["name"] for entry in view["containers"]] == shown
        assert view["consul_reachable"] is True


def test_start_die_and_destroy_follow_the_events(double, daemons):
    docker = FakeDocker()
    daemons.append(daemon := start_daemon(double, docker))
    wait_until(daemon.synced.is_set, 10, "synced")
    docker.start(web(1))
    wait_for_services(double, {sid(1)})
    docker.die(container_id(1))
    wait_for_services(double, set())
    docker.containers[container_id(1)]["State"]["Running"] = True
    docker.emit("start", container_id(1))
    wait_for_services(double, {sid(1)})
    docker.destroy(container_id(1))
    wait_for_services(double, set())


def test_a_reconnect_lists_again_and_applies_what_the_events_missed(double, daemons):
    docker = FakeDocker(web(1))
    daemons.append(daemon := start_daemon(double, docker))
    wait_until(daemon.synced.is_set, 10, "synced")
    assert registered(double) == {sid(1)}
    docker.subscribed.clear()
    docker.streams[-1].close()  # dockerd restarting: the stream ends
    del docker.containers[container_id(1)]  # gone meanwhile, and another one started,
    docker.start(web(2), event=False)  # both unseen by any event
    wait_until(docker.subscribed.is_set, 10, "a new subscription")
    wait_for_services(double, {sid(2)})


def test_a_periodic_resync_finds_what_no_event_said(double, daemons):
    docker = FakeDocker(web(1))
    daemons.append(daemon := start_daemon(double, docker, "-resync", "0.3"))
    wait_until(daemon.synced.is_set, 10, "synced")
    docker.start(web(2), event=False)
    wait_for_services(double, {sid(1), sid(2)})
    docker.containers[container_id(1)] = web(1, port="9090")  # changed without an event
    wait_until(lambda: double.services()[sid(1)]["Port"] == 9090, 10, "port 9090")


def test_a_stop_signal_drains_and_a_survivor_comes_back(double, daemons):
    docker = FakeDocker(web(1))
    daemons.append(daemon := start_daemon(double, docker, "-drain", "-drain-grace", "0.5"))
    wait_until(daemon.synced.is_set, 10, "synced")
    docker.emit("kill", container_id(1), signal="15")
    wait_for_services(double, set())  # withheld at the signal, before the exit
    wait_for_services(double, {sid(1)})  # still running after the grace: registered again


def test_events_of_one_container_apply_in_order(double, daemons):
    docker = FakeDocker()
    daemons.append(daemon := start_daemon(double, docker))
    wait_until(daemon.synced.is_set, 10, "synced")
    for port in ("8081", "8082", "8083"):
        docker.start(web(1, port=port))
    wait_until(lambda: double.services().get(sid(1), {}).get("Port") == 8083, 10, "port 8083")
    docker.destroy(container_id(1))
    wait_for_services(double, set())
