"""Checks, weights and tag override from SERVICE_* keys: several checks, every check option,
Docker health as a TTL check; each bad value dropped with a problem naming the key."""

from __future__ import annotations

from typing import Any

from registrator.core.checks import HEALTH_OUTPUT_MAX
from registrator.core.derive import DeriveOptions, derive_services
from registrator.core.lifecycle import withheld_reason
from registrator.core.model import HEALTH_TTL, OWNER_META_KEY, Check, health_check_id
from tests.inspect_data import inspect

OPTS = DeriveOptions(hostname="host1", host_ip="10.0.0.7")
SID = "host1:web.0:80"


def derive(
    env: dict[str, str], options: DeriveOptions = OPTS, health: dict[str, Any] | None = None
):
    container = inspect(name="web.0", published={"80/tcp": "32768"}, env=env)
    if health is not None:
        container["State"]["Health"] = health
    derivation = derive_services(container, options)
    (service,) = derivation.services
    return service, [str(p) for p in derivation.problems]


def test_indexed_keys_make_one_more_check_each_with_explicit_ids():
    service, problems = derive({
        "SERVICE_CHECK_HTTP": "/health",
        "SERVICE_CHECK_1_TCP": "true", "SERVICE_CHECK_1_INTERVAL": "5s",
        "SERVICE_CHECK_2_HTTPS": "/tls", "SERVICE_CHECK_2_TLS_SKIP_VERIFY": "1",
    })  # fmt: skip
    assert problems == []
    assert [(c.check_id, c.http or c.tcp, c.interval) for c in service.checks] == [
        (f"service:{SID}", "http://10.0.0.7:32768/health", "10s"),
        (f"service:{SID}:1", "10.0.0.7:32768", "5s"),
        (f"service:{SID}:2", "https://10.0.0.7:32768/tls", "10s"),
    ]
    assert service.checks[2].tls_skip_verify
    # The keys stay in Meta (as the original's do): a change in any check re-registers.
    assert service.meta_dict["check_1_tcp"] == "true"


def test_a_single_check_keeps_the_agents_own_id():
    service, _ = derive({"SERVICE_CHECK_TCP": "true"})
    assert [c.check_id for c in service.checks] == [""]
    service, _ = derive({"SERVICE_80_CHECK_1_TTL": "30s"})  # per port, indexed
    assert [(c.check_id, c.ttl) for c in service.checks] == [("", "30s")]


def test_every_check_option():
    service, problems = derive({
        "SERVICE_CHECK_HTTP": "/probe", "SERVICE_CHECK_HTTP_METHOD": "POST",
        "SERVICE_CHECK_HEADER_X_PROBE": "yes", "SERVICE_CHECK_HEADER_ACCEPT": r"a/b,c\,d",
        "SERVICE_CHECK_BODY": "ping", "SERVICE_CHECK_NAME": "probe", "SERVICE_CHECK_NOTES": "n",
        "SERVICE_CHECK_TLS_SERVER_NAME": "web.example.com",
        "SERVICE_CHECK_SUCCESS_BEFORE_PASSING": "3", "SERVICE_CHECK_FAILURES_BEFORE_CRITICAL": "2",
    })  # fmt: skip
    assert problems == []
    assert service.check is not None
    assert service.check.to_consul() == {
        "Name": "probe", "Notes": "n", "HTTP": "http://10.0.0.7:32768/probe", "Method": "POST",
        "Header": {"Accept": ["a/b", "c,d"], "X-Probe": ["yes"]}, "Body": "ping",
        "TLSServerName": "web.example.com", "Interval": "10s",
        "SuccessBeforePassing": 3, "FailuresBeforeCritical": 2,
    }  # fmt: skip


def test_bad_check_options_are_dropped_with_a_problem_and_the_rest_kept():
    service, problems = derive({
        "SERVICE_CHECK_HTTP": "/", "SERVICE_CHECK_SUCCESS_BEFORE_PASSING": "-1",
        "SERVICE_CHECK_2_TCP": "1", "SERVICE_CHECK_2_FAILURES_BEFORE_CRITICAL": "many",
        "SERVICE_CHECK_HEADER_X_BAD": "a\nb", "SERVICE_CHECK_HEADER_OK": "fine",
    })  # fmt: skip
    assert sorted(problems) == sorted(
        [
            "container web.0 (0123456789ab): SERVICE_CHECK_HEADER_X_BAD: a header value with a "
            "line break; ignored",
            "container web.0 (0123456789ab): SERVICE_CHECK_SUCCESS_BEFORE_PASSING: '-1' is not a "
            "whole number >= 0; ignored",
            "container web.0 (0123456789ab): SERVICE_CHECK_2_FAILURES_BEFORE_CRITICAL: 'many' is "
            "not a whole number >= 0; ignored",
        ]
    )
    first, second = service.checks
    assert (first.header, first.success_before_passing) == ((("Ok", ("fine",)),), 0)
    assert (second.tcp, second.failures_before_critical) == ("10.0.0.7:32768", 0)


