"""Issue 30: a crash-looping container must not churn Consul (nor the nginx consul-template
renders from it), and a paused one is out of traffic. The real process, the real engine and
the Consul double; judged by what the agent holds, the writes it got and the log.

"Changes of the passing list" are counted by replaying the agent's writes for the test's
services: none of them has a check, so a service is in ``/v1/health/service/NAME?passing``
exactly while it is registered, and each register of an ID not there and each deregister of
one there is one change of that list: one consul-template render, one nginx reload."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import pytest

from tests.conftest import (
    DEREGISTER_PATH,
    HOSTNAME,
    REGISTER_PATH,
    ours_requests,
    service_id_of,
    wait_until,
)
from tests.consul_double import ConsulDouble, RecordedRequest

pytestmark = pytest.mark.docker

WITHIN = 1.0  # pause out, unpause back, a docker restart registered again: seconds


def sid(name: str, port: int = 80) -> str:
    return f"{HOSTNAME}:{name}:{port}"


def start(registrator, consul, *flags: str):
    proc = registrator("-ip", "127.0.0.1", *flags, f"consul://127.0.0.1:{consul.port}")
    proc.wait_log("synced: ", timeout=30)
    return proc


def service_writes(consul: ConsulDouble, names: Iterable[str]) -> list[RecordedRequest]:
    """The registers and deregisters of the services of the containers named ``names``."""
    names = list(names)
    return [
        r
        for r in ours_requests(consul.writes(), names)
        if (r.path == REGISTER_PATH or r.path.startswith(DEREGISTER_PATH))
        and service_id_of(r) is not None
        and (service_id_of(r) or "").split(":")[1:2] != []
        and (service_id_of(r) or "").split(":")[1] in names
    ]


def passing_changes(writes: Iterable[RecordedRequest]) -> int:
    """How many times the passing list of those services changed, write by write."""
    present: set[str] = set()
    changes = 0
    for write in writes:
        service_id = service_id_of(write) or ""
        if write.status != 200:
            continue
        if write.path == REGISTER_PATH and service_id not in present:
            present.add(service_id)
            changes += 1
        elif write.path.startswith(DEREGISTER_PATH) and service_id in present:
            present.discard(service_id)
            changes += 1
    return changes


def event_ns(docker_client: Any, name: str, action: str, since: float) -> int:
    """The time (ns) of the engine's newest ``action`` event of container ``name`` since
    ``since`` (Unix seconds); waits until the engine has sent it."""

    def newest() -> int:
        events = docker_client.events(
            since=int(since), until=int(time.time()) + 1, decode=True,
            filters={"container": name, "event": action},
        )  # fmt: skip
        stamps = [e.get("timeNano", 0) for e in events]
        return max(stamps, default=0)

    return int(wait_until(newest, 10, f"the {action} event of {name}"))


def write_after(consul: ConsulDouble, service_id: str, path: str, after_ns: int) -> int:
    """The arrival (ns) of the first write to ``path`` about ``service_id`` after ``after_ns``."""

    def first() -> int:
        return min(
            (
                r.wall_ns
                for r in consul.writes()
                if r.wall_ns > after_ns
                and r.path.startswith(path)
                and service_id_of(r) == service_id
            ),
            default=0,
        )

    return int(wait_until(first, 15, f"a write to {path} for {service_id}"))


# --- pause --------------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [(), ("-health-sync",)], ids=["plain", "health-sync"])
def test_a_paused_container_is_out_within_a_second_and_back_within_a_second(
    registrator, consul, containers, docker_client, flags
):
    start(registrator, consul, *flags)
    containers.run("paused.0", "-p", "127.0.0.1::80")
    service = sid("paused.0")
    consul.wait_for(lambda s: service in s)
    since = time.time() - 1

    containers.client.api.pause("paused.0")
    paused = event_ns(docker_client, "paused.0", "pause", since)
    gone = write_after(consul, service, DEREGISTER_PATH, paused)
    assert (gone - paused) / 1e9 < WITHIN
    consul.wait_for(lambda s: service not in s, timeout=WITHIN)

    containers.client.api.unpause("paused.0")
    unpaused = event_ns(docker_client, "paused.0", "unpause", since)
    back = write_after(consul, service, REGISTER_PATH, unpaused)
    assert (back - unpaused) / 1e9 < WITHIN
    consul.wait_for(lambda s: service in s, timeout=WITHIN)
