"""Everything a container says about its health reaches Consul: Docker health as a TTL
check, several checks, every check option, tag override and weights. The real process, the
real engine and the double (which probes HTTP checks as the agent does)."""

from __future__ import annotations

import datetime
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from registrator.core.model import health_check_id
from tests.conftest import HOSTNAME, Probed, ours_summary, plan_rows, run_cli, wait_until
from tests.consul_double import ConsulDouble

pytestmark = pytest.mark.docker


def sid(name: str, port: int = 80) -> str:
    return f"{HOSTNAME}:{name}:{port}"


@pytest.fixture
def consul() -> Iterator[ConsulDouble]:
    with ConsulDouble(run_checks=True) as double:
        yield double


def start(registrator, consul, *flags: str):
    proc = registrator("-ip", "127.0.0.1", *flags, f"consul://127.0.0.1:{consul.port}")
    proc.wait_log("synced: ", timeout=30)
    return proc


def check(consul: ConsulDouble, check_id: str) -> dict[str, Any]:
    """The check as the agent lists it ({} when it has none of that ID)."""
    return consul.checks().get(check_id, {})


def status(consul: ConsulDouble, check_id: str) -> str:
    return str(check(consul, check_id).get("Status", ""))


def docker_time_ns(text: str) -> int:
    """Docker's RFC 3339 time with nanoseconds, as Unix nanoseconds."""
    stamp, _, fraction = text.rstrip("Z").partition(".")
    digits = "".join(c for c in fraction if c.isdigit())
    zone = fraction[len(digits) :] or "+00:00"
    whole = datetime.datetime.fromisoformat(stamp + zone)
    return int(whole.timestamp()) * 1_000_000_000 + int((digits + "0" * 9)[:9])


def wait_for_two_comparisons(consul: ConsulDouble) -> None:
    """Until the daemon has compared the agent with Docker twice more (-agent-poll 2)."""
    after = time.time_ns()
    wait_until(
        lambda: (
            sum(r.path == "/v1/agent/services" and r.wall_ns > after for r in consul.requests())
            >= 2
        ),
        20,
        "two comparisons by the daemon",
    )


HEALTH = ("--health-cmd", "[ -f /tmp/ok ]", "--health-interval", "500ms", "--health-retries", "1")


def run_healthy(containers, consul: ConsulDouble, name: str) -> str:
    """A container whose Docker health check passes; the ID of its health check, passing."""
    containers.run(
        name, "-p", "127.0.0.1::80", *HEALTH, command=["sh", "-c", "touch /tmp/ok; sleep 600"]
    )
    health = health_check_id(sid(name))
    wait_until(lambda: status(consul, health) == "passing", 20, "the health check passing")
    return health


def test_docker_health_follows_the_container_within_two_seconds(registrator, consul, containers):
    proc = start(registrator, consul, "-health-sync")
    health = run_healthy(containers, consul, "hs.0")
    assert check(consul, health)["Type"] == "ttl"

    for script, want in (("rm /tmp/ok", "critical"), ("touch /tmp/ok", "passing")):
        consul.clear_requests()
        containers.exec("hs.0", script)
        wait_until(lambda: status(consul, health) == want, 15, f"the check {want}")  # noqa: B023
        # From the probe whose result Docker's health_status event reported to the write.
        (update,) = [r for r in consul.writes() if r.path == f"/v1/agent/check/update/{health}"]
        probe_end = containers.client.containers.get("hs.0").attrs["State"]["Health"]["Log"][-1][
            "End"
        ]
        delay = (update.wall_ns - docker_time_ns(probe_end)) / 1e9
        assert delay < 2.0, f"{want} {delay:.2f}s after Docker's probe"
    assert sid("hs.0") in consul.services()  # never removed: visible as critical instead
    proc.wait_log(rf"hs\.0 \([0-9a-f]{{12}}\): check {health} critical")


