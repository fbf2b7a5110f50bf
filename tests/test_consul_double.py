"""Tests of the Consul agent test double itself: it must be as strict as a real agent.

Raw HTTP goes through `requests` (and `http.client` where the connection itself matters); the
python-consul2 client is used to show a real client works against the double. No test sleeps:
everything waits on a condition with a deadline.
"""

from __future__ import annotations

import dataclasses
import functools
import http.client
import json
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import consul
import pytest
import requests

from tests.consul_double import (
    ConsulDouble,
    GoDurationError,
    RecordedRequest,
    format_go_duration,
    parse_go_duration,
)

REGISTER = "/v1/agent/service/register"
TIMEOUT = 10


@pytest.fixture
def double() -> Iterator[ConsulDouble]:
    with ConsulDouble() as d:
        yield d


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def register(
    session: requests.Session, d: ConsulDouble, definition: Any, query: str = ""
) -> requests.Response:
    body = definition if isinstance(definition, str) else json.dumps(definition)
    return session.put(d.url + REGISTER + query, data=body, timeout=TIMEOUT)


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run call on a thread; its result or exception lands in the returned dict."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def arrived(path: str) -> Callable[[list[RecordedRequest]], bool]:
    return lambda reqs: any(r.path == path for r in reqs)


# ---------------------------------------------------------------------------------------------
# Registration: defaults, decoding
# ---------------------------------------------------------------------------------------------


def test_minimal_registration_is_stored_with_consul_defaults(
    double: ConsulDouble, session: requests.Session
) -> None:
    resp = register(session, double, {"Name": "web"})
    assert resp.status_code == 200
    assert resp.content == b""

    listed = session.get(double.url + "/v1/agent/services", timeout=TIMEOUT)
    assert listed.status_code == 200
    assert listed.headers["Content-Type"] == "application/json"
    assert listed.json() == {
        "web": {
            "ID": "web",
            "Service": "web",
            "Tags": [],
            "Meta": {},
            "Port": 0,
            "Address": "",
            "Weights": {"Passing": 1, "Warning": 1},
            "EnableTagOverride": False,
            "Datacenter": "dc1",
        }
    }
    assert double.services() == listed.json()
    assert double.checks() == {}


def test_python_consul2_round_trip(double: ConsulDouble) -> None:
    c = consul.Consul(host="127.0.0.1", port=double.port)
    assert c.agent.service.register(
        "web",
        service_id="x",
        port=80,
        tags=["a"],
        meta={"k": "v"},
        check={"HTTP": "http://127.0.0.1:80/", "Interval": "10s"},
    )
    services = c.agent.services()
    assert services["x"]["Service"] == "web"
    assert services["x"]["Port"] == 80
    assert services["x"]["Tags"] == ["a"]
    assert services["x"]["Meta"] == {"k": "v"}
    checks = c.agent.checks()
    assert checks["service:x"] == {
        "Node": "double-node",
        "CheckID": "service:x",
        "Name": "Service 'web' check",
        "Status": "critical",
        "Notes": "",
        "Output": "",
        "ServiceID": "x",
        "ServiceName": "web",
        "ServiceTags": ["a"],
        "Type": "http",
        "Interval": "10s",
        "Timeout": "",
        "ExposedPort": 0,
        "Definition": {},
        "CreateIndex": 0,
        "ModifyIndex": 0,
    }
    index, entries = c.catalog.service("web", tag="a")
    assert [e["ServiceID"] for e in entries] == ["x"]
    assert int(index) == double.index
    assert c.status.leader() == "127.0.0.1:8300"

    assert c.agent.service.deregister("x") is True
    assert c.agent.services() == {}
    assert c.agent.checks() == {}
    # Consul >= 1.11 answers 404 for an unknown ID; python-consul2 reports that as False.
    assert c.agent.service.deregister("x") is False
    with pytest.raises(consul.base.BadRequest, match="Missing service name"):
        c.agent.service.register("")


def test_field_names_match_case_insensitively_and_snake_case_aliases_work(
    double: ConsulDouble, session: requests.Session
) -> None:
    definition = {
        "nAmE": "web",
        "id": "w1",
        "PORT": 8080,
        "address": "10.0.0.5",
        "TAGS": ["x"],
        "meta": {"a": "b"},
        "enable_tag_override": True,
        "weights": {"passing": 10, "WARNING": 2},
        "checks": [
            {
                "http": "https://10.0.0.5:8080/",
                "interval": "5s",
                "TIMEOUT": "1s",
                "tls_skip_verify": True,
                "deregister_critical_service_after": "1m",
                "method": "HEAD",
                "header": {"X-A": ["1"]},
            },
            {"grpc": "10.0.0.5:9090", "Interval": "10s", "grpc_use_tls": True},
            {"ttl": "30s", "status": "passing", "notes": "n"},
            {"tcp": "10.0.0.5:8080", "interval": "15s", "name": "custom", "checkid": "my-tcp"},
        ],
    }
    assert register(session, double, definition).status_code == 200
    service = double.services()["w1"]
    assert service["Service"] == "web"
    assert service["Port"] == 8080
    assert service["Address"] == "10.0.0.5"
    assert service["Tags"] == ["x"]
    assert service["Meta"] == {"a": "b"}
    assert service["EnableTagOverride"] is True
    assert service["Weights"] == {"Passing": 10, "Warning": 2}
    assert service["TaggedAddresses"] == {
        "lan_ipv4": {"Address": "10.0.0.5", "Port": 8080},
        "wan_ipv4": {"Address": "10.0.0.5", "Port": 8080},
    }
    checks = double.checks()
    assert sorted(checks) == ["my-tcp", "service:w1:1", "service:w1:2", "service:w1:3"]
    assert checks["service:w1:1"]["Type"] == "http"
    assert checks["service:w1:1"]["Interval"] == "5s"
    assert checks["service:w1:1"]["Timeout"] == "1s"
    assert checks["service:w1:2"]["Type"] == "grpc"
    assert checks["service:w1:3"]["Type"] == "ttl"
    assert checks["service:w1:3"]["Status"] == "passing"
    assert checks["service:w1:3"]["Notes"] == "n"
    assert checks["my-tcp"]["Name"] == "custom"
    assert checks["my-tcp"]["Type"] == "tcp"


