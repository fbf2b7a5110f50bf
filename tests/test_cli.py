"""Command-line parsing and validation, as the original does it; exit code 2 with usage."""

from __future__ import annotations

import re

import pytest

from registrator.app.cli import parse_config
from registrator.core.config import RETRY_WAIT, ConsulEndpoint, acl_token, parse_registry_uri
from registrator.core.flags import BY_NAME, FLAGS, UsageError
from registrator.core.flags import DAEMON_ONLY as DAEMON_ONLY_FLAGS
from tests.conftest import REPO, run_cli


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
        (["-retry-interval", "0", "consul://"], "-retry-interval '0': out of range"),
        (
            ["-deregister", "never", "consul://"],
            "-deregister 'never': expected always or on-success",
        ),
        (["-internal=maybe", "consul://"], "invalid boolean value 'maybe'"),
        (["-bogus", "consul://"], "unrecognized arguments: -bogus"),
        (["etcd://127.0.0.1:2379"], "unrecognized registry backend"),
        (["consul://127.0.0.1:abc"], "is not a number"),
        (["-ecs-agent-uri", "https://127.0.0.1:51678", "consul://"], "-ecs-agent-uri"),
        (["-ecs-agent-uri", "127.0.0.1:51678", "consul://"], "expected http://HOST"),
    ],
)
def test_bad_usage_is_a_clear_error(argv, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("'", "'")):
        parse(*argv)


def test_bad_usage_exits_2_with_the_cause_and_one_hint_line():
    result = run_cli("-deregister", "sometimes", "consul://")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "registrator: -deregister 'sometimes': expected always or on-success",
        "run 'registrator -h' for usage",
    ]
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


# --- issue 20: the CLI's front door --------------------------------------------------------

VALUE_FLAGS = (
    "ip", "deregister", "resync", "retry-attempts", "retry-interval", "ttl", "ttl-refresh",
    "agent-poll", "consul-timeout", "workers", "agent-writes", "drain-grace", "flap-hold",
    "metrics-addr",
    "healthz-threshold", "ecs-agent-uri", "log-format", "log-level",
)  # fmt: skip
DAEMON_ONLY = (
    "-deregister", "-resync", "-retry-attempts", "-retry-interval", "-ttl", "-ttl-refresh",
    "-dry-run", "-deregister-on-shutdown", "-agent-poll", "-drain", "-drain-grace",
    "-metrics-addr", "-healthz-threshold",
)  # fmt: skip


def test_help_shows_the_four_forms_one_uri_each_flag_once_with_defaults():
    result = run_cli("-h")
    assert (result.returncode, result.stderr) == (0, "")
    text = result.stdout
    assert text.splitlines()[:4] == [
        "usage: registrator [flags] URI",
        "       registrator plan [flags] URI",
        "       registrator resync [flags] URI",
        "       registrator explain [flags] URI [CONTAINER...]",
    ]
    assert "[uri ...]" not in text and "--" not in text.replace("---", "")
    for flag in FLAGS:
        assert text.count(f"  -{flag.name}\n") + text.count(f"  -{flag.name} ") == 1, flag.name
    assert "  -ip IP\n" in text and "(default: 2000)" in text and "(default: 4)" in text
    assert "-retry-attempts N" in text and "(default: wait for the agent" in text
    assert "consul-tls://HOST[:PORT] (default port 8501)" in text
    assert (
        "plan, resync and explain take the same flags but these, which apply to the daemon only: "
        "-deregister, -resync," in text.replace("\n", " ")
    )
    assert run_cli("help").stdout == text


@pytest.mark.parametrize("command", ["plan", "resync", "explain"])
def test_command_help_describes_the_command_and_lists_only_its_flags(command):
    result = run_cli(command, "-h")
    assert (result.returncode, result.stderr) == (0, "")
    arguments = " [CONTAINER...]" if command == "explain" else ""
    assert result.stdout.startswith(f"usage: registrator {command} [flags] URI{arguments}\n")
    if command == "plan":
        assert "print the\ndifference, and write nothing" in result.stdout
        assert "  -json\n" in result.stdout
    elif command == "explain":
        assert "Say why each container is registered or not" in result.stdout
        assert "  -json\n" in result.stdout and "  -daemon HOST:PORT\n" in result.stdout
    else:
        assert "Make the agent match Docker once" in result.stdout
        assert "-json" not in result.stdout
    for name in DAEMON_ONLY:
        assert f"  {name}\n" not in result.stdout and f"  {name} " not in result.stdout
    assert "  -ip IP\n" in result.stdout and "  -adopt\n" in result.stdout
    assert run_cli("help", command).stdout == result.stdout