def test_the_check_output_follows_docker_when_the_status_stays_critical(
    registrator, consul, containers
):
    """starting -> unhealthy is critical -> critical: the output still changes, with Docker's
    last probe output, in one write; nothing is written while nothing changes."""
    proc = start(registrator, consul, "-health-sync")
    containers.run(
        "sick.0", "-p", "127.0.0.1::80",
        "--health-cmd", "echo probe says no; exit 1", "--health-interval", "3s",
        "--health-retries", "1",
    )  # fmt: skip
    health = health_check_id(sid("sick.0"))
    wait_until(
        lambda: check(consul, health).get("Output") == "Docker health is starting",
        20,
        "the check saying starting",
    )
    assert status(consul, health) == "critical"
    wait_until(
        lambda: (
            check(consul, health).get("Output")
            == "Docker health is unhealthy; last probe output: probe says no"
        ),
        20,
        "the check saying unhealthy, with the probe's output",
    )
    assert status(consul, health) == "critical"
    proc.wait_log(r"sick\.0 \([0-9a-f]{12}\): check \S+ critical")
    wait_for_two_comparisons(consul)
    updates = [
        json.loads(r.body)["Output"]
        for r in consul.writes()
        if r.path == f"/v1/agent/check/update/{health}"
    ]
    assert updates == [
        "Docker health is starting",
        "Docker health is unhealthy; last probe output: probe says no",
    ]  # one write per change, none at rest
    ours = [r.path for r in consul.writes() if sid("sick.0") in r.path + r.body]
    assert sorted(ours) == [
        "/v1/agent/check/update/" + health,
        "/v1/agent/check/update/" + health,
        "/v1/agent/service/register",
    ]

    # Someone writes another output by hand, the status unchanged: plan says update, resync
    # says updated and writes the output back, once.
    proc.stop()
    uri = f"consul://127.0.0.1:{consul.port}"
    body = {"Status": "critical", "Output": "by hand"}
    answer = requests.put(f"{consul.url}/v1/agent/check/update/{health}", json=body, timeout=5)
    assert answer.status_code == 200, answer.text
    plan = run_cli("plan", "-health-sync", "-ip", "127.0.0.1", uri)
    assert re.search(rf"^update +{re.escape(sid('sick.0'))} ", plan.stdout, re.MULTILINE)
    consul.clear_requests()
    resync = run_cli("resync", "-health-sync", "-ip", "127.0.0.1", uri)
    assert resync.returncode == 0, resync.stderr
    assert re.search(rf"^updated +{re.escape(sid('sick.0'))} ", resync.stdout, re.MULTILINE)
    assert ours_summary(resync.stdout, ["sick.0"]) == (
        "0 added, 1 updated, 0 removed, 0 unchanged, 0 failed"
    )
    assert [r.path for r in consul.writes() if sid("sick.0") in r.path + r.body] == [
        "/v1/agent/check/update/" + health
    ]
    assert check(consul, health)["Output"] == updates[-1]


def test_a_restart_of_registrator_never_flaps_a_healthy_check(registrator, consul, containers):
    first = start(registrator, consul, "-health-sync")
    health = run_healthy(containers, consul, "steady.0")
    seen: list[str] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            seen.append(status(consul, health))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        first.stop()
        second = start(registrator, consul, "-health-sync")
        second.wait_log(rf"check {health} passing")  # written once at start
        after = len(seen)
        wait_until(lambda: len(seen) >= after + 5, 10, "a second of samples after the restart")
    finally:
        stop.set()
        sampler.join()
    assert seen and set(seen) == {"passing"}, seen


def test_turning_health_sync_on_rewrites_only_containers_with_a_healthcheck(
    registrator, consul, containers
):
    """No Meta key stands for health sync: the check comparison alone decides, so a container
    without a HEALTHCHECK (even one whose key asks for health sync) is not rewritten when the
    flag changes, and SERVICE_CHECK_DOCKER_HEALTH never reaches Meta."""
    uri = f"consul://127.0.0.1:{consul.port}"
    containers.run("plain.0", "-p", "127.0.0.1::80")
    containers.run("keyed.0", "-p", "127.0.0.1::80", "-e", "SERVICE_CHECK_DOCKER_HEALTH=true")
    containers.run(
        "hc.0", "-p", "127.0.0.1::80", *HEALTH, command=["sh", "-c", "touch /tmp/ok; sleep 600"]
    )
    wait_until(
        lambda: (
            containers.client.containers.get("hc.0").attrs["State"]["Health"]["Status"] == "healthy"
        ),
        20,
        "hc.0 healthy",
    )
    first = run_cli("resync", "-ip", "127.0.0.1", uri)  # without health sync
    assert first.returncode == 0, first.stderr
    untouched = {sid("plain.0"), sid("keyed.0")}
    assert untouched | {sid("hc.0")} <= set(consul.services())

    consul.clear_requests()
    start(registrator, consul, "-health-sync")
    health = health_check_id(sid("hc.0"))
    wait_until(lambda: status(consul, health) == "passing", 20, "hc.0's health check passing")
    wait_for_two_comparisons(consul)
    assert [r for r in consul.writes() if any(s in r.path + r.body for s in untouched)] == []
    for service_id in (*untouched, sid("hc.0")):
        assert "check_docker_health" not in consul.services()[service_id]["Meta"], service_id
    assert {c["ServiceID"] for c in consul.checks().values()} & untouched == set()

    # Turned off again: plan would update hc.0 alone (its check goes).
    plan = run_cli("plan", "-ip", "127.0.0.1", uri)
    rows = {line.split()[1]: line.split()[0] for line in plan_rows(plan.stdout)}
    assert {s: rows.get(s) for s in (*untouched, sid("hc.0"))} == {
        sid("plain.0"): "unchanged",
        sid("keyed.0"): "unchanged",
        sid("hc.0"): "update",
    }, plan.stdout