def test_go_client_style_keys_and_ipv6_tagged_addresses(
    double: ConsulDouble, session: requests.Session
) -> None:
    definition = {
        "ID": "db-1",
        "Name": "db",
        "Address": "fd00::5",
        "Port": 5432,
        "EnableTagOverride": False,
        "Check": {"TCP": "[fd00::5]:5432", "Interval": "10s", "Timeout": "2s"},
    }
    assert register(session, double, definition).status_code == 200
    service = double.services()["db-1"]
    assert sorted(service["TaggedAddresses"]) == ["lan_ipv6", "wan_ipv6"]
    assert double.checks()["service:db-1"]["Type"] == "tcp"

    assert register(session, double, {"Name": "named", "Address": "db.example"}).status_code == 200
    assert "TaggedAddresses" not in double.services()["named"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "EOF"),
        ("   ", "EOF"),
        ("{", "unexpected EOF"),
        ('{"Name": "web"', "unexpected EOF"),
        ("nope", "invalid JSON: Expecting value at offset 0"),  # Go's words not emulated
        ("<html>", "invalid character '<' looking for beginning of value"),
        ('{"Name": "web",}', "invalid character '}' looking for beginning of object key string"),
        ('{"Name" "web"}', "invalid character '\"' after object key"),
        ('{"Tags": ["a" "b"]}', "invalid JSON: Expecting ',' delimiter at offset 14"),
        ('{"Port": NaN}', "invalid character 'N' looking for beginning of value"),
        (
            '{"Name": "web", "Port": "abc"}',
            "json: cannot unmarshal string into Go struct field .Port of type int",
        ),
        (
            '{"Name": "web", "Port": 80.5}',
            "json: cannot unmarshal number 80.5 into Go struct field .Port of type int",
        ),
        (
            '{"Name": "web", "Tags": "a,b"}',
            "json: cannot unmarshal string into Go struct field .Tags of type []string",
        ),
        (
            '{"Name": "web", "Tags": [1]}',
            "json: cannot unmarshal number into Go struct field .Tags of type string",
        ),
        (
            '{"Name": "web", "Meta": ["a"]}',
            "json: cannot unmarshal array into Go struct field .Meta of type map[string]string",
        ),
        (
            '{"Name": "web", "Meta": {"a": 1}}',
            "json: cannot unmarshal number into Go struct field .Meta of type string",
        ),
        (
            '{"Name": "web", "EnableTagOverride": "true"}',
            "json: cannot unmarshal string into Go struct field .EnableTagOverride of type bool",
        ),
        (
            '{"Name": "web", "Checks": {"TTL": "10s"}}',
            "json: cannot unmarshal object into Go struct field .Checks of type structs.CheckTypes",
        ),
        (
            '{"Name": "web", "Check": {"HTTP": 80, "Interval": "10s"}}',
            "json: cannot unmarshal number into Go struct field .Check of type string",
        ),
        ('{"Name": "web", "Service": "web"}', 'json: unknown field "Service"'),
        ('{"Name": "web", "Check": {"ID": "c", "TTL": "10s"}}', 'json: unknown field "ID"'),
        (
            '{"Name": "web", "Check": {"script": "/bin/true", "interval": "10s"}}',
            'json: unknown field "script"',
        ),
        (
            '{"Name": "web", "Check": {"HTTP": "h", "Interval": "abc"}}',
            'time: invalid duration "abc"',
        ),
        ('{"Name": "web", "Check": {"TTL": ""}}', 'time: invalid duration ""'),
        (
            '{"Name": "web", "Check": {"HTTP": "h", "Interval": "10"}}',
            'time: missing unit in duration "10"',
        ),
        (
            '{"Name": "web", "Check": {"HTTP": "h", "Interval": "10x"}}',
            'time: unknown unit "x" in duration "10x"',
        ),
        (
            '{"Name": "web", "Check": {"TTL": "10s", "DeregisterCriticalServiceAfter": "soon"}}',
            'time: invalid duration "soon"',
        ),
        (
            '{"Name": "web", "Check": {"TTL": "10s", "deregister_critical_service_after": "1d"}}',
            'time: unknown unit "d" in duration "1d"',
        ),
    ],
)
def test_undecodable_bodies_are_400_request_decode_failed(
    double: ConsulDouble, session: requests.Session, body: str, message: str
) -> None:
    resp = register(session, double, body)
    assert (resp.status_code, resp.text) == (400, f"Request decode failed: {message}")
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert double.services() == {}


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({}, "Missing service name"),
        ({"Name": ""}, "Missing service name"),
        ({"ID": "only-id"}, "Missing service name"),
        ("null", "Missing service name"),
        ({"Name": "web", "Address": "0.0.0.0"}, "Invalid service address"),
        ({"Name": "web", "Address": "::"}, "Invalid service address"),
        ({"Name": "web", "Address": "[::]"}, "Invalid service address"),
        (
            {"Name": "web", "Meta": {f"k{i}": "v" for i in range(65)}},
            "Invalid Service Meta: Node metadata cannot contain more than 64 key/value pairs",
        ),
        (
            {"Name": "web", "Meta": {"bad key": "v"}},
            "Invalid Service Meta: Couldn't load metadata pair ('bad key', 'v'): "
            "Key contains invalid characters",
        ),
        (
            {"Name": "web", "Meta": {"k" * 129: "v"}},
            f"Invalid Service Meta: Couldn't load metadata pair ('{'k' * 129}', 'v'): "
            "Key is too long (limit: 128 characters)",
        ),
        (
            {"Name": "web", "Meta": {"k": "v" * 513}},
            f"Invalid Service Meta: Couldn't load metadata pair ('k', '{'v' * 513}'): "
            "Value is too long (limit: 512 characters)",
        ),
        (
            {"Name": "web", "Meta": {"consul-version": "1"}},
            "Invalid Service Meta: Couldn't load metadata pair ('consul-version', '1'): "
            "Key prefix 'consul-' is reserved for internal use",
        ),
        (
            {"Name": "web", "Meta": {"": "v"}},
            "Invalid Service Meta: Couldn't load metadata pair ('', 'v'): Key cannot be blank",
        ),
        (
            {"Name": "web", "Weights": {"Passing": 0, "Warning": 1}},
            "Invalid Weights: Passing must be greater than 0",
        ),
        (
            {"Name": "web", "Check": {"HTTP": "http://x/"}},
            "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks",
        ),
        (
            {"Name": "web", "Check": {"TCP": "x:1", "Interval": "0"}},
            "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks",
        ),
        (
            {"Name": "web", "Check": {"GRPC": "x:1", "Interval": "-5s"}},
            "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks",
        ),
        (
            {"Name": "web", "Check": {"Args": ["/bin/true"]}},
            "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks",
        ),
        (
            {"Name": "web", "Check": {"HTTP": "http://x/", "Interval": "10s", "TTL": "10s"}},
            "Invalid check: Interval and TTL cannot both be specified",
        ),
        (
            {"Name": "web", "Check": {"Name": "no type at all"}},
            "Invalid check: TTL must be > 0 for TTL checks",
        ),
        (
            {"Name": "web", "Checks": [{"TTL": "10s"}, {"HTTP": "http://x/"}]},
            "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks",
        ),
        (
            {"Name": "web", "Check": {"TTL": "10s", "Status": "ok"}},
            "Status for checks must 'passing', 'warning', 'critical'",
        ),
        (
            {"Name": "web", "Check": {"TTL": "10s", "Status": "maintenance"}},
            "Status for checks must 'passing', 'warning', 'critical'",
        ),
    ],
)
def test_invalid_registrations_are_400_with_consul_messages(
    double: ConsulDouble, session: requests.Session, definition: Any, message: str
) -> None:
    resp = register(session, double, definition)
    assert (resp.status_code, resp.text) == (400, message)
    assert double.services() == {}
    assert double.checks() == {}


