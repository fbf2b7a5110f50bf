"""What the people on call use: plan, health-aware registration, drain, metrics, health,
logs and systemd readiness. The real process, engine and double."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    HOSTNAME,
    foreign,
    ours_summary,
    owned,
    run_cli,
    wait_until,
)

pytestmark = pytest.mark.docker


def sid(name: str, port: int = 80) -> str:
    return f"{HOSTNAME}:{name}:{port}"


def test_plan_table_json_and_exit_codes(consul, containers):
    import consul as consul_client

    containers.run("plan.0", "-p", "127.0.0.1::80", "-e", "SERVICE_NAME=planned")
    client = consul_client.Consul(host="127.0.0.1", port=consul.port)
    client.agent.service.register("stale", service_id=sid("gone.0"), meta={"registrator": HOSTNAME})
    client.agent.service.register("foreign", service_id="foreign-1")
    uri = f"consul://127.0.0.1:{consul.port}"
    mine = ["plan.0", "gone.0"]
    consul.clear_requests()

    table = run_cli("plan", "-ip", "127.0.0.1", uri)
    assert table.returncode == 2, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "ACTION",
        "SERVICE",
        "ID",
        "NAME",
        "ADDRESS",
        "TAGS",
        "CONTAINER",
        "CHECKS",
    ]
    assert any(
        line.startswith("add") and sid("plan.0") in line and "planned" in line for line in lines
    )
    assert any(line.startswith("remove") and sid("gone.0") in line for line in lines)
    assert ours_summary(table.stdout, mine) == "1 to add, 0 to update, 1 to remove, 0 unchanged"
    assert consul.writes() == []  # plan never writes, whatever runs on the engine

    as_json = run_cli("plan", "-json", "-ip", "127.0.0.1", uri)
    assert as_json.returncode == 2
    body = json.loads(as_json.stdout)
    assert body["in_sync"] is False
    assert {(c["action"], c["id"]) for c in body["changes"] if not foreign(c["id"], mine)} == {
        ("add", sid("plan.0")),
        ("remove", sid("gone.0")),
    }

    assert run_cli("resync", "-ip", "127.0.0.1", uri).returncode == 0
    in_sync = run_cli("plan", "--json", "-ip", "127.0.0.1", uri)
    # in step for ours; another container may have started or gone since the resync
    changes = json.loads(in_sync.stdout)["changes"]
    settled = all(c["action"] == "unchanged" for c in changes)
    assert json.loads(in_sync.stdout)["in_sync"] is settled
    assert in_sync.returncode == (0 if settled else 2)
    assert [c for c in changes if c["action"] != "unchanged" and not foreign(c["id"], mine)] == []
    assert {c["id"] for c in changes if c["action"] == "unchanged"} >= {sid("plan.0")}

    changed = run_cli("plan", "-ip", "127.0.0.1", "-tags", "extra", uri)
    assert changed.returncode == 2
    assert any(line.startswith("update") for line in changed.stdout.splitlines())

    consul.stop()
    down = run_cli("plan", uri)
    assert down.returncode == 1
    assert "Consul unreachable" in down.stderr


def start(registrator, consul, *flags: str):
    proc = registrator("-ip", "127.0.0.1", *flags, f"consul://127.0.0.1:{consul.port}")
    proc.wait_log("synced: ", timeout=30)
    return proc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_health_checked_container_appears_only_when_healthy(registrator, consul, containers):
    proc = start(registrator, consul, "-require-healthy")
    containers.run(
        "healthy.0",
        "-p", "127.0.0.1::80",
        "--health-cmd", "[ -f /tmp/healthy ]",
        "--health-interval", "500ms",
        "--health-retries", "1",
    )  # fmt: skip
    containers.run("nocheck.0", "-p", "127.0.0.1::80")  # no HEALTHCHECK: not held back
    consul.wait_for(lambda s: sid("nocheck.0") in s)
    proc.wait_log(r"healthy\.0 \([0-9a-f]{12}\): services withheld: Docker health is starting")
    assert sid("healthy.0") not in consul.services()

    containers.exec("healthy.0", "echo > /tmp/healthy")
    consul.wait_for(lambda s: sid("healthy.0") in s, timeout=15)

    containers.exec("healthy.0", "rm /tmp/healthy")
    consul.wait_for(lambda s: sid("healthy.0") not in s, timeout=15)
    proc.wait_log(r"healthy\.0 \([0-9a-f]{12}\): services withheld: Docker health is unhealthy")


def test_drain_leaves_consul_at_docker_stop_before_the_container_exits(
    registrator, consul, containers
):
    start(registrator, consul, "-drain")
    slow_exit = 'trap "sleep 5; exit 0" TERM; while true; do sleep 0.1; done'
    containers.run("drain.0", "-p", "127.0.0.1::80", command=["sh", "-c", slow_exit])
    consul.wait_for(lambda s: sid("drain.0") in s)

    stopper = threading.Thread(target=containers.client.containers.get("drain.0").stop)
    stopper.start()
    try:
        consul.wait_for(lambda s: sid("drain.0") not in s, timeout=4)
        state = containers.client.api.inspect_container("drain.0")["State"]
        assert state["Running"], "deregistered only at exit, not at the stop signal"
    finally:
        stopper.join(30)


def test_drained_container_that_survives_the_signal_is_registered_again(
    registrator, consul, containers
):
    proc = start(registrator, consul, "-drain", "-drain-grace", "1")
    # PID 1 without a TERM handler ignores SIGTERM: the container survives the signal
    containers.run("survivor.0", "-p", "127.0.0.1::80")
    consul.wait_for(lambda s: sid("survivor.0") in s)
    containers.client.containers.get("survivor.0").kill(signal="SIGTERM")
    proc.wait_log(r"survivor\.0 \([0-9a-f]{12}\): services withheld: draining")
    proc.wait_log(r"survivor\.0 \([0-9a-f]{12}\) survived the stop signal", timeout=10)
    consul.wait_for(lambda s: sid("survivor.0") in s, timeout=10)


def scrape(port: int) -> dict[str, float]:
    """``/metrics`` as ``name{label=value,...}`` -> value."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def test_metrics_and_healthz_over_http(registrator, consul, containers):
    port = free_port()
    start(
        registrator, consul, "-metrics-addr", f"127.0.0.1:{port}", "-agent-poll", "0.3",
        "-healthz-threshold", "1",
    )  # fmt: skip
    containers.run("metered.0", "-p", "127.0.0.1::80")
    consul.wait_for(lambda s: sid("metered.0") in s)

    # every service it owns, the other containers' on the engine too
    values = wait_until(
        lambda: (
            (v := scrape(port)).get("registrator_services_owned") == len(owned(consul.services()))
            and v
        ),
        what="services_owned to count what it registered",
    )
    assert values["registrator_registrations_total"] >= 1
    assert values["registrator_docker_events_total{action=start}"] >= 1
    assert values["registrator_docker_reachable"] == 1
    assert values["registrator_consul_reachable"] == 1
    assert values["registrator_event_to_registration_seconds_count"] >= 1
    assert 0 <= values["registrator_seconds_since_last_successful_sync"] < 30

    health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "ok"

    consul.stop()
    wait_until(
        lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 503,
        timeout=15,
        what="/healthz to fail with Consul down",
    )
    values = scrape(port)
    assert values["registrator_consul_reachable"] == 0
    assert values["registrator_failures_total{reason=consul_unavailable}"] >= 1


