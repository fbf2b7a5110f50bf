"""The ECS agent double answers as amazon-ecs-agent's v1 handlers do (read with a plain HTTP
client, not registrator's)."""

from __future__ import annotations

import http.client
import json
import socket

import pytest

from tests.ecs_agent_double import DoubleContainer, EcsAgentDouble

ARN = "arn:aws:ecs:eu-west-1:123456789012:task/test-cluster/8f1c2e3d4b5a"
PAUSE_ID = "aa" + "0" * 62
WEB_ID = "ab" + "1" * 62
SIDECAR_ID = "ab" + "2" * 62


def get(agent: EcsAgentDouble, path: str, timeout: float = 5.0) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


@pytest.fixture
def agent():
    with EcsAgentDouble() as double:
        double.add_task(
            ARN,
            [
                DoubleContainer(PAUSE_ID, "~internal~ecs~pause", internal=True),
                DoubleContainer(WEB_ID, "web", [(80, "tcp"), (53, "udp")]),
                DoubleContainer(SIDECAR_ID, "sidecar"),
            ],
            family="web",
            version="7",
            ipv4=["10.0.1.23"],
        )
        yield double


def test_task_by_full_docker_id_in_the_agents_schema(agent):
    status, content_type, body = get(agent, f"/v1/tasks?dockerid={WEB_ID}")
    assert (status, content_type) == (200, "text/plain; charset=utf-8")  # Go sniffs the type
    task = json.loads(body)
    assert list(task) == ["Arn", "DesiredStatus", "KnownStatus", "Family", "Version", "Containers"]
    assert (task["Arn"], task["KnownStatus"], task["Family"], task["Version"]) == (
        ARN, "RUNNING", "web", "7",
    )  # fmt: skip
    by_id = {c["DockerId"]: c for c in task["Containers"]}
    assert set(by_id) == {WEB_ID, SIDECAR_ID}  # the pause container is internal: left out
    web = by_id[WEB_ID]
    assert web["Name"] == "web" and web["DockerName"].startswith("ecs-web-7-web-")
    assert web["Ports"] == [
        {"ContainerPort": 80, "Protocol": "tcp", "HostPort": 80},
        {"ContainerPort": 53, "Protocol": "udp", "HostPort": 53},
    ]
    assert web["Networks"] == [{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.1.23"]}]
    assert "Ports" not in by_id[SIDECAR_ID]  # omitempty


def test_short_ids_pause_ids_and_ambiguity(agent):
    assert json.loads(get(agent, f"/v1/tasks?dockerid={WEB_ID[:12]}")[2])["Arn"] == ARN
    assert json.loads(get(agent, f"/v1/tasks?dockerid={PAUSE_ID}")[2])["Arn"] == ARN
    # "ab" prefixes two containers: the agent refuses with an empty body
    assert get(agent, "/v1/tasks?dockerid=ab")[0::2] == (400, b"")
    # a 13-character ID is looked up exactly
    assert get(agent, f"/v1/tasks?dockerid={WEB_ID[:13]}")[0] == 404


def test_not_found_both_parameters_by_arn_and_the_list(agent):
    status, _, body = get(agent, "/v1/tasks?dockerid=" + "f" * 64)
    assert status == 404
    assert body == b'{"Arn":"","KnownStatus":"","Family":"","Version":"","Containers":null}'
    assert get(agent, f"/v1/tasks?dockerid={WEB_ID}&taskarn={ARN}")[0::2] == (400, b"")
    assert json.loads(get(agent, f"/v1/tasks?taskarn={ARN}")[2])["Family"] == "web"
    assert get(agent, "/v1/tasks?taskarn=arn:nope")[0] == 404
    listing = json.loads(get(agent, "/v1/tasks")[2])
    assert [t["Arn"] for t in listing["Tasks"]] == [ARN]
    status, content_type, body = get(agent, "/v1/metadata")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body)["Cluster"] == "test-cluster"
    assert json.loads(get(agent, "/v1/tasks/")[2])["AvailableCommands"][1] == "/v1/tasks"


def test_pending_task_has_no_networks_until_its_eni_is_attached(agent):
    pending = "arn:aws:ecs:eu-west-1:123456789012:task/test-cluster/pending"
    agent.add_task(pending, [DoubleContainer("c" * 64, "app", [(8080, "tcp")])])
    task = json.loads(get(agent, f"/v1/tasks?taskarn={pending}")[2])
    assert task["KnownStatus"] == "PENDING"
    assert task["Containers"][0] == {
        "DockerId": "c" * 64,
        "DockerName": task["Containers"][0]["DockerName"],
        "Name": "app",
        "Ports": [{"ContainerPort": 8080, "Protocol": "tcp"}],  # no HostPort without an ENI
    }
    agent.attach_eni(pending, ["10.0.9.9"])
    container = json.loads(get(agent, f"/v1/tasks?taskarn={pending}")[2])["Containers"][0]
    assert container["Networks"][0]["IPv4Addresses"] == ["10.0.9.9"]
    assert container["Ports"][0]["HostPort"] == 8080


def test_desired_status_left_out_when_it_contradicts_known_status(agent):
    stopped = "arn:aws:ecs:eu-west-1:123456789012:task/test-cluster/stopped"
    agent.add_task(stopped, [], ipv4=["10.0.3.3"], known_status="STOPPED")
    task = json.loads(get(agent, f"/v1/tasks?taskarn={stopped}")[2])
    assert "DesiredStatus" not in task and task["Containers"] == []


def test_down_slow_404_and_garbage(agent):
    agent.stop()
    with pytest.raises(ConnectionRefusedError):
        get(agent, "/v1/metadata")
    agent.start()  # same port
    assert get(agent, "/v1/metadata")[0] == 200

    agent.slow_seconds = 60.0  # released when the double stops
    agent.fail("slow")
    with pytest.raises(socket.timeout):
        get(agent, f"/v1/tasks?dockerid={WEB_ID}", timeout=0.2)
    agent.fail("404")
    assert get(agent, f"/v1/tasks?dockerid={WEB_ID}")[0] == 404
    agent.fail("garbage")
    assert get(agent, f"/v1/tasks?dockerid={WEB_ID}")[0::2] == (
        200,
        b"<html>502 Bad Gateway</html>",
    )
    agent.fail(None)
    assert get(agent, f"/v1/tasks?dockerid={WEB_ID}")[0] == 200
    statuses = [r.status for r in agent.task_requests()]
    assert statuses[-3:] == [404, 200, 200]