def test_meta_at_the_limits_is_accepted(double: ConsulDouble, session: requests.Session) -> None:
    meta = {f"k{i}": "v" for i in range(63)}
    meta["k" * 128] = "v" * 512
    assert register(session, double, {"Name": "web", "Meta": meta}).status_code == 200
    assert double.services()["web"]["Meta"] == dict(sorted(meta.items()))


def test_empty_or_null_check_is_ignored(double: ConsulDouble, session: requests.Session) -> None:
    assert register(session, double, {"Name": "a", "Check": {}}).status_code == 200
    assert (
        register(session, double, {"Name": "b", "Check": None, "Checks": None}).status_code == 200
    )
    assert set(double.services()) == {"a", "b"}
    assert double.checks() == {}


@pytest.mark.parametrize(
    ("interval", "rendered"),
    [
        ("10s", "10s"),
        ("1m30s", "1m30s"),
        ("90s", "1m30s"),
        ("1.5m", "1m30s"),
        ("500ms", "500ms"),
        ("1h", "1h0m0s"),
        ("2.5s", "2.5s"),
        ("1500us", "1.5ms"),
        ("1µs", "1µs"),
        ("100ns", "100ns"),
        ("+3s", "3s"),
        (10_000_000_000, "10s"),  # a JSON number is nanoseconds
    ],
)
def test_go_durations_are_accepted_and_reported_like_go(
    double: ConsulDouble, session: requests.Session, interval: Any, rendered: str
) -> None:
    check = {
        "HTTP": "http://x/",
        "Interval": interval,
        "Timeout": "0",
        "DeregisterCriticalServiceAfter": "0",
    }
    assert register(session, double, {"Name": "web", "Check": check}).status_code == 200
    assert double.checks()["service:web"]["Interval"] == rendered
    assert double.checks()["service:web"]["Timeout"] == ""


def test_go_duration_helpers() -> None:
    assert parse_go_duration("0") == 0
    assert parse_go_duration("-0") == 0
    assert parse_go_duration("1h2m3.5s") == 3_723_500_000_000
    assert parse_go_duration(".5s") == 500_000_000
    assert parse_go_duration("5.s") == 5_000_000_000
    assert parse_go_duration("-1.5h") == -5_400_000_000_000
    assert parse_go_duration("1μs") == 1_000  # Greek mu, accepted by Go too
    for bad, message in [
        ("", 'time: invalid duration ""'),
        (".", 'time: invalid duration "."'),
        ("s", 'time: invalid duration "s"'),
        ("1", 'time: missing unit in duration "1"'),
        ("1.2.3s", 'time: missing unit in duration "1.2.3s"'),
        ("3 s", 'time: unknown unit " s" in duration "3 s"'),
        ("9999999999999h", 'time: invalid duration "9999999999999h"'),
    ]:
        with pytest.raises(GoDurationError) as caught:
            parse_go_duration(bad)
        assert str(caught.value) == message
    assert format_go_duration(0) == "0s"
    assert format_go_duration(-1_500_000_000) == "-1.5s"
    assert format_go_duration(3_600_000_000_000) == "1h0m0s"
    assert format_go_duration(1_000) == "1µs"
    assert format_go_duration(1_234_567) == "1.234567ms"


