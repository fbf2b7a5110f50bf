"""The original registrator's documented examples and rules, on plain inspect data."""

from __future__ import annotations

import pytest

from registrator.core.config import Config
from registrator.core.consul_limits import valid_duration
from registrator.core.container import service_metadata
from registrator.core.derive import (
    DeriveOptions,
    default_service_name,
    derive_services,
    split_tags,
)
from registrator.core.lifecycle import retained_after_exit
from registrator.core.model import OWNER_META_KEY
from registrator.core.reasons import Reason, Why
from tests.inspect_data import inspect

OPTS = DeriveOptions(hostname="host1", host_ip="10.0.0.7")


def services(container, options=OPTS, peer=None):
    return {s.id: s for s in derive_services(container, options, peer).services}


def user_meta(service):
    meta = service.meta_dict
    assert meta.pop(OWNER_META_KEY) == "host1"
    return meta


# --- docs/user/services.md examples ---------------------------------------------------------


def test_single_service_with_defaults():
    got = services(inspect(name="redis.0", image="progrium/redis", published={"6379/tcp": "10000"}))
    assert list(got) == ["host1:redis.0:6379"]
    svc = got["host1:redis.0:6379"]
    assert (svc.name, svc.port, svc.address, svc.tags) == ("redis", 10000, "10.0.0.7", ())
    assert user_meta(svc) == {}


def test_single_service_with_metadata():
    env = {"SERVICE_NAME": "db", "SERVICE_TAGS": "master,backups", "SERVICE_REGION": "us2"}
    got = services(
        inspect(name="redis.0", image="progrium/redis", published={"6379/tcp": "10000"}, env=env)
    )
    svc = got["host1:redis.0:6379"]
    assert (svc.name, svc.port, svc.tags) == ("db", 10000, ("master", "backups"))
    assert user_meta(svc) == {"region": "us2"}


def test_multiple_services_with_defaults():
    got = services(
        inspect(
            name="nginx.0",
            image="progrium/nginx",
            published={"443/tcp": "4443", "80/tcp": "8000"},
        )
    )
    assert sorted(got) == ["host1:nginx.0:443", "host1:nginx.0:80"]
    assert (got["host1:nginx.0:443"].name, got["host1:nginx.0:443"].port) == ("nginx-443", 4443)
    assert (got["host1:nginx.0:80"].name, got["host1:nginx.0:80"].port) == ("nginx-80", 8000)


def test_multiple_services_with_per_port_metadata():
    env = {
        "SERVICE_443_NAME": "https",
        "SERVICE_443_ID": "https.12345",
        "SERVICE_443_SNI": "enabled",
        "SERVICE_80_NAME": "http",
        "SERVICE_TAGS": "www",
    }
    got = services(
        inspect(
            name="nginx.0",
            image="progrium/nginx",
            published={"443/tcp": "4443", "80/tcp": "8000"},
            env=env,
        )
    )
    assert sorted(got) == ["host1:nginx.0:80", "https.12345"]
    https, http = got["https.12345"], got["host1:nginx.0:80"]
    assert (https.name, https.port, https.tags) == ("https", 4443, ("www",))
    assert user_meta(https) == {"sni": "enabled"}
    assert (http.name, http.port, http.tags) == ("http", 8000, ("www",))
    assert user_meta(http) == {}


def test_labels_work_like_env():
    labels = {"SERVICE_NAME": "db", "SERVICE_TAGS": "master,backups", "SERVICE_REGION": "us2"}
    got = services(
        inspect(
            name="redis.0", image="dockerfile/redis", published={"6379/tcp": "10000"}, labels=labels
        )
    )
    svc = got["host1:redis.0:6379"]
    assert (svc.name, svc.tags) == ("db", ("master", "backups"))
    assert user_meta(svc) == {"region": "us2"}


def test_escaped_commas_in_tags():
    env = {"SERVICE_TAGS": r"a\,b,c,weight=1\,2"}
    svc = services(inspect(published={"80/tcp": "8080"}, env=env))["host1:app.0:80"]
    assert svc.tags == ("a,b", "c", "weight=1,2")


# --- rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "name"),
    [
        ("redis", "redis"),
        ("redis:7", "redis"),
        ("example/redis:7", "redis"),
        ("registry.local:5000/team/api:2.1", "api"),
        ("nginx@sha256:" + "a" * 64, "nginx"),
    ],
)
def test_default_name_is_image_base_without_tag(image, name):
    assert default_service_name(image) == name


