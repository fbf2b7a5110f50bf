"""Check building on its own: the probe the keys ask for, and what Consul would refuse."""

from __future__ import annotations

from registrator.core.checks import CheckTarget, build_check
from registrator.core.model import Check

TARGET = CheckTarget(
    address="10.0.0.7", port=8080, container_short_id="0123456789ab", exposed_port="80"
)


def built(attrs: dict[str, str], allow_scripts: bool = False) -> tuple[Check | None, list[str]]:
    reported: list[str] = []
    check = build_check(attrs, TARGET, allow_scripts, lambda key, _msg: reported.append(key))
    return check, reported


def test_no_check_keys_no_check() -> None:
    assert built({"region": "eu"}) == (None, [])


def test_http_check_at_the_target() -> None:
    check, reported = built({"check_http": "/health", "check_interval": "5s"})
    assert check == Check(http="http://10.0.0.7:8080/health", interval="5s")
    assert reported == []


def test_first_present_probe_wins() -> None:
    check, _ = built({"check_tcp": "true", "check_ttl": "30s"})
    assert check is not None and check.tcp == "10.0.0.7:8080" and not check.ttl


def test_script_checks_refused_unless_allowed() -> None:
    assert built({"check_script": "true"}) == (None, ["SERVICE_CHECK_SCRIPT"])
    check, _ = built({"check_cmd": "/bin/health"}, allow_scripts=True)
    assert check is not None
    assert check.args == ("check-cmd", "0123456789ab", "80", "/bin/health")
    check, _ = built({"check_script": "probe $SERVICE_IP:$SERVICE_PORT"}, allow_scripts=True)
    assert check is not None and check.args == ("sh", "-c", "probe 10.0.0.7:8080")


def test_bad_durations_cost_only_themselves_but_a_bad_ttl_costs_the_check() -> None:
    check, reported = built({"check_tcp": "1", "check_interval": "soon", "check_timeout": "-1s"})
    assert check == Check(tcp="10.0.0.7:8080", interval="10s")
    assert reported == ["SERVICE_CHECK_INTERVAL", "SERVICE_CHECK_TIMEOUT"]
    assert built({"check_ttl": "0s"}) == (None, ["SERVICE_CHECK_TTL"])
