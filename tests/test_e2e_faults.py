"""Fault injection: Consul down, restarted empty, failing and hanging; Docker restarted;
bursts and containers killed mid-registration. The real process, engine and double."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import (
    HOSTNAME,
    REGISTER_PATH,
    SESSION_LABEL,
    TEST_IMAGE,
    ours,
    ours_requests,
    ours_summary,
    owned,
    run_cli,
    service_id_of,
    wait_until,
)
from tests.consul_double import ConsulDouble
from tests.private_dockerd import PrivateDockerd

pytestmark = pytest.mark.docker


def sid(name: str, port: int = 80) -> str:
    return f"{HOSTNAME}:{name}:{port}"


def start(registrator, consul, *flags: str, env: dict[str, str] | None = None):
    proc = registrator(
        "-ip", "127.0.0.1", *flags, f"consul://127.0.0.1:{consul.port}", env=env
    )  # fmt: skip
    proc.wait_log("synced: ", timeout=30)
    return proc


def run_many(client, names: list[str], **kwargs) -> None:
    def one(name: str) -> None:
        # create + start, not run: the SDK's run() would try to pull a missing image
        client.containers.create(
            TEST_IMAGE,
            ["sleep", "600"],
            name=name,
            labels={SESSION_LABEL.split("=")[0]: SESSION_LABEL.split("=")[1]},
            ports={"80/tcp": ("127.0.0.1", None)},
            **kwargs,
        ).start()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, names))


def remove_many(client, names: list[str]) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: client.containers.get(n).remove(force=True), names))


def test_consul_down_during_churn_then_back_empty(registrator, consul, docker_client, containers):
    proc = start(registrator, consul)
    before = [f"old.{n}" for n in range(10)]
    run_many(docker_client, before)
    consul.wait_for(lambda s: {sid(n) for n in before} <= owned(s), timeout=30)

    consul.stop()
    new = [f"new.{n}" for n in range(20)]
    run_many(docker_client, new)
    remove_many(docker_client, before)
    proc.wait_log("Consul unavailable", timeout=30)

    consul.restart(empty=True)
    back = time.monotonic()
    expected = {sid(n) for n in new}
    consul.wait_for(lambda s: ours(owned(s), before + new) == expected, timeout=5)
    recovery = time.monotonic() - back
    print(f"\nrecovery after Consul came back empty: {recovery:.2f}s")
    proc.wait_log("Consul reachable again")


def test_agent_restarted_empty_is_refilled_without_a_full_rewrite(
    registrator, consul, docker_client, containers
):
    proc = start(registrator, consul)
    names = [f"refill.{n}" for n in range(6)]
    run_many(docker_client, names)
    consul.wait_for(lambda s: ours(owned(s), names) == {sid(n) for n in names}, timeout=30)

    # one service lost (as if deregistered by hand): only it is written again
    consul.clear_requests()
    import requests

    requests.put(f"{consul.url}/v1/agent/service/deregister/{sid('refill.0')}", timeout=5)
    consul.wait_for(lambda s: sid("refill.0") in s, timeout=5)
    writes = [r for r in ours_requests(consul.writes(), names) if r.path == REGISTER_PATH]
    assert [service_id_of(r) for r in writes] == [sid("refill.0")]

    proc.wait_log("agent was missing 1 service")  # that refill is over, and logged
    consul.clear_requests()
    seen = len(proc.logs())
    consul.restart(empty=True)
    back = time.monotonic()
    consul.wait_for(lambda s: ours(owned(s), names) == {sid(n) for n in names}, timeout=5)
    print(f"\nagent restarted empty refilled in {time.monotonic() - back:.2f}s")
    # the count includes the other containers on the engine; ours are each written once
    missing = wait_until(
        lambda: re.search(r"agent was missing (\d+) service", proc.logs()[seen:]),
        what="the refill's log line",
    )
    assert int(missing.group(1)) >= len(names)
    writes = [r for r in ours_requests(consul.writes(), names) if r.path == REGISTER_PATH]
    assert sorted(str(service_id_of(r)) for r in writes) == sorted(sid(n) for n in names)


def test_consul_errors_and_hangs_during_churn_end_exact(
    registrator, consul, docker_client, containers
):
    start(registrator, consul, "-consul-timeout", "1")
    first = [f"churn.{n}" for n in range(8)]
    run_many(docker_client, first)
    consul.wait_for(lambda s: {sid(n) for n in first} <= owned(s), timeout=30)

    consul.fail("error", status=500, body="rpc error: No cluster leader", every=2)
    second = [f"churn2.{n}" for n in range(6)]
    run_many(docker_client, second)
    remove_many(docker_client, first[:4])

    consul.fail("hang", every=3)
    third = [f"churn3.{n}" for n in range(6)]
    run_many(docker_client, third)
    remove_many(docker_client, first[4:6] + second[:2])

    consul.fail("reset", every=2)
    remove_many(docker_client, third[:2])

    consul.fail(None)
    expected = {sid(n) for n in first[6:] + second[2:] + third[2:]}
    consul.wait_for(lambda s: ours(owned(s), first + second + third) == expected, timeout=20)


def test_resync_with_nothing_changed_makes_no_writes(
    registrator, consul, docker_client, containers
):
    names = [f"steady.{n}" for n in range(5)]
    run_many(docker_client, names)
    proc = start(registrator, consul, "-resync", "0.5", "-log-level", "DEBUG")
    consul.wait_for(lambda s: ours(owned(s), names) == {sid(n) for n in names}, timeout=30)
    consul.clear_requests()
    done = proc.logs().count("resync: ")
    wait_until(lambda: proc.logs().count("resync: ") >= done + 3, timeout=20, what="3 resyncs")
    requests_seen = ours_requests(consul.requests(), names)  # others' containers may churn
    assert ours_requests(consul.writes(), names) == []
    assert {r.method for r in requests_seen} <= {"GET"}  # reads only (agent polls), if any


def test_burst_of_100_parallel_starts_then_all_removed(
    registrator, consul, docker_client, containers
):
    start(registrator, consul)
    names = [f"burst.{n}" for n in range(100)]
    started = time.monotonic()
    run_many(docker_client, names)
    consul.wait_for(lambda s: len(ours(owned(s), names)) == 100, timeout=60)
    print(f"\n100 started and registered in {time.monotonic() - started:.1f}s")
    started = time.monotonic()
    remove_many(docker_client, names)
    consul.wait_for(lambda s: not ours(owned(s), names), timeout=60)
    print(f"100 removed and deregistered in {time.monotonic() - started:.1f}s")


def test_containers_killed_mid_registration_leave_nothing(
    registrator, consul, docker_client, containers
):
    start(registrator, consul)
    names = [f"short.{n}" for n in range(20)]
    with ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda n: containers.run(n, "--rm", "-p", "127.0.0.1::80", command="true"), names
            )
        )
    containers.run("keeper.0", "-p", "127.0.0.1::80")
    consul.wait_for(lambda s: ours(owned(s), [*names, "keeper.0"]) == {sid("keeper.0")}, timeout=20)


def test_docker_daemon_restart_survived_missing_no_start_or_die(registrator, consul):
    dockerd = PrivateDockerd()
    try:
        dockerd.start()
        dockerd.load_test_image()

        def docker_cli(*args: str) -> None:
            env = {**os.environ, "DOCKER_HOST": dockerd.host}
            result = subprocess.run(["docker", *args], env=env, capture_output=True, timeout=60)
            assert result.returncode == 0, result.stderr

        def run(name: str, port: int, *flags: str) -> None:
            docker_cli(
                "run", "-d", "--pull=never", "--name", name, "--network", "host", "--expose", str(port), *flags,
                TEST_IMAGE, "httpd", "-f", "-p", f"127.0.0.1:{port}",
            )  # fmt: skip

        run("always.0", 18101, "--restart", "always")
        run("once.0", 18102)
        run("doomed.0", 18103)
        proc = registrator(
            "-ip", "127.0.0.1", f"consul://127.0.0.1:{consul.port}",
            env={"DOCKER_HOST": dockerd.host},
        )  # fmt: skip
        proc.wait_log("synced: ", timeout=30)
        ids = {sid("always.0", 18101), sid("once.0", 18102), sid("doomed.0", 18103)}
        consul.wait_for(lambda s: owned(s) == ids)

        down = dockerd.restart()  # once.0 and doomed.0 stop with it; always.0 comes back
        run("new.0", 18104)  # started while registrator may still be reconnecting
        docker_cli("rm", "-f", "doomed.0")
        proc.wait_log("Docker reachable again", timeout=60)
        expected = {sid("always.0", 18101), sid("new.0", 18104)}
        consul.wait_for(lambda s: owned(s) == expected, timeout=30)

        run("after.0", 18105)  # events flow again after the reconnect
        consul.wait_for(lambda s: owned(s) == expected | {sid("after.0", 18105)}, timeout=10)
        assert proc.proc.poll() is None, proc.logs()
        assert "Docker event stream ended" in proc.logs() or "Docker unreachable" in proc.logs()
        print(f"\ndockerd was down {down:.1f}s; registrator survived and converged")
    finally:
        dockerd.close()


def test_resync_command_prints_and_exits(consul, containers):
    import consul as consul_client

    containers.run("rs.0", "-p", "127.0.0.1::80", "-e", "SERVICE_NAME=rs")
    client = consul_client.Consul(host="127.0.0.1", port=consul.port)
    client.agent.service.register(
        "gone", service_id=sid("gone.0"), port=1, meta={"registrator": HOSTNAME}
    )
    client.agent.service.register("foreign", service_id="foreign-1", port=2)
    uri = f"consul://127.0.0.1:{consul.port}"

    mine = ["rs.0", "gone.0"]
    first = run_cli("resync", "-ip", "127.0.0.1", uri)
    assert first.returncode == 0, first.stderr
    assert f"added      {sid('rs.0')}" in first.stdout
    assert f"removed    {sid('gone.0')}" in first.stdout
    assert ours_summary(first.stdout, mine).startswith("1 added, 0 updated, 1 removed")
    assert ours(owned(consul.services()), mine) == {sid("rs.0")}
    assert "foreign-1" in consul.services()

    consul.clear_requests()
    second = run_cli("resync", "-ip", "127.0.0.1", uri)
    assert second.returncode == 0
    assert f"unchanged  {sid('rs.0')}" in second.stdout
    assert (
        ours_summary(second.stdout, mine) == "0 added, 0 updated, 0 removed, 1 unchanged, 0 failed"
    )
    assert ours_requests(consul.writes(), mine) == []

    consul.stop()
    down = run_cli("resync", uri)
    assert down.returncode == 1
    assert "Consul unreachable at http://127.0.0.1:" in down.stderr

    no_docker = run_cli("resync", uri, env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert no_docker.returncode == 1
    assert "Docker unreachable" in no_docker.stderr


def change_tags_by_hand(consul: ConsulDouble, service_id: str, tags: list[str]) -> None:
    """What an operator does with ``consul services register``: the same service, other tags."""
    import requests

    held = consul.services()[service_id]
    body = {key: held[key] for key in ("ID", "Address", "Port", "Meta")}
    body.update(Name=held["Service"], Tags=tags)
    answer = requests.put(f"{consul.url}/v1/agent/service/register", json=body, timeout=5)
    assert answer.status_code == 200, answer.text
    assert consul.services()[service_id]["Tags"] == tags


def counted(pattern: str, text: str) -> int:
    """The number a log line like "agent was missing 2 service(s)" gives (0 without one)."""
    found = re.search(pattern, text)
    return int(found.group(1)) if found else 0


def test_resync_says_updated_for_a_service_that_differed(consul, containers):
    """After tags were changed by hand, plan says update; resync says updated, counts it so,
    and does not log that the agent was missing anything."""
    containers.run(
        "upd.0", "-p", "127.0.0.1::80", "-e", "SERVICE_NAME=upd", "-e", "SERVICE_TAGS=v1"
    )
    uri = f"consul://127.0.0.1:{consul.port}"
    mine, service_id = ["upd.0"], sid("upd.0")
    first = run_cli("resync", "-ip", "127.0.0.1", uri)
    assert first.returncode == 0, first.stderr
    assert re.search(rf"^added +{re.escape(service_id)} ", first.stdout, re.MULTILINE)
    change_tags_by_hand(consul, service_id, ["by-hand"])

    plan = run_cli("plan", "-ip", "127.0.0.1", uri)
    assert re.search(rf"^update +{re.escape(service_id)} ", plan.stdout, re.MULTILINE)
    assert ours_summary(plan.stdout, mine) == "0 to add, 1 to update, 0 to remove, 0 unchanged"
    second = run_cli("resync", "-ip", "127.0.0.1", uri)
    assert second.returncode == 0, second.stderr
    assert re.search(rf"^updated +{re.escape(service_id)}  \(upd ", second.stdout, re.MULTILINE)
    assert ours_summary(second.stdout, mine) == (
        "0 added, 1 updated, 0 removed, 0 unchanged, 0 failed"
    )
    assert consul.services()[service_id]["Tags"] == ["v1"]
    # The log counts what the rows say (other containers on the engine may have rows too).
    rows = [line.split()[0] for line in second.stdout.splitlines()[:-1]]
    assert counted(r"agent was missing (\d+) service", second.stderr) == rows.count("added")
    assert counted(r"agent held (\d+) service\(s\) that differed", second.stderr) == rows.count(
        "updated"
    )


def test_the_daemon_logs_a_service_that_differed_as_an_update(registrator, consul, containers):
    proc = start(registrator, consul)
    containers.run("updd.0", "-p", "127.0.0.1::80", "-e", "SERVICE_TAGS=v1")
    service_id = sid("updd.0")
    consul.wait_for(lambda s: service_id in s)
    seen = len(proc.logs())
    change_tags_by_hand(consul, service_id, ["by-hand"])
    consul.wait_for(lambda s: s[service_id]["Tags"] == ["v1"])  # the next comparison
    line = wait_until(
        lambda: re.search(
            r"agent held (\d+) service\(s\) that differed; updated", proc.logs()[seen:]
        ),
        what="the update's log line",
    )
    assert int(line.group(1)) >= 1
    assert "agent was missing" not in proc.logs()[seen:]


def test_retry_attempts_at_start(registrator, consul):
    consul.stop()
    uri = f"consul://127.0.0.1:{consul.port}"
    gave_up = run_cli("-retry-attempts", "2", "-retry-interval", "100", uri)
    assert gave_up.returncode == 1
    assert gave_up.stderr.count("retry ") == 2
    assert "unreachable" in gave_up.stderr.splitlines()[-1]

    proc = registrator("-retry-attempts", "-1", "-retry-interval", "100", uri)
    proc.wait_log("retry 3 in 100ms")
    consul.start()
    proc.wait_log("synced: ", timeout=30)


def test_the_daemon_waits_for_its_agent_by_default(registrator, consul, containers):
    consul.stop()
    containers.run("late.0", "-p", "127.0.0.1::80")
    uri = f"consul://127.0.0.1:{consul.port}"
    proc = registrator("-ip", "127.0.0.1", "-retry-interval", "100", "-log-level", "DEBUG", uri)
    proc.wait_log(
        rf"WARNING Consul unreachable at http://127\.0\.0\.1:{consul.port} \(.*\): "
        r"start the agent, or check the registry URI; waiting for it"
    )
    # later tries back off (doubling from -retry-interval) and are logged at DEBUG only
    proc.wait_log(r"DEBUG .*still no answer.*next try in 0\.8s", timeout=20)
    assert proc.proc.poll() is None
    consul.start()
    proc.wait_log(r"INFO Consul agent at \S+ answers after \d+ retries; registering", timeout=30)
    consul.wait_for(lambda s: sid("late.0") in s, timeout=30)
    proc.wait_log("synced: ")
    # one warning while waiting; others' containers on the engine may have their own
    warnings = [
        line
        for line in proc.logs().splitlines()
        if " WARNING " in line and not re.search(r" WARNING container (?!late\.0 )", line)
    ]
    assert len(warnings) == 1, proc.logs()
    delays = re.findall(r"next try in ([\d.]+)s", proc.logs())
    assert delays[:3] == ["0.2", "0.4", "0.8"], delays


def test_stop_while_waiting_for_the_agent_exits_0_promptly(registrator, consul):
    consul.stop()
    proc = registrator(f"consul://127.0.0.1:{consul.port}")
    proc.wait_log("waiting for it")
    began = time.monotonic()
    assert proc.stop() == 0, proc.logs()
    assert time.monotonic() - began < 5


@pytest.mark.parametrize("flags", [[], ["-retry-attempts", "-1", "-retry-interval", "100"]])
def test_waiting_for_the_agent_tells_systemd_and_feeds_its_watchdog(
    registrator, consul, tmp_path, flags
):
    consul.stop()
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(address)
        notify.settimeout(10)
        env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"}
        proc = registrator("-ip", "127.0.0.1", *flags, f"consul://127.0.0.1:{consul.port}", env=env)
        received = [notify.recv(4096).decode() for _ in range(4)]
        assert received[0] == (
            f"READY=1\nSTATUS=waiting for the Consul agent at http://127.0.0.1:{consul.port}"
        )
        assert received[1:] == ["WATCHDOG=1"] * 3, received
        consul.start()
        while not (message := notify.recv(4096).decode()).startswith("READY=1"):
            assert message == "WATCHDOG=1", message
        assert message.startswith("READY=1\nSTATUS=synced: "), message
    assert proc.stop() == 0


def test_a_wrong_token_at_start_names_the_token(registrator):
    with ConsulDouble(acl_token="the-right-one") as double:
        proc = registrator(
            f"consul://127.0.0.1:{double.port}", env={"CONSUL_HTTP_TOKEN": "a-wrong-one"}
        )
        proc.wait_log(
            rf"WARNING Consul agent at http://127\.0\.0\.1:{double.port} refused the request "
            r"\(.*\): check the ACL token \(CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE\)"
        )
        assert proc.proc.poll() is None
        plan = run_cli(
            "plan", f"consul://127.0.0.1:{double.port}", env={"CONSUL_HTTP_TOKEN": "a-wrong-one"}
        )
    assert plan.returncode == 1
    assert "check the ACL token" in plan.stderr and "a-wrong-one" not in plan.stderr


@pytest.mark.parametrize("command", ["plan", "resync"])
def test_plan_and_resync_without_an_agent_exit_1_with_one_line(consul, command):
    consul.stop()
    result = run_cli(command, f"consul://127.0.0.1:{consul.port}")
    assert (result.returncode, result.stdout) == (1, "")
    [line] = result.stderr.splitlines()
    assert re.fullmatch(
        rf"registrator {command}: Consul unreachable at http://127\.0\.0\.1:{consul.port} "
        r"\(.*\): start the agent, or check the registry URI",
        line,
    ), line


def test_plan_json_without_an_agent_prints_an_error_object(consul):
    consul.stop()
    result = run_cli("plan", "-json", f"consul://127.0.0.1:{consul.port}")
    assert result.returncode == 1
    error = json.loads(result.stdout)["error"]
    assert error.startswith(f"Consul unreachable at http://127.0.0.1:{consul.port} ")
    assert error.endswith("start the agent, or check the registry URI")


def test_deregister_on_shutdown(registrator, consul, containers):
    proc = start(registrator, consul, "-deregister-on-shutdown")
    containers.run("bye.0", "-p", "127.0.0.1::80")
    consul.wait_for(lambda s: sid("bye.0") in s)
    began = time.monotonic()
    assert proc.stop() == 0
    assert time.monotonic() - began < 2.0
    assert not ours(owned(consul.services()), ["bye.0"])


def test_docker_down_at_start_keeps_trying_then_follows_it(registrator, consul):
    dockerd = PrivateDockerd()
    try:
        proc = registrator(
            "-ip", "127.0.0.1", f"consul://127.0.0.1:{consul.port}",
            env={"DOCKER_HOST": dockerd.host},
        )  # fmt: skip
        proc.wait_log("Docker unreachable: ")
        assert proc.proc.poll() is None
        dockerd.start()
        proc.wait_log("Docker reachable again", timeout=30)
        dockerd.load_test_image()
        env = {**os.environ, "DOCKER_HOST": dockerd.host}
        subprocess.run(
            ["docker", "run", "-d", "--pull=never", "--name", "late.0", "--network", "host",
             "--expose", "18201", TEST_IMAGE, "sleep", "600"],
            env=env, check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        consul.wait_for(lambda s: owned(s) == {sid("late.0", 18201)}, timeout=15)
    finally:
        dockerd.close()