def test_label_wins_over_env_and_port_key_wins_over_generic():
    env = {"SERVICE_NAME": "from-env", "SERVICE_80_TAGS": "port-tag", "SERVICE_TAGS": "generic"}
    labels = {"SERVICE_NAME": "from-label"}
    svc = services(inspect(published={"80/tcp": "8080"}, env=env, labels=labels))["host1:app.0:80"]
    assert svc.name == "from-label"
    assert svc.tags == ("port-tag",)


def test_per_port_keys_of_other_ports_are_ignored():
    meta, from_port = service_metadata(["SERVICE_81_NAME=x", "SERVICE_80_NAME=y"], {}, "80")
    assert meta == {"name": "y"}
    assert from_port == {"name"}


def test_group_suffix_not_added_when_name_comes_from_port_key_but_added_for_generic_name():
    env = {"SERVICE_NAME": "api", "SERVICE_443_NAME": "api-tls"}
    got = services(inspect(published={"80/tcp": "8080", "443/tcp": "8443"}, env=env))
    assert got["host1:app.0:80"].name == "api-80"
    assert got["host1:app.0:443"].name == "api-tls"


def test_udp_port_gets_id_suffix_and_tag():
    got = services(inspect(published={"53/udp": "5353"}, env={"SERVICE_TAGS": "dns"}))
    svc = got["host1:app.0:53:udp"]
    assert svc.tags == ("dns", "udp")
    assert svc.port == 5353


def test_service_id_override_drops_udp_suffix():
    got = services(inspect(published={"53/udp": "5353"}, env={"SERVICE_ID": "dns-1"}))
    assert list(got) == ["dns-1"]


def test_force_tags_are_appended():
    opts = OPTS._replace(force_tags=("prod", "eu"))
    svc = services(inspect(published={"80/tcp": "8080"}, env={"SERVICE_TAGS": "web"}), opts)
    assert svc["host1:app.0:80"].tags == ("web", "prod", "eu")


@pytest.mark.parametrize("key", ["SERVICE_IGNORE", "SERVICE_80_IGNORE"])
def test_ignore(key):
    got = services(inspect(published={"80/tcp": "8080", "443/tcp": "8443"}, env={key: "true"}))
    if key == "SERVICE_IGNORE":
        assert got == {}
    else:
        # the group flag is computed before per-port IGNORE, so 443 keeps its suffix
        assert list(got) == ["host1:app.0:443"]
        assert got["host1:app.0:443"].name == "app-443"


def test_explicit_requires_a_name():
    opts = OPTS._replace(explicit=True)
    assert services(inspect(published={"80/tcp": "8080"}), opts) == {}
    named = services(inspect(published={"80/tcp": "8080"}, env={"SERVICE_NAME": "x"}), opts)
    assert list(named) == ["host1:app.0:80"]


def test_unpublished_exposed_port_is_skipped_without_internal():
    derivation = derive_services(inspect(published={"80/tcp": "8080", "9000/tcp": None}), OPTS)
    assert [s.id for s in derivation.services] == ["host1:app.0:80"]
    assert derivation.ports[1].why == (
        Why(Reason.NOT_PUBLISHED, "port 9000/tcp is exposed, not published")
    )
    # only one service counts for the group suffix
    assert derivation.services[0].name == "app"


def test_internal_uses_container_ip_and_exposed_ports():
    opts = OPTS._replace(internal=True)
    got = services(
        inspect(published={"80/tcp": "8080"}, exposed=["9000/tcp"], ip="172.17.0.9"), opts
    )
    assert {s.id: (s.address, s.port) for s in got.values()} == {
        "host1:app.0:80": ("172.17.0.9", 80),
        "host1:app.0:9000": ("172.17.0.9", 9000),
    }


def test_host_network_uses_exposed_ports_as_host_ports():
    got = services(inspect(network_mode="host", exposed=["8080/tcp"], ip=""))
    svc = got["host1:app.0:8080"]
    assert (svc.address, svc.port) == ("10.0.0.7", 8080)


def test_ip_flag_forces_the_address():
    opts = OPTS._replace(ip="127.0.0.1")
    svc = services(inspect(published={"80/tcp": "8080"}), opts)["host1:app.0:80"]
    assert svc.address == "127.0.0.1"


def test_binding_on_a_specific_host_ip_is_kept():
    svc = services(inspect(published={"80/tcp": "8080"}, host_ip="192.0.2.10"))["host1:app.0:80"]
    assert svc.address == "192.0.2.10"


