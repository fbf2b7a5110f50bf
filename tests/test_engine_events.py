"""Docker's and Podman's events, as recorded from Docker 20.10 and Podman 4.3's compat API,
become the same ``ContainerEvent``s; only the watched ones come out of the stream; a health
event naming the state the last one named is not queued (Podman sends one per probe); the
engine is named from its ``/version``."""

from __future__ import annotations

from typing import Any

import pytest

from registrator.adapters.docker_source import ContainerEvent, EventStream, engine_of, parse_event
from registrator.app.daemon import asks_to_stop
from registrator.sync.records import Records

CID = "e2eb6398867afd5accbebc451a0f3d28525f69362f540bed094d48f213b596e3"


def docker_event(action: str, **attributes: str) -> dict[str, Any]:
    """Docker 20.10's shape (it also sends the deprecated status/id/from)."""
    return {
        "status": action, "id": CID, "from": "rtest/busybox:latest",
        "Type": "container", "Action": action,
        "Actor": {"ID": CID, "Attributes": {"image": "rtest/busybox:latest", "name": "web.0",
                                            **attributes}},
        "scope": "local", "time": 1796511511, "timeNano": 1796511511761284773,
    }  # fmt: skip


def podman_event(action: str, health: str | None = None, **attributes: str) -> dict[str, Any]:
    """Podman 4.3's compat API: every attribute set carries containerExitCode and podId, and a
    health event carries its state at the top level."""
    event = {
        "status": action, "id": CID, "from": "localhost/rtest/busybox:latest",
        "Type": "container", "Action": action,
        "Actor": {"ID": CID, "Attributes": {
            "containerExitCode": "0", "image": "localhost/rtest/busybox:latest",
            "name": "web.0", "podId": "", **attributes,
        }},
        "scope": "local", "time": 1796511511, "timeNano": 1796511511761284773,
    }  # fmt: skip
    if health is not None:
        event["HealthStatus"] = health
    return event


@pytest.mark.parametrize(
    ("raw", "action", "health"),
    [
        (docker_event("start"), "start", ""),
        (docker_event("destroy"), "destroy", ""),
        (docker_event("health_status: healthy"), "health_status: healthy", "healthy"),
        (docker_event("health_status: unhealthy"), "health_status: unhealthy", "unhealthy"),
        (podman_event("start"), "start", ""),
        (podman_event("remove"), "destroy", ""),
        (podman_event("died", exitCode="0"), "die", ""),  # libpod's own name
        (podman_event("health_status", "healthy"), "health_status: healthy", "healthy"),
        (podman_event("health_status", "starting"), "health_status: starting", "starting"),
        (podman_event("health_status"), "health_status", ""),  # no state: queued as a change
    ],
)
def test_both_engines_events_read_as_dockers(raw: dict[str, Any], action: str, health: str):
    event = parse_event(raw)
    assert event is not None
    assert (event.action, event.health, event.container_id, event.name) == (
        action,
        health,
        CID,
        "web.0",
    )
    assert event.time_nano == 1796511511761284773


def test_a_podman_die_keeps_its_exit_code_and_a_kill_names_no_signal():
    die = parse_event(podman_event("die", containerExitCode="137", exitCode="137"))
    kill = parse_event(podman_event("kill"))
    assert die is not None and die.attributes["exitCode"] == "137"
    assert kill is not None and "signal" not in kill.attributes
    assert asks_to_stop(kill)  # Podman's default signal is SIGKILL


@pytest.mark.parametrize(("signal", "stops"), [("15", True), ("SIGKILL", True), ("1", False)])
def test_a_docker_kill_asks_to_stop_by_its_signal(signal: str, stops: bool):
    event = parse_event(docker_event("kill", signal=signal))
    assert event is not None and asks_to_stop(event) is stops


def test_the_stream_lets_through_only_the_watched_actions():
    """Podman's filter matches neither die nor remove, so the daemon asks it for every
    container event (create, init, cleanup, exec_died, one health_status per probe...)."""
    raw = [
        podman_event(action)
        for action in ("create", "init", "start", "exec_died", "cleanup", "remove", "pull")
    ]
    raw.insert(3, podman_event("health_status", "healthy"))
    raw.append({**podman_event("pull"), "Type": "image"})
    seen = [event.action for event in EventStream(iter(raw))]
    assert seen == ["start", "health_status: healthy", "destroy"]


def health(state: str) -> ContainerEvent:
    event = parse_event(podman_event("health_status", state))
    assert event is not None
    return event


def test_a_health_event_is_queued_only_when_its_state_changes():
    records = Records()
    queued = [records.event(health(state)) for state in ("starting", "starting", "healthy")]
    queued += [records.event(health("healthy")) for _ in range(5)]  # one per probe
    queued.append(records.event(health("unhealthy")))
    assert queued == [True, False, True, False, False, False, False, False, True]


def test_a_new_run_starts_its_health_over():
    records = Records()
    assert records.event(health("healthy"))
    for action in ("die", "start"):
        event = parse_event(podman_event(action))
        assert event is not None and records.event(event)
    assert records.event(health("healthy"))  # the new run's first health event
    records.take(CID)
    records.drop(CID)  # gone: forgotten with the rest of its record
    assert records.event(health("healthy"))


DOCKER_VERSION = {
    "Platform": {"Name": ""},
    "Components": [
        {"Name": "Engine", "Version": "20.10.24+dfsg1", "Details": {"ApiVersion": "1.41"}},
        {"Name": "containerd", "Version": "1.6.20~ds1"},
    ],
    "Version": "20.10.24+dfsg1",
    "ApiVersion": "1.41",
}
PODMAN_VERSION = {
    "Platform": {"Name": "linux/amd64/debian-12"},
    "Components": [
        {"Name": "Podman Engine", "Version": "4.3.1", "Details": {"APIVersion": "4.3.1"}},
        {"Name": "Conmon", "Version": "conmon version 2.1.6, commit: unknown"},
    ],
    "Version": "4.3.1",
    "ApiVersion": "1.41",
}


@pytest.mark.parametrize(
    ("answer", "described", "docker"),
    [
        (DOCKER_VERSION, "Docker 20.10.24+dfsg1 (API 1.41)", True),
        (PODMAN_VERSION, "Podman 4.3.1 (API 1.41)", False),
        (
            {"ApiVersion": "1.41", "Version": "20.10.24"},
            "unknown engine 20.10.24 (API 1.41)",
            False,
        ),
        (
            {"ApiVersion": "1.41", "Components": "x"},
            "unknown engine (no version) (API 1.41)",
            False,
        ),
    ],
)
def test_the_engine_is_named_from_its_version(answer: dict[str, Any], described: str, docker: bool):
    engine = engine_of(answer, "1.41")
    assert (str(engine), engine.docker) == (described, docker)
