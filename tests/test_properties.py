"""Property-based tests: whatever a container author writes, derivation never raises, and every
registration it produces is accepted by the strict Consul double. Malformed Docker events and
inspect data are tolerated."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registrator.adapters.consul_agent import ConsulAgent, WritePolicy
from registrator.adapters.docker_source import parse_event
from registrator.core.config import ConsulEndpoint
from registrator.core.consul_limits import DNS_LABEL_RE, META_MAX_PAIRS
from registrator.core.derive import DeriveOptions, derive_services
from tests.consul_double import ConsulDouble
from tests.inspect_data import inspect

OPTS = DeriveOptions(hostname="host1", host_ip="10.0.0.7")
PORTS = ["80/tcp", "443/tcp", "53/udp", "8080/tcp"]
KEYS = [
    "NAME", "ID", "TAGS", "IGNORE", "CHECK_HTTP", "CHECK_HTTPS", "CHECK_TCP", "CHECK_TTL",
    "CHECK_GRPC", "CHECK_SCRIPT", "CHECK_CMD", "CHECK_INTERVAL", "CHECK_TIMEOUT",
    "CHECK_INITIAL_STATUS", "CHECK_DEREGISTER_AFTER", "CHECK_HTTP_METHOD", "REGION",
    "CHECK_GRPC_USE_TLS", "CHECK_TLS_SKIP_VERIFY", "REGISTRATOR", "CONSUL-X",
]  # fmt: skip

# Every kind of text: unicode, control characters, commas and escapes, very long values.
any_text = st.one_of(
    st.text(max_size=20),
    st.text(alphabet="abc-_.,\\ =/:", max_size=30),
    st.sampled_from(["", " ", "10s", "0", "-1s", "passing", "green", "/health", "a\\,b", "é"]),
    st.text(min_size=500, max_size=700),
)
key_suffix = st.one_of(
    st.sampled_from(KEYS),
    st.text(min_size=1, max_size=12),
    st.text(alphabet="ABCXYZ_-.09", min_size=1, max_size=130),
)
port_prefix = st.one_of(st.just(""), st.sampled_from(["80_", "443_", "53_", "9999_", "80X_"]))
service_key = st.builds(lambda p, k: f"SERVICE_{p}{k}", port_prefix, key_suffix)
metadata = st.dictionaries(service_key, any_text, max_size=12)
tried: Counter[str] = Counter()


@st.composite
def containers(draw: st.DrawFn) -> dict[str, Any]:
    ports = draw(st.lists(st.sampled_from(PORTS), unique=True, max_size=4))
    return inspect(
        name=draw(st.sampled_from(["app.0", "web", "x_y", "a" * 100])),
        image=draw(st.sampled_from(["example/app:1", "my_app", "", "registry:5000/x/y@sha256:ab"])),
        env=draw(metadata),
        labels=draw(metadata),
        published={p: str(draw(st.integers(1, 65535))) for p in ports},
    )


@pytest.fixture(scope="module")
def agent() -> Iterator[ConsulAgent]:
    with ConsulDouble(enable_script_checks=True) as double:
        endpoint = ConsulEndpoint("http", "127.0.0.1", double.port)
        yield ConsulAgent(endpoint, timeout=5, write_policy=WritePolicy(1, 0.01))


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(container=containers(), internal=st.booleans(), allow_scripts=st.booleans())
def test_derivation_never_raises_and_the_strict_agent_accepts_every_registration(
    agent: ConsulAgent, container: dict[str, Any], internal: bool, allow_scripts: bool
) -> None:
    options = DeriveOptions(
        hostname="host1", host_ip="10.0.0.7", internal=internal, allow_script_checks=allow_scripts
    )
    derivation = derive_services(container, options)
    tried["containers"] += 1
    tried["problems"] += len(derivation.problems)
    for problem in derivation.problems:
        key = re.sub(r"^SERVICE_(\d+_)?", "", problem.key)
        tried[f"problem {key if key in KEYS else 'other key'}"] += 1
        assert problem.container.startswith(container["Name"].lstrip("/"))
    ids = [s.id for s in derivation.services]
    assert len(ids) == len(set(ids))
    for service in derivation.services:
        assert DNS_LABEL_RE.match(service.name)
        assert len(service.meta) <= META_MAX_PAIRS
        agent.register(service)  # raises ConsulRejected if the double refuses it
        tried["registrations accepted"] += 1
        agent.deregister(service.id)


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
docker_keys = st.sampled_from(
    ["Id", "Name", "Config", "HostConfig", "NetworkSettings", "State", "Env", "Labels",
     "ExposedPorts", "Ports", "Networks", "IPAddress", "NetworkMode", "Image", "HostPort",
     "HostIp", "80/tcp"]
)  # fmt: skip
docker_like = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(docker_keys, inner, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=500, deadline=None)
@given(data=st.dictionaries(docker_keys, docker_like, max_size=6))
def test_malformed_inspect_data_never_raises(data: dict[str, Any]) -> None:
    derive_services(data, OPTS)
    tried["malformed inspects"] += 1


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(json_values, st.dictionaries(st.sampled_from(
    ["Type", "Action", "Actor", "ID", "Attributes", "time", "timeNano", "status", "id",
     "HealthStatus"]
), json_values, max_size=6)))  # fmt: skip
def test_malformed_events_never_raise(raw: Any) -> None:
    event = parse_event(raw)
    assert event is None or (event.container_id and event.action)
    tried["malformed events"] += 1


def test_report_counts(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints what the property tests above tried (shown with ``pytest -s``)."""
    with capsys.disabled():
        print("\nproperty tests tried:", dict(sorted(tried.items())))