def test_use_ip_from_label_strips_prefix_length():
    opts = OPTS._replace(use_ip_from_label="com.example.ip")
    got = services(
        inspect(published={"80/tcp": "8080"}, labels={"com.example.ip": "10.9.8.7/24"}), opts
    )
    assert got["host1:app.0:80"].address == "10.9.8.7"


def test_user_defined_network_publishes_at_the_hosts_address_and_internal_takes_its_ip():
    container = inspect(published={"80/tcp": "8080"}, network_mode="backend", ip="10.20.0.3")
    published = services(container)["host1:app.0:80"]
    assert (published.address, published.port) == ("10.0.0.7", 8080)
    internal = services(container, OPTS._replace(internal=True))["host1:app.0:80"]
    assert (internal.address, internal.port) == ("10.20.0.3", 80)


def test_network_mode_container_takes_the_other_containers_ip():
    peer = inspect(name="pod", ip="172.17.0.42")
    got = services(
        inspect(published={"80/tcp": "8080"}, network_mode="container:" + peer["Id"]),
        peer=peer,
    )
    assert got["host1:app.0:80"].address == "172.17.0.42"


def test_no_ports_no_services():
    derivation = derive_services(inspect(), OPTS)
    assert derivation.services == ()
    assert derivation.skipped == Why(Reason.NO_PORTS, "no exposed or published ports")


def test_other_keys_become_meta_and_id_name_tags_do_not():
    env = {
        "SERVICE_NAME": "x",
        "SERVICE_ID": "x1",
        "SERVICE_TAGS": "t",
        "SERVICE_VERSION": "1.2",
        "SERVICE_CHECK_HTTP": "/health",
        "NOT_SERVICE": "y",
    }
    svc = services(inspect(published={"80/tcp": "8080"}, env=env))["x1"]
    assert user_meta(svc) == {"version": "1.2", "check_http": "/health"}


# --- checks ---------------------------------------------------------------------------------


def check_for(env, options=OPTS):
    svc = next(iter(services(inspect(published={"80/tcp": "8080"}, env=env), options).values()))
    return svc.check


def test_http_check_with_defaults():
    check = check_for({"SERVICE_CHECK_HTTP": "/health"})
    assert check.to_consul() == {"HTTP": "http://10.0.0.7:8080/health", "Interval": "10s"}


def test_https_check_with_method_timeout_interval_and_status():
    check = check_for(
        {
            "SERVICE_CHECK_HTTPS": "/h",
            "SERVICE_CHECK_HTTPS_METHOD": "HEAD",
            "SERVICE_CHECK_TIMEOUT": "2s",
            "SERVICE_CHECK_INTERVAL": "15s",
            "SERVICE_CHECK_INITIAL_STATUS": "passing",
            "SERVICE_CHECK_DEREGISTER_AFTER": "10m",
        }
    )
    assert check.to_consul() == {
        "HTTP": "https://10.0.0.7:8080/h",
        "Method": "HEAD",
        "Timeout": "2s",
        "Interval": "15s",
        "Status": "passing",
        "DeregisterCriticalServiceAfter": "10m",
    }


def test_tcp_ttl_grpc_checks():
    assert check_for({"SERVICE_CHECK_TCP": "true"}).to_consul() == {
        "TCP": "10.0.0.7:8080",
        "Interval": "10s",
    }
    assert check_for({"SERVICE_CHECK_TTL": "30s"}).to_consul() == {"TTL": "30s"}
    assert check_for(
        {
            "SERVICE_CHECK_GRPC": "true",
            "SERVICE_CHECK_GRPC_USE_TLS": "true",
            "SERVICE_CHECK_TLS_SKIP_VERIFY": "true",
        }
    ).to_consul() == {
        "GRPC": "10.0.0.7:8080",
        "GRPCUseTLS": True,
        "TLSSkipVerify": True,
        "Interval": "10s",
    }


def test_first_check_kind_wins():
    check = check_for({"SERVICE_CHECK_TTL": "30s", "SERVICE_CHECK_HTTP": "/h"})
    assert check.http and not check.ttl


def test_script_checks_refused_by_default_with_a_problem_naming_the_key():
    container = inspect(published={"80/tcp": "8080"}, env={"SERVICE_CHECK_SCRIPT": "curl x"})
    derivation = derive_services(container, OPTS)
    (svc,) = derivation.services
    assert svc.check is None
    assert "check_script" not in svc.meta_dict
    (problem,) = derivation.problems
    assert problem.key == "SERVICE_CHECK_SCRIPT"
    assert "app.0" in str(problem)


