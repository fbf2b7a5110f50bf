"""The Podman tier: the real registrator process against Podman's Docker API (a private
``podman system service``, tests/podman_support.py) and the Consul double. Podman differs
from Docker in its events (a stop sends only ``die``, ``remove`` for ``destroy``, one bare
``health_status`` per probe), which these cases cover end to end."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from registrator.core.model import health_check_id
from tests.conftest import HOSTNAME, Registrator, wait_until
from tests.consul_double import ConsulDouble
from tests.podman_support import PodmanContainers, PodmanService, needs_podman

pytestmark = [pytest.mark.podman, pytest.mark.docker, needs_podman]

# Each of stop, kill and rm must reach Consul within this, from the podman command's return.
DEREGISTERED_WITHIN = 2.0
# A container that exits at once on SIGTERM, as a well-behaved service does.
GRACEFUL = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
HEALTH = ("--health-cmd", "[ -f /tmp/ok ]", "--health-interval", "1h", "--health-retries", "1")


def sid(name: str) -> str:
    return f"{HOSTNAME}:{name}:80"


def start(
    registrator: Callable[..., Registrator],
    consul: ConsulDouble,
    service: PodmanService,
    *flags: str,
) -> Registrator:
    proc = registrator(
        "-ip", "127.0.0.1", *flags, f"consul://127.0.0.1:{consul.port}",
        env={"DOCKER_HOST": service.host},
    )  # fmt: skip
    proc.wait_log("synced: ", timeout=30)
    return proc


def test_the_start_up_names_podman_and_registers_what_runs(
    registrator, consul, podman: PodmanContainers
):
    podman.run("early.0", "-p", "127.0.0.1::80")
    proc = start(registrator, consul, podman.service)
    version = podman("version", "--format", "{{.Server.Version}}")
    connected = proc.wait_log(r"connected to (\S+) (\S+) \(API ([0-9.]+)\) at (\S+)")
    assert connected.groups()[:2] == ("Podman", version)
    assert connected.group(4) == podman.service.host
    consul.wait_for(lambda s: sid("early.0") in s)

    podman.run("later.0", "-p", "127.0.0.1::80")
    services = consul.wait_for(lambda s: sid("later.0") in s)
    assert services[sid("later.0")]["Service"] == "busybox"
    assert services[sid("later.0")]["Address"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("how", "command"),
    [
        (["stop"], GRACEFUL),  # Podman sends only die
        (["kill"], "sleep 600"),  # a kill without a signal name, then die
        (["rm", "--force", "--time", "0"], "sleep 600"),  # die, then remove (Docker's destroy)
    ],
    ids=["stop", "kill", "rm"],
)
def test_stop_kill_and_rm_deregister_within_two_seconds(
    registrator, consul, podman: PodmanContainers, how: list[str], command: str | list[str]
):
    start(registrator, consul, podman.service)
    name = f"{how[0]}.0"
    podman.run(name, "-p", "127.0.0.1::80", command=command)
    consul.wait_for(lambda s: sid(name) in s)
    podman(*how, name)
    returned = time.monotonic()
    consul.wait_for(lambda s: sid(name) not in s, timeout=DEREGISTERED_WITHIN)
    print(f"\n{how[0]}: deregistered {time.monotonic() - returned:.3f}s after podman returned")


def test_drain_withholds_at_a_podman_kill_before_the_container_exits(
    registrator, consul, podman: PodmanContainers
):
    """Podman's kill events name no signal: with -drain one counts as a stop signal."""
    start(registrator, consul, podman.service, "-drain")
    slow_exit = ["sh", "-c", "trap 'sleep 5; exit 0' TERM; while :; do sleep 0.1; done"]
    podman.run("drain.0", "-p", "127.0.0.1::80", command=slow_exit)
    consul.wait_for(lambda s: sid("drain.0") in s)
    podman("kill", "--signal", "TERM", "drain.0")
    consul.wait_for(lambda s: sid("drain.0") not in s, timeout=DEREGISTERED_WITHIN)
    assert podman("inspect", "--format", "{{.State.Running}}", "drain.0") == "true"


