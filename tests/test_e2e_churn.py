"""Issue 30: a crash-looping container must not churn Consul (nor the nginx consul-template
renders from it), and a paused one is out of traffic. The real process, the real engine and
the Consul double; judged by what the agent holds, the writes it got and the log.

"Changes of the passing list" are counted by replaying the agent's writes for the test's
services: none of them has a check, so a service is in ``/v1/health/service/NAME?passing``
exactly while it is registered, and each register of an ID not there and each deregister of
one there is one change of that list: one consul-template render, one nginx reload."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pytest
import requests

from tests.conftest import (
    DEREGISTER_PATH,
    HOSTNAME,
    REGISTER_PATH,
    SESSION_LABEL,
    ours_requests,
    run_cli,
    service_id_of,
    wait_until,
)
from tests.consul_double import ConsulDouble, RecordedRequest
from tests.test_e2e_health import docker_time_ns
from tests.test_e2e_operable import free_port

pytestmark = pytest.mark.docker

# Service names of this session alone: the hold counts the young deaths of every container
# sharing a service name on the engine, other sessions' included.
TAG = SESSION_LABEL.partition("=")[2]

WITHIN = 1.0  # pause out, unpause back, a docker restart registered again: seconds
HOLD = 10.0  # -flap-hold's default (these tests import nothing of registrator: they run
# against any version of it)


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


def run_number(containers: Any, name: str, restarts: int) -> dict[str, Any] | None:
    """The inspect of ``name`` once it runs after ``restarts`` restarts by its policy (not
    while it waits for the next one: Docker says Running then too)."""
    attrs: dict[str, Any] = containers.client.api.inspect_container(name)
    state = attrs["State"]
    running = state["Running"] and not state["Restarting"]
    return attrs if attrs["RestartCount"] == restarts and running else None


# --- the hold -------------------------------------------------------------------------------

OBSERVED = 60.0  # seconds, as the table
CRASH_SOON = ["sh", "-c", "sleep 0.3; exit 1"]  # dies 0.3 s after each start


def crash_then_up(crashes: int) -> list[str]:
    """Dies 0.3 s after each of its first ``crashes`` starts, then stays up (the container's
    file system, and the count in it, survive its restarts)."""
    return [
        "sh", "-c",
        "n=$(cat /n 2>/dev/null || echo 0); echo $((n + 1)) > /n; "
        f"if [ $n -lt {crashes} ]; then sleep 0.3; exit 1; fi; exec sleep 600",
    ]  # fmt: skip


def run_restarting(containers: Any, name: str, command: list[str]) -> None:
    """``name`` under --restart always, its service named after it (this session's own)."""
    containers.run(
        name, "--restart", "always", "-p", "127.0.0.1::80",
        "-e", f"SERVICE_NAME={name.partition('.')[0]}-{TAG}", command=command,
    )  # fmt: skip


def test_a_crash_loop_and_an_ecs_like_replacement_hold_within_the_targets(
    registrator, consul, containers
):
    """The issue's table, both loops side by side for 60 s: one container under --restart
    always dying 0.3 s after each start, and a new container of one service every 1.5 s,
    each dying 0.5 s after its start. At most 4 writes and 4 changes of the passing list for
    the first, 6 and 6 for the second; each held with one warning."""
    proc = start(registrator, consul)
    consul.clear_requests()
    began = time.monotonic()
    containers.run(
        "crash.0", "--restart", "always", "-p", "127.0.0.1::80", "-e", f"SERVICE_NAME=crashy-{TAG}",
        command=CRASH_SOON,
    )  # fmt: skip
    replaced: list[str] = []
    while time.monotonic() - began < OBSERVED - 1.5:
        name = f"ecs.{len(replaced)}"
        replaced.append(name)
        containers.run(
            name, "-p", "127.0.0.1::80", "-e", f"SERVICE_NAME=ecsy-{TAG}",
            command=["sh", "-c", "sleep 0.5; exit 1"],
        )  # fmt: skip
        due = began + 1.5 * len(replaced)
        wait_until(lambda: time.monotonic() >= due, 5, "the next replacement's time")  # noqa: B023
    wait_until(lambda: time.monotonic() - began >= OBSERVED, 5, "the end of the window")

    crash = service_writes(consul, ["crash.0"])
    ecs = service_writes(consul, replaced)
    restarts = containers.client.api.inspect_container("crash.0")["RestartCount"]
    print(
        f"\ncrash loop: {restarts} restarts, {len(crash)} writes, {passing_changes(crash)} "
        f"changes; replacement: {len(replaced)} containers, {len(ecs)} writes, "
        f"{passing_changes(ecs)} changes"
    )
    logs = proc.logs()
    assert restarts >= 5 and len(replaced) >= 30  # the loops did loop
    assert len(crash) <= 4 and passing_changes(crash) <= 4, logs
    assert len(ecs) <= 6 and passing_changes(ecs) <= 6, logs
    label = r"\([0-9a-f]{12}\): service"
    crash_held = rf"crash\.0 {label} crashy-{TAG} held out of Consul: \d+ restarts in a row"
    ecs_held = rf"ecs\.\d+ {label} ecsy-{TAG} held out of Consul: \d+ replacements \(ecs\."
    assert len(re.findall(crash_held, logs)) == 1, logs
    assert len(re.findall(ecs_held, logs)) == 1, logs


def test_a_container_that_crashed_4_times_then_stays_up_is_registered_after_the_hold(
    registrator, consul, containers
):
    """Held from its third start, its fifth one stays up: registered at most hold + 2 s after
    that start, and nothing written between; meanwhile plan and resync show it held."""
    proc = start(registrator, consul)
    consul.clear_requests()
    run_restarting(containers, "comeback.0", crash_then_up(4))
    service = sid("comeback.0")

    attrs = wait_until(lambda: run_number(containers, "comeback.0", 4), 30, "the fifth start")
    started = docker_time_ns(attrs["State"]["StartedAt"]) / 1e9
    uri = f"consul://127.0.0.1:{consul.port}"
    plan = run_cli("plan", "-ip", "127.0.0.1", uri)
    assert re.search(rf"^held\s+{re.escape(service)}\s", plan.stdout, re.M), plan.stdout
    resync = run_cli("resync", "-ip", "127.0.0.1", uri)
    assert re.search(rf"^held\s+{re.escape(service)}\b", resync.stdout, re.M), resync.stdout
    assert service not in consul.services()

    registered = write_after(consul, service, REGISTER_PATH, int(started * 1e9))
    delay = registered / 1e9 - started
    assert delay <= HOLD + 2, f"registered {delay:.2f}s after the start that stayed up"
    writes = service_writes(consul, ["comeback.0"])
    assert len(writes) <= 5 and passing_changes(writes) <= 5  # 2 runs, the hold, the release
    label = r"comeback\.0 \([0-9a-f]{12}\):"
    proc.wait_log(rf"{label} service comeback-{TAG} held out of Consul: 2 restarts")
    proc.wait_log(r"comeback\.0 \([0-9a-f]{12}\): up for [0-9.]+s; released: registering")


HELD_DETAIL = r"; registered once this start stays up 10s \(-flap-hold\), at \d\d:\d\d:\d\d UTC$"


def utc_seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_explain_and_the_daemons_view_say_held_and_until_when(registrator, consul, containers):
    """Issue 31's ``held``: while the third start of a container that crashed twice is held,
    the daemon's /containers and ``explain`` (from one inspect, as ``plan``) give the code
    ``held``, what was seen and the hold's end; once released, the service and its write."""
    port = free_port()
    start(registrator, consul, "-metrics-addr", f"127.0.0.1:{port}")
    run_restarting(containers, "heldview.0", crash_then_up(2))
    attrs = wait_until(lambda: run_number(containers, "heldview.0", 2), 30, "the third start")
    until = docker_time_ns(attrs["State"]["StartedAt"]) / 1e9 + HOLD

    def entry(verdict: str) -> dict[str, Any] | None:
        answer = requests.get(f"http://127.0.0.1:{port}/containers", timeout=5)
        found = [c for c in answer.json()["containers"] if c["name"] == "heldview.0"]
        return found[0] if found and found[0]["verdict"] == verdict else None

    daemon = wait_until(lambda: entry("withheld"), HOLD / 2, "heldview.0 held in /containers")
    metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    gauge = re.search(r"^registrator_held_containers (\S+)$", metrics, re.M)
    assert gauge and float(gauge[1]) >= 1, metrics  # other sessions' loops may be held too
    assert daemon["codes"] == ["held"], daemon
    assert re.match(r"2 restarts in a row, each dead within [0-9.]+s of its start; ",
                    daemon["reason"]["detail"])  # fmt: skip
    assert re.search(HELD_DETAIL, daemon["reason"]["detail"])
    assert abs(utc_seconds(daemon["held_until"]) - until) <= 1.0, daemon
    [held_port] = daemon["ports"]
    assert (held_port["reason"]["code"], held_port["service"], held_port["write"]) == (
        "held", None, None,
    )  # fmt: skip

    uri = f"consul://127.0.0.1:{consul.port}"
    result = run_cli("explain", "-json", "-ip", "127.0.0.1", uri, "heldview.0")
    [explained] = json.loads(result.stdout)["containers"]
    assert time.time() < until, "the hold ended before explain ran: the machine is too slow"
    assert (result.returncode, explained["reason"]["code"]) == (0, "held"), result.stdout
    assert explained["reason"]["detail"].startswith("restarted 2 times by its restart policy")
    assert abs(utc_seconds(explained["held_until"]) - until) <= 1.0
    assert explained["ports"][0]["reason"]["code"] == "held"
    text = run_cli("explain", "-ip", "127.0.0.1", uri, "heldview.0").stdout
    assert re.search(r"^  held: restarted 2 times by its restart policy, this run up ", text, re.M)

    released = wait_until(lambda: entry("wants"), HOLD + 10, "heldview.0 released")
    assert (released["codes"], released["held_until"], released["reason"]) == ([], None, None)
    service = sid("heldview.0")
    consul.wait_for(lambda services: service in services)
    after = run_cli("explain", "-json", "-ip", "127.0.0.1", uri, "heldview.0")
    [explained] = json.loads(after.stdout)["containers"]
    assert (after.returncode, explained["reason"], explained["held_until"]) == (0, None, None)
    assert explained["ports"][0]["agent"]["state"] == "in_step"


def test_a_docker_restart_and_a_single_crash_register_again_within_a_second(
    registrator, consul, containers, docker_client
):
    """The hold leaves alone what is not a crash loop: docker restart, three times in a few
    seconds (stops on purpose, not crashes), and a container that crashed once."""
    start(registrator, consul)
    containers.run("restarted.0", "-p", "127.0.0.1::80")
    service = sid("restarted.0")
    consul.wait_for(lambda s: service in s)
    for _ in range(3):
        since = time.time() - 1
        containers.client.api.restart("restarted.0", timeout=0)
        started = event_ns(docker_client, "restarted.0", "restart", since)
        again = write_after(consul, service, REGISTER_PATH, started - int(1e9))
        assert (again - started) / 1e9 < WITHIN

    run_restarting(containers, "once.0", crash_then_up(1))
    crashed = sid("once.0")

    attrs = wait_until(lambda: run_number(containers, "once.0", 1), 15, "the start after the crash")
    started_ns = docker_time_ns(attrs["State"]["StartedAt"])
    again = write_after(consul, crashed, REGISTER_PATH, started_ns)
    assert (again - started_ns) / 1e9 < WITHIN
