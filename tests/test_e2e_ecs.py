"""ECS tasks (``-ecs``) end to end: containers laid out on the real Docker engine as the ECS
agent lays out a task (an awsvpc task: a pause container in network mode ``none`` and app
containers in ``container:<pause>``; a bridge task: published ports), the ECS agent double
answering for them with the containers' real Docker IDs (its ENI addresses are data only: no
traffic goes to them), the real registrator process and the Consul double."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.conftest import (
    HOSTNAME,
    SESSION_LABEL,
    TEST_IMAGE,
    ours_requests,
    run_cli,
    wait_until,
)
from tests.consul_double import ConsulDouble, RecordedRequest
from tests.ecs_agent_double import DoubleContainer, EcsAgentDouble, EcsRequest
from tests.test_e2e_operable import free_port, scrape

pytestmark = pytest.mark.docker

PAUSE = "~internal~ecs~pause"


@pytest.fixture
def ecs_agent() -> Iterator[EcsAgentDouble]:
    with EcsAgentDouble() as double:
        yield double


def new_task_arn() -> str:
    return f"arn:aws:ecs:eu-west-1:123456789012:task/e2e/{uuid.uuid4().hex}"


def ecs_labels(task_arn: str, container_name: str) -> list[str]:
    labels = {
        "com.amazonaws.ecs.cluster": "e2e",
        "com.amazonaws.ecs.task-arn": task_arn,
        "com.amazonaws.ecs.task-definition-family": "shop",
        "com.amazonaws.ecs.task-definition-version": "3",
        "com.amazonaws.ecs.container-name": container_name,
    }
    return [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]


def ecs_meta(task_arn: str, container_name: str) -> dict[str, str]:
    return {
        "ecs_cluster": "e2e",
        "ecs_task_arn": task_arn,
        "ecs_task_family": "shop",
        "ecs_task_revision": "3",
        "ecs_container_name": container_name,
    }


def sid(name: str, port: int, udp: bool = False) -> str:
    return f"{HOSTNAME}:{name}:{port}" + (":udp" if udp else "")


def create(containers: Any, name: str, *args: str) -> str:
    """``docker create`` (the ID is known before the container starts); cleaned up with the
    other test containers."""
    argv = ["docker", "create", "--pull=never", "--label", SESSION_LABEL, "--name", name]
    result = subprocess.run(
        [*argv, *args, TEST_IMAGE, "sleep", "600"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    containers.names.append(name)
    return result.stdout.strip()


def docker(*args: str) -> None:
    subprocess.run(["docker", *args], capture_output=True, timeout=60, check=True)


def awsvpc_task(
    containers: Any,
    ecs_agent: EcsAgentDouble,
    prefix: str,
    apps: dict[str, list[tuple[int, str]]],
    ipv4: list[str],
    start: bool = True,
    app_args: tuple[str, ...] = (),
) -> tuple[str, dict[str, str]]:
    """An awsvpc task as the ECS agent makes one: the pause container in ``none``, then the
    app containers (each also given ``app_args``) in its network; the agent double knows the
    task with their Docker IDs. Returns the task ARN and the app containers' names by their
    ECS container names."""
    arn = new_task_arn()
    pause_name = f"{prefix}-pause"
    pause_id = containers.run(pause_name, "--network", "none", *ecs_labels(arn, PAUSE))
    task = [DoubleContainer(pause_id, PAUSE, internal=True)]
    names = {}
    for ecs_name, ports in apps.items():
        names[ecs_name] = f"{prefix}-{ecs_name}"
        app_id = create(
            containers,
            names[ecs_name],
            "--network",
            f"container:{pause_name}",
            *ecs_labels(arn, ecs_name),
            *app_args,
        )
        task.append(DoubleContainer(app_id, ecs_name, ports))
    ecs_agent.add_task(arn, task, family="shop", version="3", ipv4=ipv4)
    if start:
        for name in names.values():
            docker("start", name)
    return arn, names


def start(registrator: Any, consul: ConsulDouble, ecs_agent: EcsAgentDouble, *flags: str) -> Any:
    # -ip is given on purpose: it must not apply to an awsvpc task's own address
    proc = registrator(
        "-ip", "127.0.0.1", "-ecs", "-ecs-agent-uri", ecs_agent.url, *flags,
        f"consul://127.0.0.1:{consul.port}",
    )  # fmt: skip
    proc.wait_log("synced: ", timeout=30)
    return proc


def registers_of(consul: ConsulDouble, service_id: str) -> list[tuple[RecordedRequest, Any]]:
    """Every register request the Consul double got for this service ID, with its body."""
    found = []
    for request in consul.writes():
        if request.path != "/v1/agent/service/register":
            continue
        body = {str(k).lower(): v for k, v in json.loads(request.body).items()}
        if body.get("id") == service_id:
            found.append((request, body))
    return found


def task_requests_about(ecs_agent: EcsAgentDouble, *names: str) -> list[EcsRequest]:
    """The agent double's ``/v1/tasks`` requests, without those about containers the test did
    not create (another checkout's ECS-labelled containers on the same engine)."""
    result = subprocess.run(
        ["docker", "inspect", "--format", "{{.Id}}", *names],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    ids = set(result.stdout.split())
    return [r for r in ecs_agent.task_requests() if r.query.get("dockerid", [""])[0] in ids | {""}]


def test_awsvpc_task_registers_at_its_eni_address_and_goes_on_stop(
    registrator, consul, containers, ecs_agent
):
    arn, names = awsvpc_task(
        containers,
        ecs_agent,
        "shop1",
        {"web": [(80, "tcp"), (8125, "udp")], "worker": [(9000, "tcp")]},
        ipv4=["10.0.12.34"],
    )
    web, worker = names["web"], names["worker"]
    start(registrator, consul, ecs_agent)
    ids = {sid(web, 80), sid(web, 8125, udp=True), sid(worker, 9000)}
    services = consul.wait_for(lambda s: ids <= set(s))

    http = services[sid(web, 80)]
    assert (http["Service"], http["Address"], http["Port"]) == ("busybox-80", "10.0.12.34", 80)
    assert http["Meta"] == {**ecs_meta(arn, "web"), "registrator": HOSTNAME}
    udp = services[sid(web, 8125, udp=True)]
    assert (udp["Address"], udp["Port"], udp["Tags"]) == ("10.0.12.34", 8125, ["udp"])
    other = services[sid(worker, 9000)]
    assert (other["Address"], other["Port"]) == ("10.0.12.34", 9000)
    assert other["Meta"]["ecs_container_name"] == "worker"
    assert not any("pause" in service_id for service_id in services)
    # one request served both containers
    assert len(task_requests_about(ecs_agent, web, worker, "shop1-pause")) == 1

    docker("stop", "-t", "1", web)
    consul.wait_for(lambda s: not ({sid(web, 80), sid(web, 8125, True)} & set(s)))
    assert sid(worker, 9000) in consul.services()


def test_health_sync_follows_an_awsvpc_app_container(registrator, consul, containers, ecs_agent):
    """An ECS task definition's health check is the app container's HEALTHCHECK: with
    -health-sync its service at the ENI address carries it, following Docker's events."""
    start(registrator, consul, ecs_agent, "-health-sync")
    probe = ("--health-cmd", "[ -f /tmp/ok ]", "--health-interval", "500ms")
    _, names = awsvpc_task(
        containers, ecs_agent, "shop-hs", {"web": [(80, "tcp")]}, ["10.0.40.5"],
        app_args=(*probe, "--health-retries", "1"),
    )  # fmt: skip
    service_id = sid(names["web"], 80)
    health = f"service:{service_id}:docker-health"

    def status() -> str:
        return str(consul.checks().get(health, {}).get("Status", ""))

    services = consul.wait_for(lambda s: service_id in s)
    assert services[service_id]["Address"] == "10.0.40.5"
    wait_until(lambda: status() == "critical", 20, "critical while /tmp/ok is missing")
    for script, want in (("touch /tmp/ok", "passing"), ("rm /tmp/ok", "critical")):
        containers.exec(names["web"], script)
        wait_until(lambda: status() == want, 15, want)  # noqa: B023
    assert service_id in consul.services()  # visible as critical, not removed
    # each health change re-reads the container, not the task: the ECS agent was asked once
    assert len(task_requests_about(ecs_agent, names["web"], "shop-hs-pause")) == 1


def test_bridge_task_uses_dockers_ports_and_a_pending_task_waits_for_its_eni(
    registrator, consul, containers, ecs_agent, docker_client
):
    proc = start(registrator, consul, ecs_agent)
    bridge_arn = new_task_arn()
    containers.run("shop2-api", "-p", "127.0.0.1::80", *ecs_labels(bridge_arn, "api"))
    service = consul.wait_for(lambda s: sid("shop2-api", 80) in s)[sid("shop2-api", 80)]
    published = docker_client.api.inspect_container("shop2-api")["NetworkSettings"]["Ports"]
    assert (service["Address"], service["Port"]) == (
        "127.0.0.1", int(published["80/tcp"][0]["HostPort"]),
    )  # fmt: skip
    assert service["Meta"] == {**ecs_meta(bridge_arn, "api"), "registrator": HOSTNAME}
    assert task_requests_about(ecs_agent, "shop2-api") == []  # a bridge task needs no question

    # An awsvpc task starts while registrator runs; the agent has not attached its ENI yet.
    arn, names = awsvpc_task(
        containers, ecs_agent, "shop2", {"web": [(8080, "tcp")]}, ipv4=[], start=False
    )
    docker("start", names["web"])
    proc.wait_log(
        r"shop2-web \([0-9a-f]{12}\): not registered: task \S+ has no ENI address yet "
        r"\(KnownStatus PENDING\); retrying until the ECS agent answers"
    )
    ecs_agent.attach_eni(arn, ["10.0.13.7"])
    attached = time.monotonic()
    service = consul.wait_for(lambda s: sid(names["web"], 8080) in s)[sid(names["web"], 8080)]
    assert time.monotonic() - attached < 5
    assert (service["Address"], service["Port"]) == ("10.0.13.7", 8080)
    assert [body["address"] for _, body in registers_of(consul, sid(names["web"], 8080))] == [
        "10.0.13.7"
    ]


def test_agent_down_at_start_then_up(registrator, consul, containers, ecs_agent):
    _, names = awsvpc_task(containers, ecs_agent, "shop3", {"web": [(80, "tcp")]}, ["10.0.14.1"])
    web_id = sid(names["web"], 80)
    containers.run("plain3", "-p", "127.0.0.1::80")
    ecs_agent.stop()
    metrics_port = free_port()
    proc = start(registrator, consul, ecs_agent, "-metrics-addr", f"127.0.0.1:{metrics_port}")

    consul.wait_for(lambda s: sid("plain3", 80) in s)  # nothing else waits
    proc.wait_log(
        r"shop3-web \([0-9a-f]{12}\): not registered: the ECS agent at \S+ is unreachable"
    )
    wait_until(
        lambda: (
            scrape(metrics_port).get("registrator_failures_total{reason=ecs_unavailable}", 0) >= 3
        ),
        timeout=15,
        what="two retries while the ECS agent is down",
    )
    values = scrape(metrics_port)
    assert values["registrator_ecs_agent_reachable"] == 0
    health = requests.get(f"http://127.0.0.1:{metrics_port}/healthz", timeout=5).json()
    assert health["ecs_unreachable_seconds"] > 0
    assert web_id not in consul.services()

    ecs_agent.start()  # same port
    up = time.monotonic()
    consul.wait_for(lambda s: web_id in s, timeout=10)
    assert time.monotonic() - up < 5
    registers = registers_of(consul, web_id)
    assert [(body["address"], body["port"]) for _, body in registers] == [("10.0.14.1", 80)]
    assert all(request.time >= up for request, _ in registers)  # never before it answered
    assert len(re.findall(r"shop3-web \([0-9a-f]{12}\): not registered:", proc.logs())) == 1
    proc.wait_log(r"shop3-web \([0-9a-f]{12}\): the ECS agent answered; registering")
    assert scrape(metrics_port)["registrator_ecs_agent_reachable"] == 1


def test_restart_with_the_agent_down_keeps_what_was_registered(
    registrator, consul, containers, ecs_agent
):
    _, names = awsvpc_task(containers, ecs_agent, "shop4", {"web": [(80, "tcp")]}, ["10.0.15.1"])
    web_id = sid(names["web"], 80)
    first = start(registrator, consul, ecs_agent, "-cleanup", "-agent-poll", "0.2")
    consul.wait_for(lambda s: web_id in s)
    first.stop()

    ecs_agent.stop()
    consul.clear_requests()
    proc = start(registrator, consul, ecs_agent, "-cleanup", "-agent-poll", "0.2")
    proc.wait_log(
        r"shop4-web \([0-9a-f]{12}\): not registered: the ECS agent at \S+ is unreachable"
    )
    consul.wait_for_requests(
        lambda rs: sum(r.path == "/v1/agent/services" for r in rs) >= 4, timeout=10
    )  # several comparisons with the agent, with -cleanup, while the ECS agent is down
    assert web_id in consul.services()  # not known to be wrong: not removed
    ecs_agent.start()
    proc.wait_log(r"shop4-web \([0-9a-f]{12}\): the ECS agent answered; registering")
    assert ours_requests(consul.writes(), names.values()) == []  # and unchanged: nothing to write


def test_dry_run_plan_and_resync_show_awsvpc_services(registrator, consul, containers, ecs_agent):
    arn, names = awsvpc_task(containers, ecs_agent, "shop5", {"web": [(80, "tcp")]}, ["10.0.16.1"])
    web_id = sid(names["web"], 80)
    flags = ["-ecs", "-ecs-agent-uri", ecs_agent.url, "-ip", "127.0.0.1"]
    uri = f"consul://127.0.0.1:{consul.port}"

    dry = registrator("-dry-run", *flags, uri)
    dry.wait_log(
        rf"dry-run: would register shop5-web \([0-9a-f]{{12}}\): service {web_id} "
        r"\(name busybox, 10\.0\.16\.1:80, tags \[\]\)"
    )
    dry.stop()
    assert consul.requests() == []

    plan = run_cli("plan", "-json", *flags, uri)
    assert plan.returncode == 2, plan.stderr
    [change] = [c for c in json.loads(plan.stdout)["changes"] if c["id"] == web_id]
    assert (change["action"], change["address"], change["port"]) == ("add", "10.0.16.1", 80)
    assert change["meta"]["ecs_task_arn"] == arn

    resync = run_cli("resync", *flags, uri)
    assert resync.returncode == 0, resync.stderr
    assert f"added      {web_id}  (busybox 10.0.16.1:80)" in resync.stdout
    assert consul.services()[web_id]["Address"] == "10.0.16.1"

    ecs_agent.stop()
    down = run_cli("plan", *flags, uri)
    assert down.returncode == 1
    assert "ECS agent failed for shop5-web (" in down.stderr and "unreachable" in down.stderr