def test_a_container_recreated_without_its_healthcheck_loses_the_health_check(
    registrator, consul, containers
):
    """Recreated under the same name and port while registrator was down, the service is the
    same but for its checks: the Docker health check must go (its 24-hour TTL would turn the
    service critical a day later), and nothing else is written once it has."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    published = ("-p", f"127.0.0.1:{port}:80")
    first = start(registrator, consul, "-health-sync")
    containers.run(
        "recreated.0", *published, *HEALTH, command=["sh", "-c", "touch /tmp/ok; sleep 600"]
    )
    health = health_check_id(sid("recreated.0"))
    wait_until(lambda: status(consul, health) == "passing", 20, "the health check passing")
    first.stop()
    containers.rm("recreated.0")
    containers.run("recreated.0", *published)
    second = start(registrator, consul, "-health-sync")
    wait_until(lambda: not check(consul, health), 15, "the Docker health check removed")
    assert sid("recreated.0") in consul.services()
    second.wait_log(r"registered recreated\.0 ")
    consul.clear_requests()
    wait_for_two_comparisons(consul)
    assert [r for r in consul.writes() if sid("recreated.0") in r.path + r.body] == []


def test_an_http_check_reaches_the_service_with_its_method_header_and_body(
    registrator, consul, containers, probed
):
    start(registrator, consul)
    # A host-network container exposing the port the test's server listens on.
    containers.run(
        "probed.0", "--net", "host", "--expose", str(probed),
        "-e", "SERVICE_CHECK_HTTP=/probe", "-e", "SERVICE_CHECK_HTTP_METHOD=POST",
        "-e", "SERVICE_CHECK_HEADER_X_PROBE=yes", "-e", "SERVICE_CHECK_BODY=ping",
        "-e", "SERVICE_CHECK_INTERVAL=1s",
    )  # fmt: skip
    check_id = f"service:{sid('probed.0', probed)}"
    wait_until(lambda: status(consul, check_id) == "passing", 20, "the HTTP check passing")
    method, path, headers, body = Probed.seen[0]
    assert (method, path, body, headers["X-Probe"]) == ("POST", "/probe", b"ping", "yes")


def test_two_indexed_checks_weights_and_tag_override(registrator, consul, containers):
    start(registrator, consul)
    containers.run(
        "multi.0", "-p", "127.0.0.1::80",
        "-e", "SERVICE_CHECK_1_TTL=30s", "-e", "SERVICE_CHECK_2_TTL=1m",
        "-e", "SERVICE_CHECK_2_NAME=second",
        "-e", "SERVICE_WEIGHT_PASSING=10", "-e", "SERVICE_WEIGHT_WARNING=2",
        "-e", "SERVICE_ENABLE_TAG_OVERRIDE=true", "-e", "SERVICE_TAGS=v1",
    )  # fmt: skip
    service_id = sid("multi.0")
    services = consul.wait_for(lambda s: service_id in s)
    assert services[service_id]["Weights"] == {"Passing": 10, "Warning": 2}
    assert services[service_id]["EnableTagOverride"] is True
    assert not {"weight_passing", "enable_tag_override"} & set(services[service_id]["Meta"])
    checks = {c: v for c, v in consul.checks().items() if v["ServiceID"] == service_id}
    assert set(checks) == {f"service:{service_id}:1", f"service:{service_id}:2"}
    assert checks[f"service:{service_id}:2"]["Name"] == "second"

    # A leader-election sidecar sets tags in the catalog; the agent adopts them at its next
    # anti-entropy sync: registrator never writes its own back.
    consul.clear_requests()
    assert consul.catalog_tags_changed(service_id, ["master"])
    resync = run_cli("resync", "-ip", "127.0.0.1", f"consul://127.0.0.1:{consul.port}")
    assert resync.returncode == 0, resync.stderr
    # ... and the daemon's own comparisons after it (-agent-poll 2) write nothing either.
    wait_for_two_comparisons(consul)
    assert [r for r in consul.writes() if service_id in r.path or service_id in r.body] == []
    assert consul.services()[service_id]["Tags"] == ["master"]


def test_success_before_passing_waits_for_successes_in_a_row(registrator, consul, containers):
    with socket.socket() as sock:  # a port nobody listens on yet: the first probes fail
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    start(registrator, consul)
    containers.run(
        "slowpass.0", "--net", "host", "--expose", str(port),
        "-e", "SERVICE_CHECK_TCP=true", "-e", "SERVICE_CHECK_INTERVAL=1s",
        "-e", "SERVICE_CHECK_SUCCESS_BEFORE_PASSING=3",
    )  # fmt: skip
    check_id = f"service:{sid('slowpass.0', port)}"
    wait_until(
        lambda: "dial tcp" in check(consul, check_id).get("Output", ""),
        20,
        "a failed probe",
    )
    listener = socket.create_server(("127.0.0.1", port))
    try:
        opened = time.monotonic()
        wait_until(lambda: status(consul, check_id) == "passing", 20, "passing")
        assert time.monotonic() - opened >= 2.0  # at least two intervals after the first success
    finally:
        listener.close()


def test_bad_check_values_are_refused_with_a_warning_and_the_rest_registered(
    registrator, consul, containers
):
    proc = start(registrator, consul)
    containers.run(
        "badcheck.0", "-p", "127.0.0.1::80",
        "-e", "SERVICE_CHECK_TTL=30s", "-e", "SERVICE_CHECK_SUCCESS_BEFORE_PASSING=-2",
        "-e", "SERVICE_CHECK_1_TTL=1m", "-e", "SERVICE_CHECK_1_FAILURES_BEFORE_CRITICAL=x",
        "-e", "SERVICE_CHECK_2_HTTP=/ready", "-e", "SERVICE_CHECK_2_HEADER_X_PROBE=a\nb",
        "-e", "SERVICE_CHECK_2_HEADER_X_GOOD=yes",
        "-e", "SERVICE_WEIGHT_PASSING=0", "-e", "SERVICE_WEIGHT_WARNING=-1",
    )  # fmt: skip
    service_id = sid("badcheck.0")
    services = consul.wait_for(lambda s: service_id in s)
    prefix = r"container badcheck\.0 \([0-9a-f]{12}\): "
    proc.wait_log(prefix + r"SERVICE_CHECK_SUCCESS_BEFORE_PASSING: '-2' is not a whole number")
    proc.wait_log(prefix + r"SERVICE_CHECK_1_FAILURES_BEFORE_CRITICAL: 'x' is not a whole number")
    proc.wait_log(prefix + r"SERVICE_CHECK_2_HEADER_X_PROBE: a header value with a line break")
    proc.wait_log(prefix + r"SERVICE_WEIGHT_PASSING: '0' is not a whole number >= 1")
    proc.wait_log(prefix + r"SERVICE_WEIGHT_WARNING: '-1' is not a whole number >= 1")
    checks = {c: v for c, v in consul.checks().items() if v["ServiceID"] == service_id}
    assert set(checks) == {f"service:{service_id}", *(f"service:{service_id}:{n}" for n in (1, 2))}
    register = [r for r in consul.writes() if service_id in r.body][-1]
    sent = {c["CheckID"]: c for c in json.loads(register.body)["Checks"]}
    assert sent[f"service:{service_id}:2"]["Header"] == {"X-Good": ["yes"]}
    assert services[service_id]["Weights"] == {"Passing": 1, "Warning": 1}