# ---------------------------------------------------------------------------------------------
# Script checks, check IDs, re-registration
# ---------------------------------------------------------------------------------------------


def test_script_checks_are_refused_unless_enabled(
    double: ConsulDouble, session: requests.Session
) -> None:
    script = {"Name": "web", "Check": {"Args": ["/bin/check"], "Interval": "10s"}}
    resp = register(session, double, script)
    assert resp.status_code == 500
    assert resp.text == (
        "Scripts are disabled on this agent from remote calls; "
        "to enable, configure 'enable_script_checks' to true"
    )
    assert double.services() == {}
    c = consul.Consul(host="127.0.0.1", port=double.port)
    with pytest.raises(consul.ConsulException, match="Scripts are disabled"):
        c.agent.service.register("web", check=consul.Check.script(["/bin/check"], "10s"))
    # python-consul2's Check.docker still sends the "script" field Consul removed long ago.
    with pytest.raises(consul.base.BadRequest, match='unknown field "script"'):
        c.agent.service.register("web", check=consul.Check.docker("abc", "/bin/sh", "x", "10s"))

    with ConsulDouble(enable_script_checks=True) as enabled:
        assert register(session, enabled, script).status_code == 200
        docker = {
            "Name": "db",
            "Check": {
                "script_args": ["x"],
                "docker_container_id": "abc",
                "Shell": "/bin/sh",
                "Interval": "10s",
            },
        }
        assert register(session, enabled, docker).status_code == 200
        assert enabled.checks()["service:web"]["Type"] == "script"
        assert enabled.checks()["service:db"]["Type"] == "docker"


def test_check_ids_follow_consul_numbering(double: ConsulDouble, session: requests.Session) -> None:
    definition = {
        "ID": "api-1",
        "Name": "api",
        "Check": {"TTL": "10s"},
        "Checks": [
            {"HTTP": "http://x/", "Interval": "10s"},
            {"TCP": "x:1", "Interval": "10s", "Status": "warning"},
        ],
    }
    assert register(session, double, definition).status_code == 200
    checks = double.checks()
    assert sorted(checks) == ["service:api-1:1", "service:api-1:2", "service:api-1:3"]
    assert [checks[f"service:api-1:{n}"]["Type"] for n in (1, 2, 3)] == ["ttl", "http", "tcp"]
    assert checks["service:api-1:3"]["Status"] == "warning"
    assert {c["Name"] for c in checks.values()} == {"Service 'api' check"}
    assert {c["ServiceID"] for c in checks.values()} == {"api-1"}


def test_reregistration_keeps_check_state_and_replaces_the_definition(
    double: ConsulDouble, session: requests.Session
) -> None:
    definition = {"ID": "w", "Name": "web", "Tags": ["a"], "Check": {"TTL": "30s"}}
    assert register(session, double, definition).status_code == 200
    assert double.checks()["service:w"]["Status"] == "critical"
    passing = {"Status": "passing", "Output": "ok"}
    update = double.url + "/v1/agent/check/update/service:w"
    assert session.put(update, json=passing, timeout=TIMEOUT).status_code == 200
    index = double.index

    assert register(session, double, definition).status_code == 200  # identical
    assert double.checks()["service:w"]["Status"] == "passing"
    assert double.checks()["service:w"]["Output"] == "ok"
    assert double.index == index, "an identical re-registration changes nothing"

    changed = {
        "ID": "w",
        "Name": "web",
        "Tags": ["b"],
        "Port": 81,
        "Check": {"TTL": "30s", "Status": "critical"},
    }
    assert register(session, double, changed).status_code == 200
    assert double.services()["w"]["Tags"] == ["b"]
    assert double.services()["w"]["Port"] == 81
    assert double.checks()["service:w"]["Status"] == "passing", "existing check state wins"
    assert double.checks()["service:w"]["ServiceTags"] == ["b"]
    assert double.index > index

    assert register(session, double, {"ID": "w", "Name": "web"}).status_code == 200
    assert double.services()["w"]["Tags"] == []
    assert "service:w" in double.checks(), "without replace-existing-checks old checks stay"
    assert (
        register(
            session, double, {"ID": "w", "Name": "web"}, "?replace-existing-checks"
        ).status_code
        == 200
    )
    assert double.checks() == {}


# ---------------------------------------------------------------------------------------------
# Deregistration, reads, TTL updates
# ---------------------------------------------------------------------------------------------


def test_deregister_removes_service_and_checks_and_decodes_ids(
    double: ConsulDouble, session: requests.Session
) -> None:
    odd_id = "host:web/1 a"
    assert (
        register(session, double, {"ID": odd_id, "Name": "web", "Check": {"TTL": "5s"}}).status_code
        == 200
    )
    assert register(session, double, {"ID": "other", "Name": "web"}).status_code == 200
    resp = session.put(
        double.url + "/v1/agent/service/deregister/" + quote(odd_id, safe=""), timeout=TIMEOUT
    )
    assert (resp.status_code, resp.content) == (200, b"")
    assert list(double.services()) == ["other"]
    assert double.checks() == {}
    assert double.requests()[-1].path == "/v1/agent/service/deregister/" + odd_id


@pytest.mark.parametrize(
    ("mode", "status", "body"),
    [
        (
            "404",
            404,
            'Unknown service ID "ghost". Ensure that the service ID is passed, not the service name.',
        ),
        ("200", 200, ""),
        ("500", 500, 'Unknown service "ghost"'),
    ],
)
def test_deregistering_an_unknown_id_follows_the_configured_agent_era(
    session: requests.Session, mode: str, status: int, body: str
) -> None:
    with ConsulDouble(unknown_deregister=mode) as d:
        resp = session.put(d.url + "/v1/agent/service/deregister/ghost", timeout=TIMEOUT)
        assert (resp.status_code, resp.text) == (status, body)
    with pytest.raises(ValueError):
        ConsulDouble(unknown_deregister="418")


