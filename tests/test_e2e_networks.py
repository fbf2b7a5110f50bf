"""Networks end to end: containers on a dual-stack user-defined network (IPv4 and IPv6
addresses) and the default bridge, the real registrator process, the Consul double.

Docker 20.10 gives every container on such a network an IPv4 address too (IPv6-only networks
came with Docker 28, ``--ipv4=false``), so the IPv6-only case is covered by the recorded
inspects of tests/test_networks.py; here an IPv6 address reaches Consul through ``-ip``, and
the double probes its checks at ``[address]:port``. ``docker network create --ipv6 --subnet``
needs nothing of dockerd's configuration on 20.10."""

from __future__ import annotations

import http.client
import ipaddress
import random
import socket
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import HOSTNAME, SESSION_LABEL, TEST_IMAGE, wait_until
from tests.consul_double import ConsulDouble

pytestmark = pytest.mark.docker


def sid(name: str, port: int) -> str:
    return f"{HOSTNAME}:{name}:{port}"


def docker(*args: str) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def dual_stack() -> Iterator[str]:
    """A network of this test's own with an IPv6 subnet as well as Docker's IPv4 one; removed
    with the test's containers still attached to it."""
    name = f"rtest-dual-{uuid.uuid4().hex[:8]}"
    words = [random.randrange(1, 0xFFFF) for _ in range(2)]
    subnet = f"fd{random.randrange(256):02x}:{words[0]:x}:{words[1]:x}::/64"  # a ULA of its own
    docker("network", "create", "--ipv6", "--subnet", subnet, "--label", SESSION_LABEL, name)
    try:
        yield name
    finally:
        attached = docker("ps", "-aq", "--filter", f"network={name}", "--filter",
                          f"label={SESSION_LABEL}").split()  # fmt: skip
        if attached:
            docker("rm", "-f", *attached)
        docker("network", "rm", name)


def create(
    containers: Any,
    name: str,
    *args: str,
    networks: tuple[str, ...] = (),
    command: tuple[str, ...] = ("sleep", "600"),
) -> None:
    """``docker create``, ``docker network connect`` to each of ``networks``, then ``docker
    start``: attached to all of them when registrator first sees it (Docker 20.10's ``run``
    takes one ``--network``)."""
    docker("create", "--pull=never", "--label", SESSION_LABEL, "--name", name, *args,
           TEST_IMAGE, *command)  # fmt: skip
    containers.names.append(name)
    for network in networks:
        docker("network", "connect", network, name)
    docker("start", name)


def binding_port(docker_client: Any, name: str, host_ip: str, port: str = "8080/tcp") -> int:
    """The host port Docker published ``port`` on at ``host_ip`` (0.0.0.0 or ::)."""
    bindings = docker_client.api.inspect_container(name)["NetworkSettings"]["Ports"][port]
    [found] = [int(b["HostPort"]) for b in bindings if b["HostIp"] == host_ip]
    return found


def http_get(address: str, port: int) -> str:
    """The body of GET /health at ``address``, "" when nothing answers (yet)."""
    connection = http.client.HTTPConnection(address, port, timeout=5)
    try:
        connection.request("GET", "/health")
        return connection.getresponse().read().decode().strip()
    except OSError:
        return ""
    finally:
        connection.close()


SERVE = ("sh", "-c", "mkdir -p /srv && echo ok > /srv/health && httpd -f -p 8080 -h /srv")


def addresses(docker_client: Any, name: str) -> dict[str, tuple[str, str]]:
    """Network -> (IPv4, global IPv6) of a container, as Docker reports them."""
    networks = docker_client.api.inspect_container(name)["NetworkSettings"]["Networks"]
    return {net: (ep["IPAddress"], ep["GlobalIPv6Address"]) for net, ep in networks.items()}


def test_internal_takes_the_bridge_or_the_network_service_network_names(
    registrator, consul, containers, docker_client, dual_stack
):
    create(containers, "dual.0", "--expose", "8080", networks=(dual_stack,))
    create(containers, "dual.1", "--expose", "8080", "--expose", "8081",
           "-e", f"SERVICE_NETWORK={dual_stack}", "-e", "SERVICE_8081_NETWORK=bridge",
           networks=(dual_stack,))  # fmt: skip
    create(containers, "dual.2", "--network", dual_stack, "--expose", "8080", "--expose", "8081",
           "-e", "SERVICE_NETWORK=nope")  # fmt: skip
    dual0, dual1 = addresses(docker_client, "dual.0"), addresses(docker_client, "dual.1")
    assert sorted(dual0) == ["bridge", dual_stack]
    assert dual0[dual_stack][1] and dual1[dual_stack][1]  # each has an IPv6 address there too
    proc = registrator("-internal", f"consul://127.0.0.1:{consul.port}")
    proc.wait_log("synced: ", timeout=30)

    ids = {sid("dual.0", 8080), sid("dual.1", 8080), sid("dual.1", 8081)}
    services = consul.wait_for(lambda s: ids <= set(s))
    assert services[sid("dual.0", 8080)]["Address"] == dual0["bridge"][0]
    assert services[sid("dual.1", 8080)]["Address"] == dual1[dual_stack][0]
    assert services[sid("dual.1", 8081)]["Address"] == dual1["bridge"][0]
    assert all(services[i]["Port"] == int(i.rsplit(":", 1)[1]) for i in ids)
    assert not any(service_id.startswith(f"{HOSTNAME}:dual.2:") for service_id in services)
    warning = proc.wait_log(
        r"container dual\.2 \([0-9a-f]{12}\): SERVICE_NETWORK: not attached to network 'nope' "
        rf"\(its networks: {dual_stack}\); not registered"
    )
    assert proc.logs().count(warning.group(0)) == 1  # two ports, one warning