def test_a_header_or_body_on_a_check_that_sends_none_is_refused_with_a_problem():
    service, problems = derive({
        "SERVICE_CHECK_TCP": "1", "SERVICE_CHECK_HEADER_X_PROBE": "yes",
        "SERVICE_CHECK_1_TTL": "30s", "SERVICE_CHECK_1_BODY": "ping",
    })  # fmt: skip
    assert problems == [
        "container web.0 (0123456789ab): SERVICE_CHECK_HEADER_X_PROBE: applies to HTTP(S) "
        "checks only, not tcp; ignored",
        "container web.0 (0123456789ab): SERVICE_CHECK_1_BODY: applies to HTTP(S) checks only, "
        "not ttl; ignored",
    ]
    assert [(c.tcp, c.ttl, c.header, c.body) for c in service.checks] == [
        ("10.0.0.7:32768", "", (), ""),
        ("", "30s", (), ""),
    ]


def test_weights_and_tag_override_are_fields_not_meta():
    service, problems = derive({
        "SERVICE_WEIGHT_PASSING": "10", "SERVICE_WEIGHT_WARNING": "2",
        "SERVICE_ENABLE_TAG_OVERRIDE": "true",
    })  # fmt: skip
    assert (service.weights, service.enable_tag_override, problems) == ((10, 2), True, [])
    assert not {"weight_passing", "weight_warning", "enable_tag_override"} & set(service.meta_dict)
    service, problems = derive({"SERVICE_WEIGHT_PASSING": "0", "SERVICE_WEIGHT_WARNING": "x"})
    assert service.weights == (1, 1) and len(problems) == 2
    assert "SERVICE_WEIGHT_PASSING: '0' is not a whole number >= 1; using 1" in problems[0]


HEALTHY = {"Status": "healthy", "Log": [{"ExitCode": 0, "Output": "ok\n"}]}


def test_health_sync_adds_a_ttl_check_with_dockers_status():
    synced = OPTS._replace(health_sync=True)
    service, _ = derive({"SERVICE_CHECK_TCP": "1"}, synced, HEALTHY)
    assert service.checks[-1] == Check(
        check_id=health_check_id(SID), name="Docker health",
        notes="the container's Docker HEALTHCHECK, kept by registrator", ttl=HEALTH_TTL,
        status="passing", output="Docker health is healthy; last probe output: ok",
    )  # fmt: skip
    assert service.checks[0].check_id == f"service:{SID}"
    assert "check_docker_health" not in service.meta_dict  # the check itself is compared
    for docker, consul in (("unhealthy", "critical"), ("starting", "critical")):
        service, _ = derive({}, synced, {"Status": docker})
        assert (service.health_status, service.checks[0].output) == (
            consul,
            f"Docker health is {docker}",
        )
    # No HEALTHCHECK, the flag off, or the container's key off: no health check.
    assert derive({}, synced)[0].checks == ()
    assert derive({}, OPTS, HEALTHY)[0].checks == ()
    assert derive({"SERVICE_CHECK_DOCKER_HEALTH": "false"}, synced, HEALTHY)[0].checks == ()
    assert (
        derive({"SERVICE_CHECK_DOCKER_HEALTH": "true"}, OPTS, HEALTHY)[0].health_status == "passing"
    )


def test_the_health_output_names_the_state_and_holds_the_last_probe_output():
    synced = OPTS._replace(health_sync=True)
    unhealthy = {"Status": "unhealthy", "Log": [{"ExitCode": 1, "Output": "refused\n"}]}
    assert derive({}, synced, unhealthy)[0].checks[0].output == (
        "Docker health is unhealthy; last probe output: refused"
    )
    # The agent keeps 4096 bytes whole: longer is cut there, never inside a character.
    long = {"Status": "healthy", "Log": [{"ExitCode": 0, "Output": "é" * 5000}]}
    output = derive({}, synced, long)[0].checks[0].output
    assert len(output.encode()) <= HEALTH_OUTPUT_MAX
    assert len(output.encode()) > HEALTH_OUTPUT_MAX - 2
    assert output.startswith("Docker health is healthy; last probe output: éé")


def test_health_sync_leaves_no_trace_on_a_container_without_a_healthcheck():
    """The flag or the container's key, on or off, changes nothing of a service whose
    container has no HEALTHCHECK (turning it on must not rewrite every service on a host),
    and the key never reaches Meta."""
    plain = derive({}, OPTS)[0]
    for env in ({}, {"SERVICE_CHECK_DOCKER_HEALTH": "true"}, {"SERVICE_CHECK_DOCKER_HEALTH": "0"}):
        for flag in (False, True):
            service, problems = derive(env, OPTS._replace(health_sync=flag))
            assert (service, service.checks, problems) == (plain, (), [])
            assert set(service.meta_dict) == {OWNER_META_KEY}
    synced = derive({"SERVICE_CHECK_DOCKER_HEALTH": "yes"}, OPTS, HEALTHY)[0]
    assert set(synced.meta_dict) == {OWNER_META_KEY} and synced.health is not None


def test_health_sync_and_require_healthy():
    def reason(env: dict[str, str], **flags: Any) -> str:
        container = inspect(name="web.0", published={"80/tcp": "32768"}, env=env)
        container["State"]["Health"] = {"Status": "starting"}
        return str(withheld_reason(container, OPTS._replace(**flags)) or "")

    assert reason({}, require_healthy=True) == "Docker health is starting"
    assert reason({}, require_healthy=True, health_sync=True) == ""  # health sync wins
    # The container's own key beats a flag.
    assert reason({"SERVICE_REQUIRE_HEALTHY": "true"}, health_sync=True) != ""
    assert reason({"SERVICE_CHECK_DOCKER_HEALTH": "true"}, require_healthy=True) == ""