def test_ttl_check_updates(double: ConsulDouble, session: requests.Session) -> None:
    assert register(session, double, {"Name": "web", "Check": {"TTL": "30s"}}).status_code == 200
    assert (
        register(
            session, double, {"Name": "api", "Check": {"HTTP": "http://x/", "Interval": "5s"}}
        ).status_code
        == 200
    )
    base = double.url + "/v1/agent/check/"

    resp = session.put(
        base + "update/service:web", json={"Status": "warning", "Output": "slow"}, timeout=TIMEOUT
    )
    assert (resp.status_code, resp.content) == (200, b"")
    assert (double.checks()["service:web"]["Status"], double.checks()["service:web"]["Output"]) == (
        "warning",
        "slow",
    )
    session.put(
        base + "update/service:web",
        json={"Status": "passing", "Output": "x" * 5000},
        timeout=TIMEOUT,
    )
    assert (
        double.checks()["service:web"]["Output"]
        == "x" * 4096 + " ... (captured 4096 of 5000 bytes)"
    )

    def update(body: str) -> tuple[int, str]:
        r = session.put(base + "update/service:web", data=body, timeout=TIMEOUT)
        return r.status_code, r.text

    assert update('{"Status": "bogus"}') == (400, "Invalid check status: 'bogus'")
    assert update("{}") == (400, "Invalid check status: ''")
    assert update('{"Status": 1}') == (
        400,
        "Request decode failed: json: cannot unmarshal number into Go struct field checkUpdate.Status of type string",
    )
    assert update('{"Status": "passing", "Note": "x"}') == (
        400,
        'Request decode failed: json: unknown field "Note"',
    )

    unknown = 'Unknown check ID "nope". Ensure that the check ID is passed, not the check name.'
    r = session.put(base + "update/nope", json={"Status": "passing"}, timeout=TIMEOUT)
    assert (r.status_code, r.text) == (404, unknown)
    r = session.put(base + "update/service:api", json={"Status": "passing"}, timeout=TIMEOUT)
    assert (r.status_code, r.text) == (500, 'CheckID "service:api" does not have associated TTL')


@pytest.mark.parametrize(
    ("method", "path", "status", "text", "allow"),
    [
        ("POST", REGISTER, 405, "method POST not allowed", "OPTIONS,PUT"),
        ("GET", REGISTER, 405, "method GET not allowed", "OPTIONS,PUT"),
        (
            "DELETE",
            "/v1/agent/service/deregister/x",
            405,
            "method DELETE not allowed",
            "OPTIONS,PUT",
        ),
        ("PUT", "/v1/agent/services", 405, "method PUT not allowed", "OPTIONS,GET"),
        ("POST", "/v1/agent/checks", 405, "method POST not allowed", "OPTIONS,GET"),
        ("GET", "/v1/agent/check/update/x", 405, "method GET not allowed", "OPTIONS,PUT"),
        ("PUT", "/v1/status/leader", 405, "method PUT not allowed", "OPTIONS,GET"),
        ("PUT", "/v1/catalog/service/web", 405, "method PUT not allowed", "OPTIONS,GET"),
        ("OPTIONS", "/v1/agent/services", 200, "", "OPTIONS,GET"),
        ("GET", "/v1/nope", 404, "Invalid URL path: not a recognized HTTP API endpoint\n", None),
        (
            "GET",
            "/v1/agent/services/",
            404,
            "Invalid URL path: not a recognized HTTP API endpoint\n",
            None,
        ),
        (
            "GET",
            "/agent/services",
            404,
            "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n",
            None,
        ),
    ],
)
def test_wrong_methods_and_unknown_paths(
    double: ConsulDouble,
    session: requests.Session,
    method: str,
    path: str,
    status: int,
    text: str,
    allow: str | None,
) -> None:
    resp = session.request(method, double.url + path, timeout=TIMEOUT)
    assert (resp.status_code, resp.text) == (status, text)
    assert resp.headers.get("Allow") == allow
    if text:
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_leader(double: ConsulDouble, session: requests.Session) -> None:
    leader = session.get(double.url + "/v1/status/leader", timeout=TIMEOUT)
    assert (leader.status_code, leader.text) == (200, '"127.0.0.1:8300"')
    assert leader.headers["Content-Type"] == "application/json"


# ---------------------------------------------------------------------------------------------
# Catalog
# ---------------------------------------------------------------------------------------------


def test_catalog_service_filters_by_every_tag(
    double: ConsulDouble, session: requests.Session
) -> None:
    for sid, tags in [
        ("web-1", ["primary", "v1"]),
        ("web-2", ["secondary", "v1"]),
        ("web-3", ["Primary", "v2"]),
    ]:
        assert (
            register(
                session, double, {"ID": sid, "Name": "web", "Tags": tags, "Port": 80}
            ).status_code
            == 200
        )
    assert (
        register(session, double, {"ID": "db-1", "Name": "db", "Tags": ["primary"]}).status_code
        == 200
    )

    def ids(query: str) -> list[str]:
        resp = session.get(double.url + "/v1/catalog/service/" + query, timeout=TIMEOUT)
        assert resp.status_code == 200
        assert resp.headers["Content-Type"] == "application/json"
        return [entry["ServiceID"] for entry in resp.json()]

    assert ids("web") == ["web-1", "web-2", "web-3"]
    assert ids("web?tag=v1") == ["web-1", "web-2"]
    assert ids("web?tag=primary") == ["web-1", "web-3"], "tags match case-insensitively"
    assert ids("web?tag=primary&tag=v1") == ["web-1"]
    assert ids("web?tag=primary&tag=v3") == []
    assert ids("WEB") == ["web-1", "web-2", "web-3"], "service names match case-insensitively"
    assert ids("nothing") == []
    assert ids("web?dc=dc1&stale&near=_agent") == ["web-1", "web-2", "web-3"]