def test_json_logs_have_stable_keys(registrator, consul, containers):
    proc = start(registrator, consul, "-log-format", "json")
    containers.run("jsonlog.0", "-p", "127.0.0.1::80")
    consul.wait_for(lambda s: sid("jsonlog.0") in s)
    proc.wait_log('"action": "register"')

    def records() -> list[dict[str, Any]]:
        return [json.loads(line) for line in proc.logs().splitlines() if line.startswith("{")]

    def registers() -> list[dict[str, Any]]:  # ours: others on the engine are registered too
        return [
            r
            for r in records()
            if r.get("action") == "register" and not foreign(r.get("service_id", ""), ["jsonlog.0"])
        ]

    wait_until(registers, what="jsonlog.0's register record")
    assert records() and all({"time", "level", "message"} <= set(r) for r in records())
    (register,) = registers()
    assert register["container"] == "jsonlog.0"
    assert len(register["container_id"]) == 12
    assert register["service_id"] == sid("jsonlog.0")


def test_systemd_notify_ready_after_sync_and_watchdog_pings(registrator, consul, tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(20)
        proc = registrator(
            "-ip", "127.0.0.1", f"consul://127.0.0.1:{consul.port}",
            env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"},
        )  # fmt: skip
        messages: list[str] = []

        def received(text: str, count: int = 1) -> bool:
            while sum(text in m for m in messages) < count:
                messages.append(sock.recv(4096).decode())
            return True

        assert received("READY=1")
        ready = next(m for m in messages if "READY=1" in m)
        assert "STATUS=synced: " in ready
        assert "synced: " in proc.logs()  # READY only after the first sync
        assert received("WATCHDOG=1", count=3)
        proc.stop()
        assert received("STOPPING=1")