def test_a_restart_of_the_podman_service_reconnects_and_lists_again(
    registrator, consul, podman: PodmanContainers
):
    proc = start(registrator, consul, podman.service)
    podman.run("before.0", "-p", "127.0.0.1::80")
    consul.wait_for(lambda s: sid("before.0") in s)

    podman.service.stop()  # the containers keep running (conmon watches them)
    proc.wait_log("Docker event stream ended|Docker unreachable")
    podman("rm", "--force", "--time", "0", "before.0")  # the podman command needs no service
    podman.run("during.0", "-p", "127.0.0.1::80")
    podman.service.start()

    proc.wait_log(r"Docker reachable again after [0-9.]+s; re-listing containers", timeout=15)
    consul.wait_for(lambda s: sid("during.0") in s and sid("before.0") not in s)


def _probe_until(podman: PodmanContainers, name: str, done: Callable[[], bool], what: str) -> None:
    """Run the container's health check until ``done()``: Podman runs none by itself here,
    and its health events name the state before the probe's (containers/podman #19237)."""

    def probed() -> bool:
        if done():
            return True
        podman.probe(name)
        return bool(done())

    wait_until(probed, timeout=20, what=what)


def test_health_events_drive_require_healthy(registrator, consul, podman: PodmanContainers):
    proc = start(registrator, consul, podman.service, "-require-healthy")
    podman.run("hc.0", "-p", "127.0.0.1::80", *HEALTH)
    proc.wait_log(r"hc\.0 \([0-9a-f]{12}\): services withheld: Docker health is starting")
    assert sid("hc.0") not in consul.services()

    podman("exec", "hc.0", "sh", "-c", "touch /tmp/ok")
    _probe_until(podman, "hc.0", lambda: sid("hc.0") in consul.services(), "registered")
    podman("exec", "hc.0", "sh", "-c", "rm /tmp/ok")
    _probe_until(podman, "hc.0", lambda: sid("hc.0") not in consul.services(), "withheld")
    proc.wait_log(r"hc\.0 \([0-9a-f]{12}\): services withheld: Docker health is unhealthy")


def test_health_events_drive_health_sync(registrator, consul, podman: PodmanContainers):
    proc = start(registrator, consul, podman.service, "-health-sync")
    podman.run(
        "hs.0", "-p", "127.0.0.1::80", *HEALTH, command=["sh", "-c", "touch /tmp/ok; sleep 600"]
    )
    health = health_check_id(sid("hs.0"))

    def status() -> str:
        return str(consul.checks().get(health, {}).get("Status", ""))

    consul.wait_for(lambda s: sid("hs.0") in s)
    _probe_until(podman, "hs.0", lambda: status() == "passing", "the check passing")
    podman("exec", "hs.0", "sh", "-c", "rm /tmp/ok")
    _probe_until(podman, "hs.0", lambda: status() == "critical", "the check critical")
    assert sid("hs.0") in consul.services()
    assert re.search(rf"check {re.escape(health)} critical", proc.logs())


def test_a_rename_moves_the_services_to_the_new_name(registrator, consul, podman: PodmanContainers):
    """Podman sends ``rename`` too; the service IDs carry the container's name."""
    start(registrator, consul, podman.service)
    podman.run("before.0", "-p", "127.0.0.1::80")
    consul.wait_for(lambda s: sid("before.0") in s)
    podman("rename", "before.0", "after.0")
    podman.names.append("after.0")
    consul.wait_for(lambda s: sid("after.0") in s and sid("before.0") not in s, timeout=10)


def test_pause_takes_the_services_out_and_unpause_brings_them_back(
    registrator, consul, podman: PodmanContainers
):
    """Podman sends pause and unpause too; each reaches Consul within a second of the
    command's return."""
    start(registrator, consul, podman.service)
    podman.run("paused.0", "-p", "127.0.0.1::80")
    consul.wait_for(lambda s: sid("paused.0") in s)
    podman("pause", "paused.0")
    consul.wait_for(lambda s: sid("paused.0") not in s, timeout=1.0)
    podman("unpause", "paused.0")
    consul.wait_for(lambda s: sid("paused.0") in s, timeout=1.0)