def test_catalog_entries_look_like_consuls(double: ConsulDouble, session: requests.Session) -> None:
    definition = {
        "ID": "w",
        "Name": "web",
        "Tags": ["t"],
        "Address": "10.1.2.3",
        "Port": 8080,
        "Meta": {"m": "1"},
    }
    assert register(session, double, definition).status_code == 200
    (entry,) = session.get(double.url + "/v1/catalog/service/web", timeout=TIMEOUT).json()
    assert {
        k: entry[k]
        for k in (
            "Node",
            "Address",
            "Datacenter",
            "ServiceID",
            "ServiceName",
            "ServiceTags",
            "ServiceAddress",
            "ServicePort",
            "ServiceMeta",
            "ServiceWeights",
            "ServiceEnableTagOverride",
        )
    } == {
        "Node": "double-node",
        "Address": "127.0.0.1",
        "Datacenter": "dc1",
        "ServiceID": "w",
        "ServiceName": "web",
        "ServiceTags": ["t"],
        "ServiceAddress": "10.1.2.3",
        "ServicePort": 8080,
        "ServiceMeta": {"m": "1"},
        "ServiceWeights": {"Passing": 1, "Warning": 1},
        "ServiceEnableTagOverride": False,
    }
    assert entry["ServiceTaggedAddresses"]["lan_ipv4"] == {"Address": "10.1.2.3", "Port": 8080}

    missing = session.get(double.url + "/v1/catalog/service/", timeout=TIMEOUT)
    assert (missing.status_code, missing.text) == (400, "Missing service name")


# ---------------------------------------------------------------------------------------------
# Headers, keep-alive, concurrency
# ---------------------------------------------------------------------------------------------


def test_json_headers_and_index(double: ConsulDouble, session: requests.Session) -> None:
    def get(path: str) -> requests.Response:
        resp = session.get(double.url + path, timeout=TIMEOUT)
        assert resp.headers["Content-Type"] == "application/json"
        assert int(resp.headers["Content-Length"]) == len(resp.content)
        return resp

    start = int(get("/v1/agent/services").headers["X-Consul-Index"])
    for path in ("/v1/agent/checks", "/v1/status/leader", "/v1/catalog/service/web"):
        assert int(get(path).headers["X-Consul-Index"]) == start, "reads change nothing"
    assert (
        register(
            session, double, {"Name": "web", "Meta": {"html": "<b>&"}, "Check": {"TTL": "9s"}}
        ).status_code
        == 200
    )
    after_register = int(get("/v1/agent/services").headers["X-Consul-Index"])
    assert after_register > start
    session.put(
        double.url + "/v1/agent/check/update/service:web",
        json={"Status": "passing"},
        timeout=TIMEOUT,
    )
    after_pass = int(get("/v1/agent/checks").headers["X-Consul-Index"])
    assert after_pass > after_register
    session.put(double.url + "/v1/agent/service/deregister/web", timeout=TIMEOUT)
    assert int(get("/v1/agent/services").headers["X-Consul-Index"]) > after_pass

    register(session, double, {"Name": "web", "Meta": {"html": "<b>&"}})
    raw = get("/v1/agent/services").content
    assert b"\\u003cb\\u003e\\u0026" in raw, "HTML characters are escaped as Go's encoder does"


def test_keep_alive_connection_survives_every_kind_of_answer(double: ConsulDouble) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", double.port, timeout=TIMEOUT)
    try:
        statuses = []
        sock = None
        for method, path, body in [
            ("GET", "/v1/nope", None),
            ("PUT", REGISTER, "{bad json"),
            ("POST", REGISTER, "{}"),
            ("PUT", REGISTER, '{"Name": "web"}'),
            ("PUT", "/v1/agent/service/deregister/ghost", None),
            ("GET", "/v1/agent/services", None),
        ]:
            conn.request(method, path, body=body)
            resp = conn.getresponse()
            resp.read()
            statuses.append(resp.status)
            sock = sock or conn.sock
            assert conn.sock is sock, "the same connection is reused"
        assert statuses == [404, 400, 405, 200, 404, 200]
    finally:
        conn.close()


def test_many_concurrent_requests(double: ConsulDouble) -> None:
    def work(i: int) -> int:
        with requests.Session() as session:
            resp = register(session, double, {"ID": f"svc-{i}", "Name": "web", "Port": i})
            session.get(double.url + "/v1/agent/services", timeout=TIMEOUT)
            return resp.status_code

    with ThreadPoolExecutor(max_workers=32) as pool:
        assert set(pool.map(work, range(64))) == {200}
    assert len(double.services()) == 64
    assert len(double.writes()) == 64
    assert len(double.requests()) == 128


# ---------------------------------------------------------------------------------------------
# ACL
# ---------------------------------------------------------------------------------------------