def test_script_check_interpolates_when_allowed():
    opts = OPTS._replace(allow_script_checks=True)
    check = check_for({"SERVICE_CHECK_SCRIPT": "nc -z $SERVICE_IP $SERVICE_PORT"}, opts)
    assert check.args == ("sh", "-c", "nc -z 10.0.0.7 8080")
    assert check.interval == "10s"


# --- bad input never loses good input -------------------------------------------------------


def test_bad_meta_key_is_dropped_and_the_rest_kept():
    env = {
        "SERVICE_BAD.KEY": "x",
        "SERVICE_CONSUL-X": "y",
        "SERVICE_GOOD": "z",
        "SERVICE_NAME": "n",
    }
    derivation = derive_services(inspect(published={"80/tcp": "8080"}, env=env), OPTS)
    (svc,) = derivation.services
    assert svc.name == "n"
    assert user_meta(svc) == {"good": "z"}
    assert sorted(p.key for p in derivation.problems) == ["SERVICE_BAD.KEY", "SERVICE_CONSUL-X"]


def test_ownership_key_cannot_be_spoofed():
    derivation = derive_services(
        inspect(published={"80/tcp": "8080"}, env={"SERVICE_REGISTRATOR": "otherhost"}), OPTS
    )
    assert derivation.services[0].owner == "host1"
    assert derivation.problems[0].key == "SERVICE_REGISTRATOR"


def test_malformed_inspect_data_is_tolerated():
    container = inspect(published={"80/tcp": "8080"})
    container["Config"]["Env"] = None
    container["Config"]["Labels"] = None
    container["HostConfig"] = None
    assert list(services(container)) == ["host1:app.0:80"]
    assert derive_services({}, OPTS).services == ()


# --- tags, exit codes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "tags"),
    [
        ("", []),
        ("a", ["a"]),
        ("a,b", ["a", "b"]),
        (",a,,b,", ["a", "b"]),
        (" a , b ", ["a", "b"]),
        (r"a\,b", ["a,b"]),
        ("a\\", ["a\\"]),
    ],
)
def test_split_tags(raw, tags):
    assert split_tags(raw) == tags


@pytest.mark.parametrize(
    ("mode", "running", "code", "kept"),
    [
        ("always", False, 1, False),
        ("on-success", False, 0, False),
        ("on-success", False, 137, False),
        ("on-success", False, 143, False),
        ("on-success", False, 1, True),
        ("on-success", False, 2, True),
        ("on-success", True, 0, True),
    ],
)
def test_retained_after_exit(mode, running, code, kept):
    assert retained_after_exit(inspect(running=running, exit_code=code), mode) is kept


@pytest.mark.parametrize(
    ("value", "ok"),
    [("10s", True), ("1m30s", True), ("500ms", True), ("2.5s", True), ("1h", True),
     ("0", False), ("10", False), ("abc", False), ("-1s", False), ("", False), ("1µs", True)],
)  # fmt: skip
def test_durations_as_go_parses_them(value, ok):
    assert valid_duration(value) is ok


def test_bad_check_values_are_fixed_or_dropped_with_problems():
    env = {
        "SERVICE_CHECK_HTTP": "/h",
        "SERVICE_CHECK_INTERVAL": "often",
        "SERVICE_CHECK_TIMEOUT": "5",
        "SERVICE_CHECK_INITIAL_STATUS": "green",
        "SERVICE_CHECK_DEREGISTER_AFTER": "later",
    }
    derivation = derive_services(inspect(published={"80/tcp": "8080"}, env=env), OPTS)
    (svc,) = derivation.services
    assert svc.check is not None
    assert svc.check.to_consul() == {"HTTP": "http://10.0.0.7:8080/h", "Interval": "10s"}
    assert sorted(p.key for p in derivation.problems) == [
        "SERVICE_CHECK_DEREGISTER_AFTER",
        "SERVICE_CHECK_INITIAL_STATUS",
        "SERVICE_CHECK_INTERVAL",
        "SERVICE_CHECK_TIMEOUT",
    ]
    bad_ttl = derive_services(
        inspect(published={"80/tcp": "8080"}, env={"SERVICE_CHECK_TTL": "x"}), OPTS
    )
    assert bad_ttl.services[0].check is None


# --- names, IDs, tags that Consul or DNS cannot use ------------------------------------------


def test_a_name_unusable_as_dns_label_skips_that_service_only():
    env = {"SERVICE_80_NAME": "web_api", "SERVICE_443_NAME": "web-tls"}
    derivation = derive_services(
        inspect(published={"80/tcp": "8080", "443/tcp": "8443"}, env=env), OPTS
    )
    assert [s.name for s in derivation.services] == ["web-tls"]
    (problem,) = derivation.problems
    assert problem.key == "SERVICE_80_NAME" and "DNS label" in problem.message


