"""The read-only view of an inspected container: each field read once, null read as empty."""

from __future__ import annotations

from registrator.core.container import (
    Binding,
    ContainerView,
    display_name,
    service_metadata,
    short_id,
)
from tests.inspect_data import inspect


def test_display_name_is_name_and_short_id() -> None:
    assert short_id("0123456789abcdef") == "0123456789ab"
    assert display_name("web.0", "0123456789abcdef") == "web.0 (0123456789ab)"
    view = ContainerView(inspect(name="web.0"))
    assert (view.name, view.short_id) == ("web.0", "0123456789ab")
    assert view.display == "web.0 (0123456789ab)"


def test_null_and_missing_fields_read_as_empty() -> None:
    nulls = {"Id": "abc", "Name": None, "Config": None, "HostConfig": None, "State": None}
    for container in ({}, nulls, {"Config": {"Env": None, "Labels": None}}):
        view = ContainerView(container)
        assert (view.name, view.image, view.env, view.labels) == ("", "", (), {})
        assert (view.network_mode, view.network_peer_id, view.shares_network) == ("", "", False)
        assert (view.ip_address, view.exposed_ports, view.published_ports) == ("", [], {})
        assert (view.running, view.exit_code, view.health_status) == (False, 0, None)


def test_env_keeps_docker_order_and_drops_non_strings() -> None:
    container = {"Config": {"Env": ["B=2", 7, "A=1", None, "B=3"]}}
    assert ContainerView(container).env == ("B=2", "A=1", "B=3")


def test_labels_are_strings() -> None:
    assert ContainerView({"Config": {"Labels": {"a": 1, "b": None}}}).labels == {
        "a": "1",
        "b": "None",
    }


def test_ip_address_default_network_first_else_last_network_with_one() -> None:
    assert ContainerView(inspect(ip="172.17.0.5")).ip_address == "172.17.0.5"
    networks = {
        "a": {"IPAddress": "10.0.0.1"},
        "b": {"IPAddress": ""},
        "c": {"IPAddress": "10.0.0.3"},
    }
    view = ContainerView({"NetworkSettings": {"IPAddress": "", "Networks": networks}})
    assert view.ip_address == "10.0.0.3"
    assert view.network_address("a") == "10.0.0.1"
    assert view.network_address("missing") == ""


def test_network_peer() -> None:
    view = ContainerView({"HostConfig": {"NetworkMode": "container:abc123"}})
    assert (view.shares_network, view.network_peer_id) == (True, "abc123")
    host = ContainerView({"HostConfig": {"NetworkMode": "host"}})
    assert (host.shares_network, host.network_peer_id) == (False, "")


def test_ports_list_every_binding() -> None:
    view = ContainerView(inspect(published={"80/tcp": "8080", "53/udp": None}, host_ip="1.2.3.4"))
    assert sorted(view.exposed_ports) == ["53/udp", "80/tcp"]
    assert view.published_ports == {
        "80/tcp": (Binding("1.2.3.4", "8080"), Binding("::", "8080")),
        "53/udp": (),
    }


def test_state() -> None:
    view = ContainerView(inspect(running=False, exit_code=3))
    assert (view.running, view.exit_code) == (False, 3)
    healthy = ContainerView({"State": {"Health": {"Status": "healthy"}}})
    assert healthy.health_status == "healthy"
    assert ContainerView({"State": {"Health": {"Status": None}}}).health_status == ""


def test_service_keys_are_the_containers_env_then_labels() -> None:
    container = inspect(
        env={"SERVICE_NAME": "env", "SERVICE_80_TAGS": "a"}, labels={"SERVICE_NAME": "label"}
    )
    metadata, from_port = ContainerView(container).service_keys("80")
    assert metadata == {"name": "label", "tags": "a"}
    assert from_port == {"tags"}
    assert (metadata, from_port) == service_metadata(
        ["SERVICE_NAME=env", "SERVICE_80_TAGS=a"], {"SERVICE_NAME": "label"}, "80"
    )