def test_the_daemon_only_flags_are_these():
    assert DAEMON_ONLY_FLAGS == DAEMON_ONLY


@pytest.mark.parametrize("command", ["plan", "resync", "explain"])
@pytest.mark.parametrize("flag", DAEMON_ONLY)
def test_daemon_only_flags_are_refused_by_plan_and_resync(command, flag):
    value = [] if isinstance(BY_NAME[flag[1:]].default, bool) else ["1"]
    with pytest.raises(UsageError) as caught:
        parse(command, flag, *value, "consul://")
    assert str(caught.value) == (
        f"{flag} applies to the daemon only, not to 'registrator {command}' "
        "('registrator plan' shows what resync would do, writing nothing)"
    )


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("ip", "eth0", "not an IP address (expected IPv4 or IPv6, e.g. 10.0.0.5)"),
        ("ip", "10.0.1.300", "not an IP address"),
        ("ip", "consul://", "not an IP address"),
        ("deregister", "sometimes", "expected always or on-success"),
        ("resync", "abc", "not a number (expected 0 for never, or seconds, e.g. 30)"),
        ("resync", "-1", "out of range"),
        ("retry-attempts", "x", "not a number (expected -1 for forever, or 0 or more retries)"),
        ("retry-attempts", "-2", "out of range"),
        ("retry-interval", "0", "out of range (expected milliseconds, at least 1)"),
        ("ttl", "-5", "out of range (expected 0 or more seconds)"),
        ("ttl-refresh", "1.5", "not a number"),
        ("agent-poll", "0", "out of range (expected seconds greater than 0, e.g. 2.5)"),
        ("consul-timeout", "nan", "out of range"),
        ("workers", "0", "out of range (expected 1 or more)"),
        ("agent-writes", "many", "not a number (expected 1 or more)"),
        ("drain-grace", "inf", "out of range"),
        ("flap-hold", "-1", "out of range (expected 0 for off, or seconds, e.g. 10)"),
        ("metrics-addr", "nonsense", "expected HOST:PORT or :PORT, e.g. 127.0.0.1:9102"),
        ("metrics-addr", "127.0.0.1:99999", "expected HOST:PORT"),
        ("healthz-threshold", "-1", "out of range"),
        ("ecs-agent-uri", "ftp://x", "expected http://HOST[:PORT], e.g. http://127.0.0.1:51678"),
        ("log-format", "xml", "expected text or json"),
        ("log-level", "loud", "expected DEBUG, INFO, WARNING or ERROR"),
    ],
)
def test_every_flag_value_is_checked(flag, value, expected):
    assert flag in VALUE_FLAGS
    with pytest.raises(UsageError) as caught:
        parse(f"-{flag}", value, "consul://")
    assert str(caught.value).startswith(f"-{flag} {value!r}: {expected}")
    with pytest.raises(UsageError) as caught:  # the -flag=value spelling too
        parse(f"-{flag}={value}", "consul://")
    assert str(caught.value).startswith(f"-{flag} {value!r}: ")


def test_every_value_flag_has_a_bad_value_case():
    cases = test_every_flag_value_is_checked.pytestmark[0].args[1]  # type: ignore[attr-defined]
    assert {case[0] for case in cases} == set(VALUE_FLAGS)
    any_text = ("_text", "_tags")  # no value of these is wrong
    assert set(VALUE_FLAGS) == {f.name for f in FLAGS if f.check.__name__ not in any_text}


def test_good_values_pass_and_ipv6_is_an_address():
    defaults = parse("-ip=", "-metrics-addr=", "consul://")[1]  # empty: the defaults
    assert (defaults.ip, defaults.metrics_addr) == ("", "")
    _, config = parse(
        "-ip", "fd00::5", "-log-level", "debug", "-metrics-addr", ":9102", "consul://"
    )
    assert (config.ip, config.log_level, config.metrics_addr) == ("fd00::5", "DEBUG", ":9102")


@pytest.mark.parametrize("token", ["-expl", "-j", "-v", "--expl", "-dry", "-retry"])
def test_abbreviated_flags_are_refused(token):
    with pytest.raises(UsageError, match=f"unrecognized arguments: {token}"):
        parse("plan" if token == "-j" else "run", token, "consul://")


