"""Which network gives a service its address (``SERVICE_NETWORK`` and the documented rule),
and IPv6 addresses, on ``docker inspect`` output recorded on Docker 20.10 and the same
containers in the Engine API 1.52 (Docker 29) shape (tests/data/network_inspect.json); an
awsvpc ECS task whose ENI has only IPv6 addresses."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registrator.adapters.ecs_agent import EcsAgent, EcsBadAnswer, parse_task
from registrator.core.container import ContainerView
from registrator.core.derive import Derivation, DeriveOptions, derive_services
from registrator.core.ecs_rules import AwsvpcNetwork
from registrator.core.networks import join_host_port
from registrator.core.reasons import Reason, Why
from tests.ecs_agent_double import DoubleContainer, EcsAgentDouble
from tests.inspect_data import inspect
from tests.test_derive_ecs import ECS, PAUSE, WEB
from tests.test_derive_ecs import recorded as ecs_recorded

DATA = Path(__file__).parent / "data"
RECORDED: dict[str, Any] = json.loads((DATA / "network_inspect.json").read_text())
OPTS = DeriveOptions(hostname="h1", host_ip="10.0.0.7")
INTERNAL = OPTS._replace(internal=True)
# Docker 20.10's NetworkSettings fields that Engine API 1.52 no longer returns.
REMOVED_IN_1_52 = (
    "Bridge", "EndpointID", "Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen",
    "HairpinMode", "IPAddress", "IPPrefixLen", "IPv6Gateway", "LinkLocalIPv6Address",
    "LinkLocalIPv6PrefixLen", "MacAddress", "SecondaryIPAddresses", "SecondaryIPv6Addresses",
)  # fmt: skip


def recorded(name: str, env: dict[str, str] | None = None, api_1_52: bool = False) -> Any:
    """A recorded inspect with ``env`` added; ``api_1_52``: as Engine API 1.52 returns it."""
    container = copy.deepcopy(RECORDED[name])
    container["Config"]["Env"] += [f"{k}={v}" for k, v in (env or {}).items()]
    if api_1_52:
        for key in REMOVED_IN_1_52:
            container["NetworkSettings"].pop(key, None)
    return container


def both_shapes(name: str, env: dict[str, str] | None = None) -> list[Any]:
    return [recorded(name, env), recorded(name, env, api_1_52=True)]


def addresses(derivation: Derivation) -> dict[str, tuple[str, int]]:
    return {s.id: (s.address, s.port) for s in derivation.services}


def problems(derivation: Derivation) -> list[str]:
    return [str(p) for p in derivation.problems]


def test_the_recordings_are_the_shapes_they_claim():
    web20, web152 = RECORDED["docker20_bridge_and_dual"], RECORDED["api152_bridge_and_dual"]
    assert web20["NetworkSettings"]["IPAddress"] == "172.17.0.2"  # the bridge's, top level
    assert sorted(web152["NetworkSettings"]) == ["Networks", "Ports", "SandboxID", "SandboxKey"]
    assert sorted(web152["NetworkSettings"]["Networks"]) == ["bridge", "dual"]
    v6 = RECORDED["api152_ipv6_only"]["NetworkSettings"]["Networks"]["v6only"]
    assert (v6["IPAddress"], v6["GlobalIPv6Address"]) == ("", "fd7e:1a2b:3c4e::2")
    # the original's pick leaves the bridge for the network sorting last once the top-level
    # address is gone: what the rule replaces
    assert ContainerView(web20).ip_address == "172.17.0.2"
    assert ContainerView(web152).ip_address == "172.19.0.2"


# --- the rule without SERVICE_NETWORK ---------------------------------------------------------


@pytest.mark.parametrize(
    "container",
    [*both_shapes("docker20_bridge_and_dual"), RECORDED["api152_bridge_and_dual"]],
)
def test_internal_on_the_bridge_and_another_network_takes_the_bridge_on_every_api(container):
    derivation = derive_services(container, INTERNAL)
    assert addresses(derivation) == {"h1:web.0:8080": ("172.17.0.2", 8080)}
    assert problems(derivation) == []


@pytest.mark.parametrize("container", both_shapes("docker20_dual_only"))
def test_a_user_defined_network_gives_its_address(container):
    derivation = derive_services(container, INTERNAL)
    assert addresses(derivation) == {"h1:api.0:9000": ("172.19.0.3", 9000)}
    assert problems(derivation) == []


def test_the_network_mode_network_wins_over_the_bridge():
    container = inspect(
        published={"80/tcp": "8080"}, network_mode="backend",
        networks={"backend": "10.20.0.3", "bridge": "172.17.0.4"},
    )  # fmt: skip
    derivation = derive_services(container, INTERNAL)
    assert addresses(derivation) == {"h1:app.0:80": ("10.20.0.3", 80)}
    assert problems(derivation) == []
    # published: where it is published, the host's address (the network's address with the
    # host's port would be reachable from nowhere)
    assert addresses(derive_services(container, OPTS)) == {"h1:app.0:80": ("10.0.0.7", 8080)}


@pytest.mark.parametrize("container", both_shapes("docker20_two_networks"))
def test_several_networks_and_no_bridge_take_the_first_by_name_with_one_warning(container):
    container["Config"]["ExposedPorts"]["7001/tcp"] = {}  # two services, one warning
    derivation = derive_services(container, INTERNAL)
    assert addresses(derivation) == {
        "h1:two.0:7000": ("172.20.0.2", 7000),
        "h1:two.0:7001": ("172.20.0.2", 7001),
    }
    assert problems(derivation) == [
        "container two.0 (0b9bbf3bcd1e): SERVICE_NETWORK: attached to networks a-net, b-net; "
        "using 'a-net', the first by name (set SERVICE_NETWORK=<network> to choose)"
    ]


# --- SERVICE_NETWORK ----------------------------------------------------------------------------


@pytest.mark.parametrize("api_1_52", [False, True])
def test_service_network_picks_the_network(api_1_52):
    web = recorded("docker20_bridge_and_dual", {"SERVICE_NETWORK": "dual"}, api_1_52)
    assert addresses(derive_services(web, INTERNAL)) == {"h1:web.0:8080": ("172.19.0.2", 8080)}
    two = recorded("docker20_two_networks", {"SERVICE_NETWORK": "b-net"}, api_1_52)
    derivation = derive_services(two, INTERNAL)
    assert addresses(derivation) == {"h1:two.0:7000": ("172.21.0.2", 7000)}
    assert problems(derivation) == []  # chosen: no warning
    assert "network" not in derivation.services[0].meta_dict  # a control key, not Meta


def test_service_network_per_port():
    container = inspect(
        exposed=["80/tcp", "81/tcp"], networks={"bridge": "172.17.0.5", "dual": "172.19.0.5"},
        env={"SERVICE_NETWORK": "dual", "SERVICE_81_NETWORK": "bridge"},
    )  # fmt: skip
    assert addresses(derive_services(container, INTERNAL)) == {
        "h1:app.0:80": ("172.19.0.5", 80),
        "h1:app.0:81": ("172.17.0.5", 81),
    }


def test_an_unknown_service_network_registers_nothing_and_names_the_networks():
    container = recorded("docker20_bridge_and_dual", {"SERVICE_NETWORK": "front"})
    derivation = derive_services(container, INTERNAL)
    assert derivation.services == ()
    assert problems(derivation) == [
        "container web.0 (557b36f58897): SERVICE_NETWORK: not attached to network 'front' "
        "(its networks: bridge, dual); not registered"
    ]
    per_port = inspect(exposed=["80/tcp", "81/tcp"], env={"SERVICE_81_NETWORK": "front"})
    derivation = derive_services(per_port, INTERNAL)
    assert list(addresses(derivation)) == ["h1:app.0:80"]
    assert [p.key for p in derivation.problems] == ["SERVICE_81_NETWORK"]


def test_service_network_does_not_apply_to_a_published_port_on_the_bridge():
    container = recorded("docker20_bridge_and_dual", {"SERVICE_NETWORK": "front"})
    assert addresses(derive_services(container, OPTS)) == {"h1:web.0:8080": ("127.0.0.1", 33015)}


def test_the_network_of_a_network_container_peer():
    peer = recorded("docker20_bridge_and_dual", api_1_52=True)
    app = inspect(name="side.0", exposed=["9100/tcp"], network_mode=f"container:{peer['Id']}",
                  networks={})  # fmt: skip
    assert addresses(derive_services(app, OPTS, peer)) == {"h1:side.0:9100": ("172.17.0.2", 9100)}
    app["Config"]["Env"].append("SERVICE_NETWORK=dual")
    assert addresses(derive_services(app, OPTS, peer)) == {"h1:side.0:9100": ("172.19.0.2", 9100)}
    app["Config"]["Env"].append("SERVICE_NETWORK=front")
    derivation = derive_services(app, OPTS, peer)
    assert derivation.services == ()
    assert problems(derivation) == [
        "container side.0 (0123456789ab): SERVICE_NETWORK: network container web.0 "
        "(557b36f58897): not attached to network 'front' (its networks: bridge, dual); "
        "not registered"
    ]


# --- no address ---------------------------------------------------------------------------------


def test_no_address_is_never_registered_as_an_empty_one():
    container = inspect(exposed=["80/tcp"], network_mode="backend", networks={"backend": ""})
    for options in (INTERNAL, INTERNAL._replace(ip="10.0.0.9")):
        derivation = derive_services(container, options)
        assert derivation.services == ()
        assert problems(derivation) == [
            "container app.0 (0123456789ab): no IPv4 or global IPv6 address on network "
            "'backend'; not registered"
        ]
    nowhere = inspect(exposed=["80/tcp"], networks={})
    nowhere["NetworkSettings"]["IPAddress"] = ""
    derivation = derive_services(nowhere, INTERNAL)
    assert derivation.services == ()
    assert [p.message for p in derivation.problems] == [
        "attached to no network: no address; not registered"
    ]


def test_network_mode_none_and_a_missing_peer_register_nothing_quietly():
    none = inspect(exposed=["80/tcp"], network_mode="none", networks={"none": ""})
    derivation = derive_services(none, OPTS)
    assert (derivation.services, derivation.problems) == ((), ())
    assert [o.why for o in derivation.ports] == [
        Why(Reason.NO_ADDRESS, "network mode none: no address")
    ]
    orphan = inspect(exposed=["80/tcp"], network_mode="container:gone", networks={})
    derivation = derive_services(orphan, OPTS, None)
    assert (derivation.services, derivation.problems) == ((), ())
    assert [o.why for o in derivation.ports] == [
        Why(Reason.NO_ADDRESS, "its network container (container:gone) is unknown")
    ]


def test_host_networking_with_internal_registers_the_hosts_address():
    container = inspect(network_mode="host", exposed=["8080/tcp"], ip="")
    for options in (INTERNAL, INTERNAL._replace(ip="fd00::7")):
        want = options.ip or "10.0.0.7"
        assert addresses(derive_services(container, options)) == {"h1:app.0:8080": (want, 8080)}


# --- IPv6 ---------------------------------------------------------------------------------------

CHECKS = {
    "SERVICE_CHECK_HTTP": "/health",
    "SERVICE_CHECK_1_HTTPS": "/tls",
    "SERVICE_CHECK_2_TCP": "true",
    "SERVICE_CHECK_3_GRPC": "true",
}


def probes(derivation: Derivation) -> list[str]:
    [service] = derivation.services
    return [c.http or c.tcp or c.grpc for c in service.checks]


@pytest.mark.parametrize(
    ("options", "address", "port"),
    [(OPTS._replace(ip="fd00::7"), "fd00::7", 32790), (INTERNAL, "fd7e:1a2b:3c4e::2", 9000)],
)
def test_an_ipv6_only_network_registers_an_ipv6_address(options, address, port):
    container = recorded("api152_ipv6_only", CHECKS)
    derivation = derive_services(container, options)
    assert addresses(derivation) == {"h1:v6.0:9000": (address, port)}
    assert problems(derivation) == []
    assert probes(derivation) == [
        f"http://[{address}]:{port}/health",
        f"https://[{address}]:{port}/tls",
        f"[{address}]:{port}",
        f"[{address}]:{port}",
    ]
    # the same container as an engine before API 1.52 would show it (empty top level)
    older = recorded("api152_ipv6_only", CHECKS)
    older["NetworkSettings"].update(IPAddress="", GlobalIPv6Address="", Gateway="")
    assert derive_services(older, options) == derivation


def test_an_ipv6_ip_flag_and_an_ipv6_binding_flow_through():
    container = inspect(name="web.0", published={"80/tcp": "32768"}, env=CHECKS)
    derivation = derive_services(container, OPTS._replace(ip="fd00::5"))
    assert addresses(derivation) == {"h1:web.0:80": ("fd00::5", 32768)}
    assert probes(derivation)[0] == "http://[fd00::5]:32768/health"
    bound = inspect(name="web.0", published={"80/tcp": "32768"}, host_ip="fd00::9", env=CHECKS)
    assert probes(derive_services(bound, OPTS))[2] == "[fd00::9]:32768"


def published_apart(*bindings: tuple[str, str]) -> Any:
    """web.0 publishing 80/tcp on each (host IP, host port): Docker 20.10 draws the port of
    0.0.0.0 and the port of :: from separate allocators, so they differ on a used engine."""
    container = inspect(name="web.0", published={"80/tcp": "1"})
    container["NetworkSettings"]["Ports"]["80/tcp"] = [
        {"HostIp": host_ip, "HostPort": host_port} for host_ip, host_port in bindings
    ]
    return container


@pytest.mark.parametrize(
    ("ip", "want"),
    [("::1", ("::1", 33842)), ("10.0.0.9", ("10.0.0.9", 33857)), ("", ("10.0.0.7", 33857))],
)
def test_the_port_is_the_binding_of_the_addresss_family(ip, want):
    container = published_apart(("0.0.0.0", "33857"), ("::", "33842"))
    derivation = derive_services(container, OPTS._replace(ip=ip))
    assert addresses(derivation) == {"h1:web.0:80": want}
    assert problems(derivation) == []


def test_no_binding_of_the_addresss_family_registers_nothing_and_says_so():
    container = published_apart(("127.0.0.1", "32768"))
    derivation = derive_services(container, OPTS._replace(ip="::1"))
    assert derivation.services == ()
    assert problems(derivation) == [
        "container web.0 (0123456789ab): -ip: port 80/tcp is published only on "
        "127.0.0.1:32768, none for an IPv6 address (::1); not registered"
    ]
    # a binding on a specific host IP of the family registers that IP (what listens)
    loopback = derive_services(container, OPTS._replace(ip="10.0.0.9"))
    assert addresses(loopback) == {"h1:web.0:80": ("127.0.0.1", 32768)}
    # without -ip, it is where the port is published
    assert addresses(derive_services(container, OPTS)) == {"h1:web.0:80": ("127.0.0.1", 32768)}


def test_a_binding_on_every_address_of_both_families_fits_either():
    podman = published_apart(("", "40123"))  # Podman leaves HostIp empty
    for ip in ("::1", "10.0.0.9"):
        assert addresses(derive_services(podman, OPTS._replace(ip=ip))) == {
            "h1:web.0:80": (ip, 40123)
        }


def test_a_script_check_gets_the_bare_address():
    env = {"SERVICE_CHECK_SCRIPT": "probe $SERVICE_IP $SERVICE_PORT"}
    container = inspect(published={"80/tcp": "32768"}, env=env)
    options = OPTS._replace(ip="fd00::5", allow_script_checks=True)
    [service] = derive_services(container, options).services
    assert service.checks[0].args == ("sh", "-c", "probe fd00::5 32768")


def test_join_host_port():
    assert join_host_port("10.0.0.5", 80) == "10.0.0.5:80"
    assert join_host_port("fd00::5", "8080") == "[fd00::5]:8080"


# --- one rule for both shapes -------------------------------------------------------------------

names = st.sampled_from(["bridge", "a-net", "b-net", "zeta", "dual"])
addresses_v4 = st.sampled_from(["", "172.17.0.2", "10.1.0.3"])
addresses_v6 = st.sampled_from(["", "fd00::2"])


@settings(max_examples=200, deadline=None)
@given(
    networks=st.dictionaries(names, st.tuples(addresses_v4, addresses_v6), max_size=4),
    mode=st.sampled_from(["default", "bridge", "a-net", "zeta"]),
    requested=st.sampled_from(["", "", "dual", "a-net", "nope"]),
    internal=st.booleans(),
)
def test_the_rule_answers_alike_on_docker_20_10_and_api_1_52(networks, mode, requested, internal):
    """Docker 20.10 adds the bridge's addresses at the top level; API 1.52 does not."""
    container = inspect(exposed=["80/tcp", "81/tcp"], network_mode=mode, networks={})
    container["Config"]["Env"].append(f"SERVICE_NETWORK={requested}")
    container["NetworkSettings"]["Networks"] = {
        name: {"IPAddress": v4, "GlobalIPv6Address": v6} for name, (v4, v6) in networks.items()
    }
    current = copy.deepcopy(container)
    del current["NetworkSettings"]["IPAddress"]
    v4, v6 = networks.get("bridge", ("", ""))
    container["NetworkSettings"].update(IPAddress=v4, GlobalIPv6Address=v6)
    options = OPTS._replace(internal=internal)
    older = derive_services(container, options)
    assert derive_services(current, options) == older
    for service in older.services:
        assert service.address  # never empty: registered somewhere, or not at all
    assert len(older.problems) == len(set(older.problems))


