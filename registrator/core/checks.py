"""A service's Consul checks, from its ``SERVICE_CHECK_*`` keys (pure).

The unindexed keys (``SERVICE_CHECK_HTTP``, ...) make one check, as the original does: the
first kind present of http, https, tcp, ttl, grpc, script, cmd wins. Indexed keys
(``SERVICE_CHECK_<n>_<KEY>``) make one more check per index, with the same keys. Every check
takes Consul's options (headers, body, name, notes, TLS server name, success and failure
thresholds). With health sync a container that has a Docker HEALTHCHECK also gets a TTL
check whose status is Docker's health.

Every value is checked as Consul would take it, so that one bad key costs the check (or the
key), never the registration.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

from registrator.core.consul_limits import ReportProblem, valid_duration
from registrator.core.container import ContainerView, split_tags
from registrator.core.model import HEALTH_TTL, Check, health_check_id
from registrator.core.networks import join_host_port

DEFAULT_CHECK_INTERVAL = "10s"
SCRIPT_CHECK_KEYS = ("check_script", "check_cmd")  # in this order: the first present wins
CHECK_STATUSES = frozenset({"passing", "warning", "critical"})
TRUE_WORDS = frozenset({"1", "true", "yes", "on", "t", "y"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "f", "n"})
INDEXED_KEY_RE = re.compile(r"^check_(\d+)_(.+)$")
HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$")
HEALTH_STATUS = {"healthy": "passing"}  # anything else (starting, unhealthy) is critical
# The agent keeps at most this many bytes of a TTL check's output; a longer one it cuts and
# marks, and would then differ from what registrator compares it with at every comparison.
HEALTH_OUTPUT_MAX = 4096


class CheckTarget(NamedTuple):
    """What a check probes: the service's address and port; for ``SERVICE_CHECK_CMD`` also
    the container's short ID and exposed port, which the original's helper takes."""

    address: str
    port: int
    container_short_id: str
    exposed_port: str
    service_id: str = ""  # names the checks when there are several


def build_check(
    attrs: Mapping[str, str], target: CheckTarget, allow_scripts: bool, report: ReportProblem
) -> Check | None:
    """The check the keys in ``attrs`` ask for, or None; a bad duration, status or refused
    script check is reported."""
    check = _probe(attrs, target, allow_scripts, report)
    check = None if check is None else _with_timing(check, attrs, report)
    return None if check is None else _with_options(check, attrs, report)


def build_checks(
    attrs: Mapping[str, str],
    target: CheckTarget,
    allow_scripts: bool,
    health: Check | None,
    report: ReportProblem,
) -> tuple[Check, ...]:
    """Every check the keys define (the unindexed one first, then by index), then the
    Docker health check. With more than one, each gets an explicit ID (``service:<id>`` for
    the unindexed one, ``service:<id>:<n>`` for index n), so that adding or removing one
    never renames another."""
    groups: dict[int, dict[str, str]] = {}
    for key, value in attrs.items():
        indexed = INDEXED_KEY_RE.fullmatch(key)
        if indexed:
            groups.setdefault(int(indexed.group(1)), {})["check_" + indexed.group(2)] = value
        elif key.startswith("check_"):
            groups.setdefault(0, {})[key] = value
    checks: list[Check] = []
    for index in sorted(groups):

        def named(key: str, message: str, index: int = index) -> None:
            report(key.replace("SERVICE_CHECK_", f"SERVICE_CHECK_{index}_", 1), message)

        check = build_check(groups[index], target, allow_scripts, named if index else report)
        if check is not None:
            suffix = f":{index}" if index else ""
            checks.append(check._replace(check_id=f"service:{target.service_id}{suffix}"))
    if len(checks) == 1 and health is None:
        return (checks[0]._replace(check_id=""),)  # the agent's own ID: service:<id>
    return (*checks, *([health] if health is not None else []))


def _probe(
    attrs: Mapping[str, str], target: CheckTarget, allow_scripts: bool, report: ReportProblem
) -> Check | None:
    """The first present of http, https, tcp, ttl, grpc, script, cmd wins. The probes
    address an IPv6 service in brackets (``http://[fd00::5]:8080/health``); a script's
    ``$SERVICE_IP`` is the bare address."""
    timeout = attrs.get("check_timeout", "")
    where = join_host_port(target.address, target.port)
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


def _with_options(check: Check, attrs: Mapping[str, str], report: ReportProblem) -> Check:
    """Consul's other check options, each checked on its own."""
    counts = []
    for key in ("check_success_before_passing", "check_failures_before_critical"):
        value = attrs.get(key, "")
        if value and not value.isdigit():
            report(f"SERVICE_{key.upper()}", f"{value!r} is not a whole number >= 0; ignored")
            value = ""
        counts.append(int(value) if value else 0)
    texts = []
    for key in ("check_name", "check_notes", "check_tls_server_name"):
        value = attrs.get(key, "")
        if "\n" in value or "\r" in value:
            report(f"SERVICE_{key.upper()}", "has a line break; ignored")
            value = ""
        texts.append(value)
    http = bool(check.http)
    if not http:
        for key in sorted(k for k in attrs if k.startswith("check_header_") or k == "check_body"):
            report(
                f"SERVICE_{key.upper()}",
                f"applies to HTTP(S) checks only, not {check.kind}; ignored",
            )
    return check._replace(
        success_before_passing=counts[0],
        failures_before_critical=counts[1],
        name=texts[0],
        notes=texts[1],
        tls_server_name=texts[2],
        header=_headers(attrs, report) if http else (),
        body=attrs.get("check_body", "") if http else "",
    )


def _headers(
    attrs: Mapping[str, str], report: ReportProblem
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``check_header_<name>`` keys: an underscore in the name stands for a dash (env var
    names cannot hold one), the name is sent in Go's canonical form (``X-Probe``), several
    values are separated by commas (``\\,`` keeps one)."""
    headers: dict[str, tuple[str, ...]] = {}
    for key, value in attrs.items():
        if not key.startswith("check_header_"):
            continue
        raw_name = key[len("check_header_") :].replace("_", "-")
        if not HEADER_NAME_RE.fullmatch(raw_name):
            report(f"SERVICE_{key.upper()}", f"{raw_name!r} is not a header name; ignored")
        elif "\n" in value or "\r" in value:
            report(f"SERVICE_{key.upper()}", "a header value with a line break; ignored")
        else:
            name = "-".join(part.capitalize() for part in raw_name.split("-"))
            headers[name] = tuple(split_tags(value))
    return tuple(sorted(headers.items()))


def health_sync_applies(attrs: Mapping[str, str], health_sync: bool, report: ReportProblem) -> bool:
    """``SERVICE_CHECK_DOCKER_HEALTH=true|false`` on the container, else ``-health-sync``."""
    setting = attrs.get("check_docker_health", "").strip().lower()
    if not setting:
        return health_sync
    if setting not in TRUE_WORDS | FALSE_WORDS:
        fallback = "true" if health_sync else "false"
        report("SERVICE_CHECK_DOCKER_HEALTH", f"{setting!r} is not true or false; {fallback}")
        return health_sync
    return setting in TRUE_WORDS


def docker_health_check(
    container: ContainerView, service_id: str, health_sync: bool
) -> Check | None:
    """The TTL check that carries the container's Docker health, when it has a HEALTHCHECK
    and health sync applies: healthy is passing, anything else (starting, unhealthy)
    critical; its output names Docker's state and holds Docker's last probe output, so that
    it changes whenever either does."""
    status = container.health_status
    if not health_sync or not status:
        return None
    return Check(
        check_id=health_check_id(service_id),
        name="Docker health",
        notes="the container's Docker HEALTHCHECK, kept by registrator",
        ttl=HEALTH_TTL,
        status=HEALTH_STATUS.get(status, "critical"),
        output=health_output(status, container.health_output),
    )


def health_output(status: str, probe_output: str) -> str:
    """``Docker health is unhealthy; last probe output: <output>`` (without a probe yet, only
    the state), cut to what the agent keeps whole."""
    text = f"Docker health is {status or 'unknown'}"
    if probe_output:
        text += f"; last probe output: {probe_output}"
    raw = text.encode("utf-8")
    if len(raw) <= HEALTH_OUTPUT_MAX:
        return text
    return raw[:HEALTH_OUTPUT_MAX].decode("utf-8", "ignore")