def test_an_abbreviation_names_the_flag_it_may_mean():
    with pytest.raises(UsageError, match=r"did you mean -explicit\? flags are never abbreviated"):
        parse("-expl", "consul://")


def test_a_flag_without_its_value():
    with pytest.raises(UsageError, match=r"^-ip needs a value \(IP\)$"):
        parse("-ip")


def test_a_uri_without_its_slashes_gets_the_fix():
    with pytest.raises(UsageError) as caught:
        parse("consul:127.0.0.1:8500")
    assert str(caught.value) == (
        "registry URI 'consul:127.0.0.1:8500': missing '//'; did you mean consul://127.0.0.1:8500?"
    )


def test_a_uri_without_its_scheme_gets_the_fix():
    with pytest.raises(UsageError, match=r"did you mean consul://127\.0\.0\.1:8500\?$"):
        parse("127.0.0.1:8500")


@pytest.mark.parametrize(
    ("uri", "env", "port"),
    [
        ("consul-tls://", {}, 8501),
        ("consul-tls://", {"CONSUL_HTTP_ADDR": "10.0.0.2"}, 8501),
        ("consul-tls://", {"CONSUL_HTTP_ADDR": "https://10.0.0.2"}, 8501),
        ("consul://", {"CONSUL_HTTP_ADDR": "10.0.0.2"}, 8500),
    ],
)
def test_consul_tls_without_a_port_means_8501(uri, env, port):
    assert parse_registry_uri(uri, env).port == port


@pytest.mark.parametrize(
    ("argv", "first_line", "hint"),
    [
        (["-ip", "eth0", "consul://"], "registrator: -ip 'eth0': not an IP address", "registrator"),
        (["plan", "-workers", "x", "consul://"], "registrator plan: -workers 'x'", "registrator plan"),
        (["plan", "-dry-run", "consul://"], "registrator plan: -dry-run applies to the daemon only", "registrator plan"),
        (["resync", "-dry-run", "consul://"], "registrator resync: -dry-run applies to the daemon only", "registrator resync"),
        (["resync", "-expl", "consul://"], "registrator resync: unrecognized arguments: -expl", "registrator resync"),
        (["help", "nothing"], "registrator: no help for 'nothing'", "registrator"),
    ],
)  # fmt: skip
def test_usage_errors_exit_2_for_every_command_with_one_hint_line(argv, first_line, hint):
    result = run_cli(*argv)
    assert (result.returncode, result.stdout) == (2, "")
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith(first_line), result.stderr
    assert lines[1] == f"run '{hint} -h' for usage"


def test_double_dash_spellings_and_negated_switches_still_work():
    _, config = parse("--ip", "10.0.0.1", "--cleanup", "--no-cleanup", "--workers=2", "consul://")
    assert (config.ip, config.cleanup, config.workers) == ("10.0.0.1", False, 2)
    assert parse("plan", "--json", "consul://")[1].plan_json


def test_the_ansible_roles_resync_leaves_out_the_daemon_only_flags():
    text = (REPO / "ansible/roles/registrator/vars/main.yml").read_text()
    switches = re.search(r"registrator_daemon_only_switches: \[(.*)\]", text)
    valued = re.search(r"registrator_daemon_only_valued: >-\n(.*?)\n\S", text, re.DOTALL)
    assert switches and valued
    names = switches[1].split(", ") + re.findall(r"'([a-z-]+)'", valued[1])
    assert sorted(f"-{name}" for name in names) == sorted(DAEMON_ONLY_FLAGS)
    assert all(isinstance(BY_NAME[name].default, bool) for name in switches[1].split(", "))


def test_retry_attempts_default_is_waiting():
    assert parse("consul://")[1].retry_attempts == RETRY_WAIT
    assert parse("-retry-attempts", "0", "consul://")[1].retry_attempts == 0


def test_explain_takes_containers_after_the_uri():
    command, config = parse("explain", "-json", "-internal", "consul://", "web.0", "4a12cd")
    assert (command, config.explain_containers) == ("explain", ("web.0", "4a12cd"))
    assert config.explain_json and config.internal and not config.plan_json
    assert parse("explain", "-daemon", ":9102", "consul://")[1].explain_daemon == ":9102"
    with pytest.raises(UsageError, match="-daemon '9102': expected HOST:PORT"):
        parse("explain", "-daemon", "9102", "consul://")
    with pytest.raises(UsageError, match="unrecognized arguments: -daemon"):
        parse("plan", "-daemon", ":9102", "consul://")