# --- ECS awsvpc: an IPv6-only ENI ---------------------------------------------------------------

ENI_V6 = "2a05:d018:1b2:4c00::1234"


def test_an_ipv6_only_eni_is_where_the_task_answers():
    body = json.loads((DATA / "ecs_task.json").read_text())
    for container in body["Containers"]:
        for network in container["Networks"]:
            network.pop("IPv4Addresses")
    task = parse_task(body)
    network = task.network(WEB["Id"])
    assert network == AwsvpcNetwork((), ((80, "tcp"), (8125, "udp")), (ENI_V6,))
    web = ecs_recorded("web", env={"SERVICE_80_CHECK_HTTP": "/health"})
    derivation = derive_services(web, ECS, PAUSE, network)
    assert {(s.address, s.port) for s in derivation.services} == {(ENI_V6, 80), (ENI_V6, 8125)}
    [http] = [s for s in derivation.services if s.port == 80]
    assert http.checks[0].http == f"http://[{ENI_V6}]:80/health"
    # with an IPv4 address as well, the task answers there (as before)
    dual = parse_task(json.loads((DATA / "ecs_task.json").read_text())).network(WEB["Id"])
    assert (dual.ipv4_addresses, dual.ipv6_addresses) == (("10.0.12.34",), ())


def test_the_agent_double_serves_an_ipv6_only_task():
    arn = "arn:aws:ecs:eu-west-1:123456789012:task/test-cluster/v6"
    app = DoubleContainer("ab" * 32, "app", [(8080, "tcp")])
    with EcsAgentDouble() as double:
        double.add_task(arn, [app], ipv6=["2600:1f18::7"])  # RUNNING: it has an ENI
        network = EcsAgent(double.url).network(arn, app.docker_id)
    assert network == AwsvpcNetwork((), ((8080, "tcp"),), ("2600:1f18::7",))


@pytest.mark.parametrize("address", ["10.0.0.5", "fe80::1%eth0", "2001:db8::/64", 7])
def test_an_eni_ipv6_address_that_is_not_one_is_refused(address):
    body = {"Arn": "a", "Containers": [{"Networks": [{"IPv6Addresses": [address]}]}]}
    with pytest.raises(EcsBadAnswer, match="is not an IPv6 address"):
        parse_task(body)
