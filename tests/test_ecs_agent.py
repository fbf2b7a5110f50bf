"""The ECS agent adapter against the ECS agent double: answers, every failure shape, and one
request per task."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from registrator.adapters.ecs_agent import (
    EcsAgent,
    EcsAgentError,
    EcsAgentTimeout,
    EcsAgentUnavailable,
    EcsBadAnswer,
    EcsNoAddressYet,
    EcsTaskNotFound,
    parse_task,
)
from registrator.core.config import ConfigError, parse_ecs_agent_uri
from registrator.core.ecs_rules import AwsvpcNetwork
from tests.ecs_agent_double import DoubleContainer, EcsAgentDouble

ARN = "arn:aws:ecs:eu-west-1:123456789012:task/test-cluster/0f0e0d0c0b0a"


def docker_id(n: int) -> str:
    return f"{n:02x}" * 32


@pytest.fixture
def double():
    with EcsAgentDouble() as agent:
        yield agent


def add_task(double: EcsAgentDouble, arn: str = ARN, count: int = 2, ipv4=("10.0.4.5",)):
    containers = [DoubleContainer(docker_id(200), "~internal~ecs~pause", internal=True)]
    containers += [
        DoubleContainer(docker_id(n), f"app{n}", [(8000 + n, "tcp"), (53, "udp")])
        for n in range(count)
    ]
    return double.add_task(arn, containers, ipv4=ipv4)


def test_network_of_an_awsvpc_container(double):
    add_task(double)
    assert EcsAgent(double.url).network(ARN, docker_id(1)) == AwsvpcNetwork(
        ("10.0.4.5",), ((8001, "tcp"), (53, "udp"))
    )
    [request] = double.task_requests()
    assert request.query == {"dockerid": [docker_id(1)]}  # the full ID


def test_one_request_serves_every_container_of_a_task(double):
    add_task(double, count=5)
    agent = EcsAgent(double.url)
    for n in range(5):
        assert agent.network(ARN, docker_id(n)).ipv4_addresses == ("10.0.4.5",)
    assert len(double.task_requests()) == 1
    agent.forget(ARN)  # the task's containers are gone
    agent.network(ARN, docker_id(0))
    assert len(double.task_requests()) == 2


def test_concurrent_asks_for_one_task_share_one_request(double):
    add_task(double, count=6)
    double.slow_seconds = 0.3  # keep the first request in flight while the others ask
    double.fail("slow")
    agent = EcsAgent(double.url)
    with ThreadPoolExecutor(6) as pool:
        networks = list(pool.map(lambda n: agent.network(ARN, docker_id(n)), range(6)))
    assert {n.ports[0][0] for n in networks} == {8000 + n for n in range(6)}
    assert len(double.task_requests()) == 1


def test_a_container_the_cached_task_does_not_list_is_asked_for(double):
    task = add_task(double, count=1)
    agent = EcsAgent(double.url)
    agent.network(ARN, docker_id(0))
    # ECS starts the task's containers in dependency order: a later one is not in the cache
    task.containers.append(DoubleContainer(docker_id(9), "late", [(9000, "tcp")]))
    assert agent.network(ARN, docker_id(9)).ports == ((9000, "tcp"),)
    assert len(double.task_requests()) == 2


def test_unreachable_timeout_404_garbage_and_pending(double):
    seen: list[EcsAgentError | None] = []
    add_task(double)
    agent = EcsAgent(double.url, timeout=0.3, observer=seen.append)

    double.stop()
    with pytest.raises(EcsAgentUnavailable, match="unreachable: Connection refused"):
        agent.network(ARN, docker_id(0))
    double.start()

    double.slow_seconds = 30  # released when the double stops
    double.fail("slow")
    started = time.monotonic()
    with pytest.raises(EcsAgentTimeout, match=r"did not answer within 0\.3s"):
        agent.network(ARN, docker_id(0))
    assert time.monotonic() - started < 2

    double.fail("404")
    with pytest.raises(EcsTaskNotFound, match="404"):
        agent.network(ARN, docker_id(0))
    double.fail("garbage")
    with pytest.raises(EcsBadAnswer, match="not JSON"):
        agent.network(ARN, docker_id(0))
    double.fail("garbage", body='{"Arn": "x", "Containers": {}}')
    with pytest.raises(EcsBadAnswer, match="Containers is not a list"):
        agent.network(ARN, docker_id(0))
    double.fail(None)

    pending = "arn:aws:ecs:eu-west-1:123456789012:task/test-cluster/pending"
    double.add_task(pending, [DoubleContainer(docker_id(30), "app", [(80, "tcp")])])
    with pytest.raises(EcsNoAddressYet, match=r"no ENI address yet \(KnownStatus PENDING"):
        agent.network(pending, docker_id(30))
    double.attach_eni(pending, ["10.0.7.7"])  # not cached while pending: asked again
    assert agent.network(pending, docker_id(30)).ipv4_addresses == ("10.0.7.7",)

    kinds = [type(e).__name__ if e else None for e in seen]
    assert kinds == [
        "EcsAgentUnavailable", "EcsAgentTimeout", "EcsTaskNotFound", "EcsBadAnswer",
        "EcsBadAnswer", None, None,
    ]  # fmt: skip
    assert [e.answered for e in seen if e] == [False, False, True, True, True]


def test_a_running_task_without_an_eni_has_no_address(double):
    none_mode = "arn:aws:ecs:eu-west-1:123456789012:task/test-cluster/none-mode"
    double.add_task(none_mode, [DoubleContainer(docker_id(40), "app")], known_status="RUNNING")
    agent = EcsAgent(double.url)
    assert agent.network(none_mode, docker_id(40)) == AwsvpcNetwork(())
    assert agent.network(none_mode, docker_id(40)) == AwsvpcNetwork(())  # definitive: cached
    assert len(double.task_requests()) == 1


def test_a_task_other_than_the_label_says_is_refused(double):
    add_task(double)
    with pytest.raises(EcsBadAnswer, match="its label says arn:other"):
        EcsAgent(double.url).network("arn:other", docker_id(0))


def test_no_proxy_is_used(double, monkeypatch):
    add_task(double)
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert EcsAgent(double.url).network(ARN, docker_id(0)).ipv4_addresses == ("10.0.4.5",)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "the answer is not a JSON object"),
        ({"Arn": "", "Containers": []}, "Arn '' is not a non-empty string"),
        ({"Arn": "a", "Containers": [{"DockerId": 5}]}, "DockerId 5 is not"),
        ({"Arn": "a", "Containers": [{"Ports": [{"ContainerPort": 0}]}]}, "not a port number"),
        ({"Arn": "a", "Containers": [{"Ports": [{"ContainerPort": True}]}]}, "not a port"),
        (
            {"Arn": "a", "Containers": [{"Ports": [{"ContainerPort": 80, "Protocol": "sctp"}]}]},
            "protocol 'sctp'",
        ),
        ({"Arn": "a", "Containers": [{"Networks": {}}]}, "Networks is not a list"),
        (
            {"Arn": "a", "Containers": [{"Networks": [{"IPv4Addresses": ["10.0.0.300"]}]}]},
            "'10.0.0.300' is not an IPv4 address",
        ),
        (
            {"Arn": "a", "Containers": [{"Networks": [{"IPv4Addresses": [167772161]}]}]},
            "167772161 is not an IPv4 address",
        ),
    ],
)
def test_answers_not_in_the_documented_shape(body, message):
    with pytest.raises(EcsBadAnswer, match=message):
        parse_task(body)


@pytest.mark.parametrize(
    ("uri", "address"),
    [
        ("http://127.0.0.1:51678", ("127.0.0.1", 51678)),
        ("http://localhost:51678/", ("localhost", 51678)),
        ("http://[::1]:51678", ("::1", 51678)),
        ("http://127.0.0.1", ("127.0.0.1", 80)),
    ],
)
def test_agent_uri(uri, address):
    assert parse_ecs_agent_uri(uri) == address


@pytest.mark.parametrize(
    "uri",
    [
        "https://127.0.0.1:51678",
        "127.0.0.1:51678",
        "http://",
        "http://127.0.0.1:0",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:51678/v1",
        "http://127.0.0.1:51678?x=1",
        "http://user:pw@127.0.0.1:51678",
    ],
)
def test_bad_agent_uri(uri):
    with pytest.raises(ConfigError, match="-ecs-agent-uri"):
        parse_ecs_agent_uri(uri)


def test_callers_waiting_together_share_one_failure(double):
    add_task(double, count=4)
    double.slow_seconds = 30  # released when the double stops
    double.fail("slow")
    seen: list[EcsAgentError | None] = []
    agent = EcsAgent(double.url, timeout=1.0, observer=seen.append)
    gate = threading.Barrier(4)

    def ask(n: int) -> str:
        gate.wait()
        try:
            agent.network(ARN, docker_id(n))
        except EcsAgentTimeout as exc:
            return str(exc)
        return "answered"

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(ask, range(4)))
    assert all("did not answer within 1s" in r for r in results)
    assert len(seen) == 1  # one request timed out; the others waited for it
    double.fail(None)
    agent.network(ARN, docker_id(0))  # the failure was not cached: asked again
    assert seen[1:] == [None]