def test_acl_token_is_required_everywhere() -> None:
    with (
        ConsulDouble(acl_token="secret", denied_services={"forbidden"}) as d,
        requests.Session() as s,
    ):
        for method, path in [
            ("GET", "/v1/agent/services"),
            ("PUT", REGISTER),
            ("GET", "/v1/status/leader"),
            ("PUT", "/v1/agent/service/deregister/x"),
            ("GET", "/v1/catalog/service/web"),
        ]:
            anonymous = s.request(method, d.url + path, data='{"Name": "web"}', timeout=TIMEOUT)
            assert (anonymous.status_code, anonymous.text) == (403, "Permission denied")
            wrong = s.request(
                method, d.url + path, headers={"X-Consul-Token": "guess"}, timeout=TIMEOUT
            )
            assert (wrong.status_code, wrong.text) == (403, "ACL not found")
        assert d.services() == {}

        ok_header = s.put(
            d.url + REGISTER,
            data='{"Name": "web"}',
            headers={"X-Consul-Token": "secret"},
            timeout=TIMEOUT,
        )
        assert ok_header.status_code == 200
        assert s.get(d.url + "/v1/agent/services?token=secret", timeout=TIMEOUT).status_code == 200

        denied = s.put(
            d.url + REGISTER + "?token=secret", data='{"Name": "forbidden"}', timeout=TIMEOUT
        )
        assert denied.status_code == 403
        assert re.fullmatch(
            r"Permission denied: token with AccessorID '[0-9a-f-]{36}' lacks permission "
            r"'service:write' on \"forbidden\"",
            denied.text,
        )
        d.set_denied_services({"web"})
        gone = s.put(d.url + "/v1/agent/service/deregister/web?token=secret", timeout=TIMEOUT)
        assert gone.status_code == 403
        assert "web" in d.services()
        d.set_denied_services(())

        c = consul.Consul(host="127.0.0.1", port=d.port, token="secret")
        assert c.agent.service.register("api", service_id="api-1")
        assert c.agent.service.deregister("api-1")
        with pytest.raises(consul.ACLPermissionDenied):
            consul.Consul(host="127.0.0.1", port=d.port).agent.service.register("api")

        recorded = d.requests()
        assert recorded[0].has_token is False
        assert any(r.has_token and r.query.get("token") == ["<redacted>"] for r in recorded)
        assert not any("secret" in json.dumps(r.query) or "secret" in r.body for r in recorded)


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------


def test_fault_error_answers_without_touching_state(
    double: ConsulDouble, session: requests.Session
) -> None:
    double.fail("error")
    resp = register(session, double, {"Name": "web"})
    assert (resp.status_code, resp.text) == (500, "rpc error: No cluster leader")
    assert double.services() == {}
    double.fail("error", status=503, body="overloaded")
    resp = session.get(double.url + "/v1/agent/services", timeout=TIMEOUT)
    assert (resp.status_code, resp.text) == (503, "overloaded")
    c = consul.Consul(host="127.0.0.1", port=double.port)
    with pytest.raises(consul.ConsulException, match="503 overloaded"):
        c.agent.service.register("web")
    double.fail(None)
    assert register(session, double, {"Name": "web"}).status_code == 200
    assert [r.status for r in double.requests()] == [500, 503, 503, 200]


def test_fault_hang_holds_until_cleared_then_drops(double: ConsulDouble) -> None:
    double.fail("hang")
    thread, outcome = in_thread(
        lambda: requests.put(double.url + REGISTER, data='{"Name": "web"}', timeout=TIMEOUT)
    )
    double.wait_for_requests(arrived(REGISTER))
    assert thread.is_alive(), "no answer while the fault lasts"
    double.fail(None)
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), requests.ConnectionError)
    assert double.services() == {}
    assert double.requests()[0].status == 0
    with requests.Session() as fresh:
        assert register(fresh, double, {"Name": "web"}).status_code == 200


def test_hung_requests_do_not_delay_stop() -> None:
    d = ConsulDouble().start()
    try:
        d.fail("hang")
        workers = [
            in_thread(lambda: requests.get(d.url + "/v1/agent/services", timeout=TIMEOUT))
            for _ in range(5)
        ]
        d.wait_for_requests(lambda reqs: len(reqs) == 5)
        started = time.monotonic()
        d.stop()
        assert time.monotonic() - started < 1.0
        for thread, outcome in workers:
            thread.join(TIMEOUT)
            assert isinstance(outcome.get("error"), requests.ConnectionError)
    finally:
        d.stop()


def test_fault_reset_closes_without_answer(double: ConsulDouble, session: requests.Session) -> None:
    double.fail("reset")
    with pytest.raises(requests.ConnectionError):
        session.get(double.url + "/v1/status/leader", timeout=TIMEOUT)
    with pytest.raises(requests.ConnectionError):
        consul.Consul(host="127.0.0.1", port=double.port).agent.service.register("web")
    assert double.services() == {}
    double.fail(None)
    assert session.get(double.url + "/v1/status/leader", timeout=TIMEOUT).status_code == 200


def test_fault_reset_after_applies_the_write_but_loses_the_answer(
    double: ConsulDouble, session: requests.Session
) -> None:
    double.fail("reset_after", paths=REGISTER)
    with pytest.raises(requests.ConnectionError):
        register(session, double, {"Name": "web"})
    assert "web" in double.services()
    assert double.requests()[-1].status == 0


def test_fault_slow_answers_late_and_counts_requests_in_flight(double: ConsulDouble) -> None:
    double.fail("slow", delay=0.5, paths=REGISTER)

    def put(name: str) -> int:
        body = json.dumps({"Name": name})
        return requests.put(double.url + REGISTER, data=body, timeout=TIMEOUT).status_code

    hung = [in_thread(functools.partial(put, f"s{n}")) for n in range(3)]
    double.wait_for_requests(lambda reqs: len(reqs) == 3)
    assert double.services() == {}, "nothing is applied before the delay is over"
    reader = requests.get(double.url + "/v1/agent/services", timeout=TIMEOUT)
    assert reader.status_code == 200, "other paths are not delayed"
    for thread, outcome in hung:
        thread.join(TIMEOUT)
        assert outcome["result"] == 200
    assert set(double.services()) == {"s0", "s1", "s2"}
    assert double.in_flight_peak() == 3
    assert double.in_flight_peak(writes=False) == 4
    writes = double.writes()
    assert all(r.finished - r.time >= 0.5 for r in writes)
    double.fail(None)
    double.clear_requests()
    assert double.in_flight_peak() == 0
    for n in range(3):
        assert register(requests.Session(), double, {"Name": f"t{n}"}).status_code == 200
    assert double.in_flight_peak() == 1, "one after another: never two at once"