def test_default_names_from_odd_image_names_become_dns_labels():
    got = services(inspect(image="registry:5000/team/my_app.v2:1", published={"80/tcp": "8080"}))
    assert got["host1:app.0:80"].name == "my-app-v2"


def test_a_service_id_that_cannot_travel_in_a_url_falls_back_to_the_default():
    derivation = derive_services(
        inspect(published={"80/tcp": "8080"}, env={"SERVICE_ID": "a/b"}), OPTS
    )
    assert [s.id for s in derivation.services] == ["host1:app.0:80"]
    assert derivation.problems[0].key == "SERVICE_ID"


def test_a_generic_service_id_on_several_ports_keeps_the_first_and_says_so():
    derivation = derive_services(
        inspect(published={"80/tcp": "8080", "443/tcp": "8443"}, env={"SERVICE_ID": "same"}),
        OPTS,
    )
    assert [s.id for s in derivation.services] == ["same"]
    assert derivation.services[0].port == 8080
    assert "SERVICE_<port>_ID" in str(derivation.problems[0])


def test_a_final_newline_is_refused_as_consul_refuses_it():
    """Consul's checks are Go regexps, whose ``$`` is the end of the text; Python's would
    also match before a final newline (found by test_properties: the agent refused it)."""
    labels = {
        "SERVICE_NOTE\n": "x", "SERVICE_ID": "id\n", "SERVICE_CHECK_TTL": "30s\n",
        "SERVICE_CHECK_1_TTL\n": "30s",
    }  # fmt: skip
    derivation = derive_services(inspect(published={"80/tcp": "8080"}, labels=labels), OPTS)
    (svc,) = derivation.services
    assert (svc.id, svc.checks, "note\n" in svc.meta_dict) == ("host1:app.0:80", (), False)
    assert sorted(p.key for p in derivation.problems) == [
        "SERVICE_CHECK_1_TTL\n", "SERVICE_CHECK_TTL", "SERVICE_ID", "SERVICE_NOTE\n",
    ]  # fmt: skip


def test_unprintable_tags_dropped_and_meta_values_measured_in_bytes():
    env = {"SERVICE_TAGS": "ok,bad\x07bell", "SERVICE_NOTE": "é" * 300}
    derivation = derive_services(inspect(published={"80/tcp": "8080"}, env=env), OPTS)
    (svc,) = derivation.services
    assert svc.tags == ("ok",)
    assert "note" not in svc.meta_dict  # 600 bytes > Consul's 512
    assert sorted(p.key for p in derivation.problems) == ["SERVICE_NOTE", "SERVICE_TAGS"]


def test_check_cmd_uses_the_originals_helper_when_allowed():
    opts = OPTS._replace(allow_script_checks=True)
    check = check_for({"SERVICE_CHECK_CMD": "/bin/health"}, opts)
    assert check is not None
    assert check.args == ("check-cmd", "0123456789ab", "80", "/bin/health")


def test_derive_options_are_configs_fields_plus_the_resolved_host_ip() -> None:
    """Config is the one source of the derivation's settings: same names, same defaults."""
    config_defaults = Config._field_defaults
    for name in DeriveOptions._fields:
        if name not in ("host_ip", "hostname"):
            assert DeriveOptions._field_defaults[name] == config_defaults[name], name
    assert set(DeriveOptions._fields) - set(Config._fields) == {"host_ip"}
    config = Config(hostname="h1", ip="1.2.3.4", internal=True, force_tags=("a",), ecs=True)
    options = DeriveOptions.from_config(config, host_ip="10.0.0.9")
    assert options == DeriveOptions(
        hostname="h1", host_ip="10.0.0.9", ip="1.2.3.4", internal=True, force_tags=("a",), ecs=True
    )


def test_the_cli_builds_the_options_from_the_config() -> None:
    """cli.derive_options resolves the hostname and leaves the rest to from_config."""
    from registrator.app.cli import derive_options

    config = Config(
        hostname="localhost",
        ip="1.2.3.4",
        internal=True,
        explicit=True,
        force_tags=("a", "b"),
        use_ip_from_label="ip",
        allow_script_checks=True,
        require_healthy=True,
        ecs=True,
    )
    options = derive_options(config)
    assert options == DeriveOptions.from_config(config, host_ip=options.host_ip)
    assert options.host_ip
