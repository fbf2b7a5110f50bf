"""The derivation of ECS containers' services (with ``-ecs``), from ``docker inspect`` output
recorded on a real engine (an awsvpc task's pause and app containers, and a bridge-mode task
container; tests/data/ecs_inspect.json) and the ECS agent's answer for the app container's
task (tests/data/ecs_task.json, in the agent's v1 schema)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from registrator.adapters.ecs_agent import parse_task
from registrator.core.derive import DeriveOptions, derive_services
from registrator.core.ecs_rules import AwsvpcNetwork, awsvpc_task_arn
from registrator.core.model import OWNER_META_KEY
from registrator.core.reasons import Reason, Why
from tests.inspect_data import inspect

DATA = Path(__file__).parent / "data"
RECORDED = json.loads((DATA / "ecs_inspect.json").read_text())
TASK = parse_task(json.loads((DATA / "ecs_task.json").read_text()))
ARN = "arn:aws:ecs:eu-west-1:123456789012:task/prod/5e1f0c4a2b3d4e5f8a9b0c1d2e3f4a5b"
ECS = DeriveOptions(hostname="host1", host_ip="10.0.0.7", ecs=True)
ECS_META = {
    "ecs_cluster": "prod",
    "ecs_task_arn": ARN,
    "ecs_task_family": "shop",
    "ecs_task_revision": "12",
    "ecs_container_name": "web",
}


def recorded(
    name: str, env: dict[str, str] | None = None, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """A recorded inspect; ``env`` replaces its SERVICE_* variables, ``labels`` are added."""
    container: dict[str, Any] = copy.deepcopy(RECORDED[name])
    if env is not None:
        kept = [e for e in container["Config"]["Env"] if not e.startswith("SERVICE_")]
        container["Config"]["Env"] = kept + [f"{k}={v}" for k, v in env.items()]
    container["Config"]["Labels"].update(labels or {})
    return container


WEB, PAUSE, BRIDGE = recorded("web"), recorded("pause"), recorded("bridge")
WEB_NETWORK = TASK.network(WEB["Id"])


def services(container, options=ECS, peer=PAUSE, network=WEB_NETWORK):
    return {s.id: s for s in derive_services(container, options, peer, network).services}


def test_the_recorded_task_is_what_the_agent_says_of_the_web_container():
    assert AwsvpcNetwork(("10.0.12.34",), ((80, "tcp"), (8125, "udp"))) == WEB_NETWORK
    assert WEB["HostConfig"]["NetworkMode"] == "container:" + PAUSE["Id"]
    assert PAUSE["HostConfig"]["NetworkMode"] == "none"
    assert WEB["NetworkSettings"]["IPAddress"] == "" and WEB["NetworkSettings"]["Ports"] == {}


def test_awsvpc_ports_at_the_eni_address_with_ecs_meta():
    got = services(WEB)
    tcp, udp = (
        got["host1:ecs-shop-12-web-capture:80"],
        got["host1:ecs-shop-12-web-capture:8125:udp"],
    )
    assert (tcp.name, tcp.address, tcp.port, tcp.tags) == ("shop-80", "10.0.12.34", 80, ())
    assert (udp.name, udp.address, udp.port, udp.tags) == (
        "shop-8125",
        "10.0.12.34",
        8125,
        ("udp",),
    )
    assert tcp.meta_dict == {**ECS_META, OWNER_META_KEY: "host1"}
    assert udp.meta_dict == tcp.meta_dict
    assert len(got) == 2


def test_per_port_keys_are_keyed_by_the_container_port():
    web = recorded(
        "web",
        env={
            "SERVICE_80_NAME": "shop-http",
            "SERVICE_80_CHECK_HTTP": "/health",
            "SERVICE_8125_IGNORE": "1",
            "SERVICE_TAGS": "blue",
        },
    )
    [svc] = services(web).values()
    assert (svc.id, svc.name, svc.port, svc.tags) == (
        "host1:ecs-shop-12-web-capture:80", "shop-http", 80, ("blue",),
    )  # fmt: skip
    assert svc.check is not None and svc.check.http == "http://10.0.12.34:80/health"


def test_ip_and_internal_do_not_apply_use_ip_from_label_wins():
    for options in (ECS._replace(ip="192.0.2.1"), ECS._replace(internal=True)):
        assert {s.address for s in services(WEB, options).values()} == {"10.0.12.34"}
    labelled = recorded("web", labels={"ip.override": "10.9.9.9/24"})
    options = ECS._replace(ip="192.0.2.1", use_ip_from_label="ip.override")
    assert {(s.address, s.port) for s in services(labelled, options).values()} == {
        ("10.9.9.9", 80),
        ("10.9.9.9", 8125),
    }


def test_the_pause_container_is_never_registered():
    derivation = derive_services(PAUSE, ECS, None, WEB_NETWORK)
    assert derivation.services == ()
    assert derivation.skipped == Why(Reason.ECS_PAUSE, "the pause container of an ECS task")
    assert awsvpc_task_arn(PAUSE) == ""


def test_which_containers_are_awsvpc():
    assert awsvpc_task_arn(WEB, PAUSE) == ARN
    assert awsvpc_task_arn(WEB, None) == ""  # the pause container is gone
    assert awsvpc_task_arn(BRIDGE) == ""
    in_none = copy.deepcopy(WEB)
    in_none["HostConfig"]["NetworkMode"] = "none"
    assert awsvpc_task_arn(in_none) == ARN
    assert awsvpc_task_arn(WEB, BRIDGE) == ""  # sharing a bridge container's network
    plain = inspect(network_mode="none", published={})
    assert awsvpc_task_arn(plain) == ""  # not an ECS container


def test_awsvpc_without_an_answer_from_the_agent_registers_nothing():
    derivation = derive_services(WEB, ECS, PAUSE, None)
    assert derivation.services == ()
    assert derivation.skipped == (
        Why(Reason.ECS_WAITING, "awsvpc ECS task, and no answer from the ECS agent")
    )
    no_ports = derive_services(WEB, ECS, PAUSE, AwsvpcNetwork(("10.0.12.34",)))
    assert no_ports.services == () and no_ports.skipped
    assert no_ports.skipped.code == Reason.NO_PORTS
    no_eni = derive_services(WEB, ECS, PAUSE, AwsvpcNetwork((), ((80, "tcp"),)))
    assert no_eni.services == ()  # never an empty or guessed address
    assert no_eni.skipped and no_eni.skipped.code == Reason.NO_ADDRESS


def test_a_bridge_task_container_keeps_dockers_ports_and_gets_the_meta():
    [svc] = services(BRIDGE, peer=None, network=None).values()
    assert (svc.id, svc.address, svc.port) == (
        "host1:ecs-shop-12-bridge-capture:80",
        "127.0.0.1",
        32801,
    )
    assert svc.meta_dict == {**ECS_META, "ecs_container_name": "api", OWNER_META_KEY: "host1"}


def test_the_containers_own_service_keys_win_over_the_labels():
    bridge = recorded("bridge", env={"SERVICE_ECS_CLUSTER": "blue-green"})
    [svc] = services(bridge, peer=None, network=None).values()
    assert svc.meta_dict["ecs_cluster"] == "blue-green"
    assert svc.meta_dict["ecs_task_revision"] == "12"


def test_meta_rules_still_apply_to_ecs_meta():
    long_name = "x" * 600
    bridge = recorded("bridge", labels={"com.amazonaws.ecs.container-name": long_name})
    derivation = derive_services(bridge, ECS)
    [svc] = derivation.services
    assert "ecs_container_name" not in svc.meta_dict  # over 512 bytes: Consul would refuse
    assert any("longer than 512" in str(p) for p in derivation.problems)


@pytest.mark.parametrize(
    "container",
    [
        inspect(name="plain.0", published={"80/tcp": "8080"}, env={"SERVICE_TAGS": "a"}),
        inspect(name="hostnet.0", network_mode="host", exposed=["9000/tcp"], ip=""),
    ],
)
def test_non_ecs_containers_are_unchanged_by_ecs(container):
    off = derive_services(container, ECS._replace(ecs=False))
    assert derive_services(container, ECS) == off and off.services


def test_without_ecs_todays_behaviour():
    off = ECS._replace(ecs=False)
    assert derive_services(WEB, off, PAUSE, WEB_NETWORK).services == ()  # no Docker ports
    [svc] = derive_services(BRIDGE, off).services
    assert svc.meta_dict == {OWNER_META_KEY: "host1"}


def test_an_awsvpc_container_with_a_healthcheck_gets_the_docker_health_check():
    """ECS task definitions' health checks are Docker HEALTHCHECKs: with -health-sync each
    service at the ENI address carries the container's health."""
    web = recorded("web")
    web["State"]["Health"] = {"Status": "unhealthy", "Log": [{"ExitCode": 1, "Output": "503\n"}]}
    got = services(web, ECS._replace(health_sync=True))
    assert {sid: (s.address, s.health_status) for sid, s in got.items()} == {
        "host1:ecs-shop-12-web-capture:80": ("10.0.12.34", "critical"),
        "host1:ecs-shop-12-web-capture:8125:udp": ("10.0.12.34", "critical"),
    }
    health = got["host1:ecs-shop-12-web-capture:80"].health
    assert health is not None and (health.ttl, health.output) == (
        "24h",
        "Docker health is unhealthy; last probe output: 503",
    )