def test_fault_every_nth_request(double: ConsulDouble, session: requests.Session) -> None:
    double.fail("error", every=3)
    statuses = [
        session.get(double.url + "/v1/agent/services", timeout=TIMEOUT).status_code
        for _ in range(7)
    ]
    assert statuses == [200, 200, 500, 200, 200, 500, 200]
    with pytest.raises(ValueError):
        double.fail("error", every=0)
    with pytest.raises(ValueError):
        double.fail("explode")


def test_fault_limited_to_a_path_prefix(double: ConsulDouble, session: requests.Session) -> None:
    double.fail("error", status=500, body="boom", paths="/v1/agent/service/")
    assert register(session, double, {"Name": "web"}).status_code == 500
    assert (
        session.put(double.url + "/v1/agent/service/deregister/x", timeout=TIMEOUT).status_code
        == 500
    )
    assert session.get(double.url + "/v1/agent/services", timeout=TIMEOUT).status_code == 200
    assert session.get(double.url + "/v1/status/leader", timeout=TIMEOUT).status_code == 200


# ---------------------------------------------------------------------------------------------
# Lifecycle, recording, control API
# ---------------------------------------------------------------------------------------------


def test_stop_refuses_connections_and_cuts_keep_alive_ones() -> None:
    d = ConsulDouble().start()
    port = d.port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/v1/agent/services")
        assert conn.getresponse().read() == b"{}"
        d.stop()
        d.stop()  # idempotent
        with pytest.raises((http.client.HTTPException, OSError)):
            conn.request("GET", "/v1/agent/services")
            conn.getresponse().read()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    finally:
        conn.close()
        d.stop()


def test_restart_keeps_the_port_and_empty_drops_state(session: requests.Session) -> None:
    with ConsulDouble() as d:
        port = d.port
        assert register(session, d, {"Name": "web", "Check": {"TTL": "5s"}}).status_code == 200
        index = d.index
        d.restart()
        assert d.port == port
        assert d.services() == {} and d.checks() == {}
        assert d.index > index, "the index never goes backwards"
        assert session.get(d.url + "/v1/agent/services", timeout=TIMEOUT).json() == {}

        assert register(session, d, {"Name": "db"}).status_code == 200
        d.restart(empty=False)
        assert d.port == port
        assert list(d.services()) == ["db"]
        assert session.get(d.url + "/v1/agent/services", timeout=TIMEOUT).status_code == 200

        d.stop()
        with pytest.raises(requests.ConnectionError):
            requests.get(d.url + "/v1/agent/services", timeout=TIMEOUT)
        d.start()
        assert d.port == port
        assert list(d.services()) == ["db"]


def test_fixed_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    with ConsulDouble(port=free) as d:
        assert d.url == f"http://127.0.0.1:{free}"
        assert requests.get(d.url + "/v1/status/leader", timeout=TIMEOUT).status_code == 200


def test_requests_are_recorded_in_order(double: ConsulDouble, session: requests.Session) -> None:
    register(session, double, {"ID": "a b", "Name": "web"}, "?replace-existing-checks")
    session.get(double.url + "/v1/agent/checks?pretty", timeout=TIMEOUT)
    session.put(double.url + "/v1/agent/service/deregister/a%20b", timeout=TIMEOUT)
    session.post(double.url + "/v1/agent/services", timeout=TIMEOUT)
    recorded = double.requests()
    assert [(r.method, r.path, r.status) for r in recorded] == [
        ("PUT", REGISTER, 200),
        ("GET", "/v1/agent/checks", 200),
        ("PUT", "/v1/agent/service/deregister/a b", 200),
        ("POST", "/v1/agent/services", 405),
    ]
    assert recorded[0].query == {"replace-existing-checks": [""]}
    assert json.loads(recorded[0].body) == {"ID": "a b", "Name": "web"}
    assert recorded[1].query == {"pretty": [""]}
    assert [r.time for r in recorded] == sorted(r.time for r in recorded)
    assert double.writes() == [recorded[0], recorded[2], recorded[3]]
    with pytest.raises(dataclasses.FrozenInstanceError):
        recorded[0].status = 1  # type: ignore[misc]
    double.clear_requests()
    assert double.requests() == [] and double.writes() == []


def test_wait_for_wakes_on_change_and_reports_state_on_timeout(double: ConsulDouble) -> None:
    thread, _ = in_thread(lambda: double.register({"Name": "late"}))
    services = double.wait_for(lambda s: "late" in s, timeout=TIMEOUT)
    assert services["late"]["Service"] == "late"
    thread.join(TIMEOUT)
    with pytest.raises(AssertionError, match='"late"'):
        double.wait_for(lambda s: "never" in s, timeout=0.05)
    with pytest.raises(AssertionError, match="requests condition not met"):
        double.wait_for_requests(lambda reqs: len(reqs) > 0, timeout=0.05)


def test_control_api_seeds_and_changes_state(
    double: ConsulDouble, session: requests.Session
) -> None:
    double.register(
        {"ID": "orphan", "Name": "web", "Check": {"HTTP": "http://x/", "Interval": "10s"}}
    )
    assert "orphan" in session.get(double.url + "/v1/agent/services", timeout=TIMEOUT).json()
    with pytest.raises(ValueError, match="400 Missing service name"):
        double.register({"Port": 1})


def test_tls(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with ConsulDouble(ssl_context=context) as d:
        assert d.url.startswith("https://127.0.0.1:")
        resp = requests.get(d.url + "/v1/status/leader", verify=str(cert), timeout=TIMEOUT)
        assert resp.json() == "127.0.0.1:8300"
        c = consul.Consul(host="127.0.0.1", port=d.port, scheme="https", verify=str(cert))
        assert c.agent.service.register("web")
        assert "web" in d.services()