@pytest.fixture
def probing_consul() -> Iterator[ConsulDouble]:
    with ConsulDouble(run_checks=True) as double:
        yield double


def test_an_ipv6_address_is_registered_bare_and_probed_in_brackets(
    registrator, probing_consul, containers, docker_client, dual_stack
):
    consul = probing_consul
    serve = ("sh", "-c", "mkdir -p /srv && echo ok > /srv/health && httpd -f -p 8080 -h /srv")
    create(containers, "v6.0", "--network", dual_stack, "-p", "8080",
           "-e", "SERVICE_CHECK_HTTP=/health", "-e", "SERVICE_CHECK_1_TCP=true",
           "-e", "SERVICE_CHECK_INTERVAL=1s", "-e", "SERVICE_CHECK_1_INTERVAL=1s",
           command=serve)  # fmt: skip
    host_port = binding_port(docker_client, "v6.0", "::")
    proc = registrator("-ip", "::1", f"consul://127.0.0.1:{consul.port}")
    proc.wait_log("synced: ", timeout=30)

    service_id = sid("v6.0", 8080)
    services = consul.wait_for(lambda s: service_id in s)
    assert (services[service_id]["Address"], services[service_id]["Port"]) == ("::1", host_port)
    http, tcp = f"service:{service_id}", f"service:{service_id}:1"
    checks = wait_until(
        lambda: (
            (c := consul.checks()).get(http, {}).get("Status") == "passing"
            and c.get(tcp, {}).get("Status") == "passing"
            and c
        ),
        20,
        "both checks passing",
    )
    assert f"http://[::1]:{host_port}/health" in checks[http]["Output"]
    assert f"[::1]:{host_port}" in checks[tcp]["Output"]


def test_an_ipv6_ip_registers_the_port_published_on_ipv6(
    registrator, consul, containers, docker_client
):
    # Docker 20.10 draws the ports of 0.0.0.0 and of :: from separate allocators: two
    # containers that publish on IPv4 only put them out of step, on any engine.
    for n in range(2):
        create(containers, f"v4only.{n}", "-p", "0.0.0.0::80")
    create(containers, "both.0", "-p", "8080", "-e", "SERVICE_NAME=both", command=SERVE)
    create(containers, "loop.0", "-p", "127.0.0.1::8080", "-e", "SERVICE_NAME=loop")
    on_v4 = binding_port(docker_client, "both.0", "0.0.0.0")
    on_v6 = binding_port(docker_client, "both.0", "::")
    assert on_v4 != on_v6, "the allocators did not diverge"
    proc = registrator("-ip", "::1", f"consul://127.0.0.1:{consul.port}")
    proc.wait_log("synced: ", timeout=30)

    services = consul.wait_for(lambda s: sid("both.0", 8080) in s)
    service = services[sid("both.0", 8080)]
    assert (service["Address"], service["Port"]) == ("::1", on_v6)
    assert wait_until(lambda: http_get(service["Address"], service["Port"]), 20, "an answer")
    # published on 127.0.0.1 only: no port of an IPv6 address, so nothing, and one warning
    assert sid("loop.0", 8080) not in services
    warning = proc.wait_log(
        r"container loop\.0 \([0-9a-f]{12}\): -ip: port 8080/tcp is published only on "
        r"127\.0\.0\.1:\d+, none for an IPv6 address \(::1\); not registered"
    )
    assert proc.logs().count(warning.group(0)) == 1


def test_a_port_published_from_a_user_defined_network_is_registered_where_it_is_published(
    registrator, consul, containers, docker_client
):
    network = f"rtest-app-{uuid.uuid4().hex[:8]}"
    docker("network", "create", "--label", SESSION_LABEL, network)
    try:
        create(containers, "appnet.0", "--network", network, "-p", "8080", command=SERVE)
        proc = registrator(f"consul://127.0.0.1:{consul.port}")
        proc.wait_log("synced: ", timeout=30)
        services = consul.wait_for(lambda s: sid("appnet.0", 8080) in s)
        service = services[sid("appnet.0", 8080)]
        host_ip = socket.gethostbyname(HOSTNAME)  # the address of ports published on 0.0.0.0
        assert (service["Address"], service["Port"]) == (
            host_ip, binding_port(docker_client, "appnet.0", "0.0.0.0")
        )  # fmt: skip
        if ipaddress.ip_address(host_ip).is_loopback:  # traffic stays on this machine
            assert wait_until(lambda: http_get(host_ip, service["Port"]), 20, "an answer")
    finally:
        docker("rm", "-f", "appnet.0")
        docker("network", "rm", network)
