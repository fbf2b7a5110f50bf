"""Command-line parsing and validation, as the original does it; exit code 2 with usage."""

from __future__ import annotations

import pytest

from registrator.cli import UsageError, parse_config
from registrator.config import ConsulEndpoint, acl_token, parse_registry_uri
from tests.conftest import run_cli


def parse(*argv: str, env: dict[str, str] | None = None):
    return parse_config(list(argv), env or {}, hostname="h1")


def test_original_single_dash_flags_and_double_dash_spellings():
    _, config = parse(
        "-ip", "10.1.2.3", "-internal", "--explicit", "-tags=a,b", "-resync", "30",
        "-deregister", "on-success", "-cleanup", "-retry-attempts", "-1",
        "-retry-interval", "500", "-ttl", "30", "-ttl-refresh", "10",
        "-useIpFromLabel", "ip.label", "consul://10.0.0.1:8600",
    )  # fmt: skip
    assert config.ip == "10.1.2.3"
    assert config.internal and config.explicit and config.cleanup
    assert config.force_tags == ("a", "b")
    assert (config.resync, config.deregister) == (30, "on-success")
    assert (config.retry_attempts, config.retry_interval_ms) == (-1, 500)
    assert (config.ttl, config.ttl_refresh) == (30, 10)
    assert config.use_ip_from_label == "ip.label"
    assert config.consul == ConsulEndpoint("http", "10.0.0.1", 8600)


def test_ecs_flags():
    _, config = parse("consul://")
    assert (config.ecs, config.ecs_agent_uri) == (False, "http://127.0.0.1:51678")
    _, config = parse("-ecs", "-ecs-agent-uri", "http://127.0.0.1:5000", "consul://")
    assert (config.ecs, config.ecs_agent_uri) == (True, "http://127.0.0.1:5000")


def test_go_style_boolean_values():
    _, config = parse("-internal=true", "-cleanup=false", "consul://")
    assert config.internal and not config.cleanup


def test_resync_subcommand():
    command, config = parse("resync", "-ip", "127.0.0.1", "consul://")
    assert command == "resync" and config.ip == "127.0.0.1"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "missing required argument for registry URI"),
        (["consul://", "extra"], "extra unparsed arguments: extra"),
        (["-ttl", "10", "consul://"], "-ttl and -ttl-refresh must be specified together"),
        (
            ["-ttl", "10", "-ttl-refresh", "10", "consul://"],
            "-ttl must be greater than -ttl-refresh",
        ),
        (["-retry-interval", "0", "consul://"], "-retry-interval must be greater than 0"),
        (["-deregister", "never", "consul://"], '-deregister must be "always" or "on-success"'),
        (["-internal=maybe", "consul://"], "invalid boolean value 'maybe'"),
        (["-bogus", "consul://"], "unrecognized arguments: -bogus"),
        (["etcd://127.0.0.1:2379"], "unrecognized registry backend"),
        (["consul://127.0.0.1:abc"], "is not a number"),
        (["-ecs-agent-uri", "https://127.0.0.1:51678", "consul://"], "-ecs-agent-uri"),
        (["-ecs-agent-uri", "127.0.0.1:51678", "consul://"], "use http://HOST"),
    ],
)
def test_bad_usage_is_a_clear_error(argv, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("'", "'")):
        parse(*argv)


def test_bad_usage_exits_2_with_usage_on_stderr():
    result = run_cli("-deregister", "sometimes", "consul://")
    assert result.returncode == 2
    assert '-deregister must be "always" or "on-success"' in result.stderr
    assert "usage: registrator" in result.stderr
    assert result.stdout == ""


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("registrator ")


@pytest.mark.parametrize(
    ("uri", "env", "endpoint"),
    [
        ("consul://", {}, ConsulEndpoint("http", "127.0.0.1", 8500)),
        ("consul://", {"CONSUL_HTTP_ADDR": "10.0.0.2:8500"}, ConsulEndpoint("http", "10.0.0.2", 8500)),
        ("consul://consul.local", {}, ConsulEndpoint("http", "consul.local", 8500)),
        ("consul-tls://c:8501", {"CONSUL_CACERT": "/etc/hostname"}, ConsulEndpoint("https", "c", 8501, ca_file="/etc/hostname")),
        ("consul-tls://c", {"CONSUL_HTTP_SSL_VERIFY": "false"}, ConsulEndpoint("https", "c", 8501, verify=False)),
        ("consul-unix:///run/consul.sock", {}, ConsulEndpoint("http", "", 0, socket_path="/run/consul.sock")),
    ],
)  # fmt: skip
def test_registry_uris(uri, env, endpoint):
    assert parse_registry_uri(uri, env) == endpoint


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONSUL_CLIENT_CERT": "/etc/hostname"}, "both CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY"),
        ({"CONSUL_CACERT": "/nonexistent/ca.pem"}, "TLS CA '/nonexistent/ca.pem' does not exist"),
    ],
)
def test_bad_tls_settings_are_usage_errors(env, message):
    with pytest.raises(UsageError, match=message):
        parse("consul-tls://127.0.0.1:8501", env=env)


def test_token_file_wins_over_token_variable(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    env = {"CONSUL_HTTP_TOKEN": "from-env", "CONSUL_HTTP_TOKEN_FILE": str(token_file)}
    assert acl_token(env) == "from-file"
    assert acl_token({"CONSUL_HTTP_TOKEN": "from-env"}) == "from-env"


def test_token_never_in_config_repr():
    _, config = parse("consul://", env={"CONSUL_HTTP_TOKEN": "s3cr3t-token"})
    assert config.token == "s3cr3t-token"
    assert "s3cr3t-token" not in repr(config)


def test_docker_host_honoured():
    _, config = parse("consul://", env={"DOCKER_HOST": "tcp://127.0.0.1:2375"})
    assert config.docker_host == "tcp://127.0.0.1:2375"


def test_resync_reports_unreachable_consul(tmp_path):
    result = run_cli("resync", "consul://127.0.0.1:1")
    assert result.returncode == 1
    assert "unreachable" in result.stderr
