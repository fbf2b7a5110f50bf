"""A service's Consul check, from the original's ``SERVICE_CHECK_*`` keys (pure).

Every duration is checked as Consul would parse it, so that one bad key costs the check (or
the key), never the registration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from registrator.consul_limits import ReportProblem, valid_duration
from registrator.model import Check

DEFAULT_CHECK_INTERVAL = "10s"
SCRIPT_CHECK_KEYS = ("check_script", "check_cmd")  # in this order: the first present wins
CHECK_STATUSES = frozenset({"passing", "warning", "critical"})


class CheckTarget(NamedTuple):
    """What a check probes: the service's address and port; for ``SERVICE_CHECK_CMD`` also
    the container's short ID and exposed port, which the original's helper takes."""

    address: str
    port: int
    container_short_id: str
    exposed_port: str


def build_check(
    attrs: Mapping[str, str], target: CheckTarget, allow_scripts: bool, report: ReportProblem
) -> Check | None:
    """The check the keys in ``attrs`` ask for, or None; a bad duration, status or refused
    script check is reported."""
    check = _probe(attrs, target, allow_scripts, report)
    return None if check is None else _with_timing(check, attrs, report)


def _probe(
    attrs: Mapping[str, str], target: CheckTarget, allow_scripts: bool, report: ReportProblem
) -> Check | None:
    """The first present of http, https, tcp, ttl, grpc, script, cmd wins."""
    timeout = attrs.get("check_timeout", "")
    where = f"{target.address}:{target.port}"
    if attrs.get("check_http"):
        return Check(
            http=f"http://{where}{attrs['check_http']}",
            method=attrs.get("check_http_method", ""),
            timeout=timeout,
        )
    if attrs.get("check_https"):
        return Check(
            http=f"https://{where}{attrs['check_https']}",
            method=attrs.get("check_https_method", ""),
            timeout=timeout,
            tls_skip_verify=bool(attrs.get("check_tls_skip_verify")),
        )
    if attrs.get("check_tcp"):
        return Check(tcp=where, timeout=timeout)
    if attrs.get("check_ttl"):
        return Check(ttl=attrs["check_ttl"])
    if attrs.get("check_grpc"):
        use_tls = bool(attrs.get("check_grpc_use_tls"))
        return Check(
            grpc=where,
            grpc_use_tls=use_tls,
            tls_skip_verify=use_tls and bool(attrs.get("check_tls_skip_verify")),
            timeout=timeout,
        )
    for key in SCRIPT_CHECK_KEYS:
        if not attrs.get(key):
            continue
        if not allow_scripts:
            report(
                f"SERVICE_{key.upper()}",
                "script checks are refused (they run commands on the host); no check registered",
            )
            return None
        if key == "check_cmd":  # the original's helper on the agent's host
            return Check(
                args=("check-cmd", target.container_short_id, target.exposed_port, attrs[key])
            )
        script = attrs[key].replace("$SERVICE_IP", target.address)
        return Check(args=("sh", "-c", script.replace("$SERVICE_PORT", str(target.port))))
    return None


def _with_timing(check: Check, attrs: Mapping[str, str], report: ReportProblem) -> Check | None:
    """The check with its interval, timeout, initial status and deregister-after checked as
    Consul would; a bad TTL costs the check, any other bad value only itself."""
    if check.ttl and not valid_duration(check.ttl):
        report("SERVICE_CHECK_TTL", f"{check.ttl!r} is not a duration > 0; no check registered")
        return None
    if not check.ttl:
        interval = attrs.get("check_interval") or DEFAULT_CHECK_INTERVAL
        if not valid_duration(interval):
            report(
                "SERVICE_CHECK_INTERVAL",
                f"{interval!r} is not a duration > 0 (e.g. 10s); using {DEFAULT_CHECK_INTERVAL}",
            )
            interval = DEFAULT_CHECK_INTERVAL
        check = check._replace(interval=interval)
    if check.timeout and not valid_duration(check.timeout):
        report("SERVICE_CHECK_TIMEOUT", f"{check.timeout!r} is not a duration > 0; ignored")
        check = check._replace(timeout="")
    status = attrs.get("check_initial_status", "")
    if status and status not in CHECK_STATUSES:
        report(
            "SERVICE_CHECK_INITIAL_STATUS",
            f"{status!r} is not passing, warning or critical; ignored",
        )
        status = ""
    deregister_after = attrs.get("check_deregister_after", "")
    if deregister_after and not valid_duration(deregister_after):
        report(
            "SERVICE_CHECK_DEREGISTER_AFTER", f"{deregister_after!r} is not a duration > 0; ignored"
        )
        deregister_after = ""
    return check._replace(status=status, deregister_critical_service_after=deregister_after)
