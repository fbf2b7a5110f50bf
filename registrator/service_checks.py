"""A service's Consul checks from its ``SERVICE_CHECK_*`` keys: pure rules.

The unindexed keys (``SERVICE_CHECK_HTTP``, ...) make one check, as the original does: the
first kind present of http, https, tcp, ttl, grpc, script, cmd wins. Indexed keys
(``SERVICE_CHECK_<n>_<KEY>``) make one more check per index, with the same keys. Every check
takes Consul's options (headers, body, name, notes, TLS server name, success and failure
thresholds). With ``-health-sync`` (or ``SERVICE_CHECK_DOCKER_HEALTH=true``) a container that
has a Docker HEALTHCHECK also gets a TTL check whose status is Docker's health.

A bad value drops that option (or that check) with a problem naming the key; the rest of
the service and its checks are still registered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from registrator.model import HEALTH_TTL, Check, health_check_id

DEFAULT_CHECK_INTERVAL = "10s"
SCRIPT_CHECK_KEYS = ("check_script", "check_cmd")
CHECK_STATUSES = frozenset({"passing", "warning", "critical"})
TRUE_WORDS = frozenset({"1", "true", "yes", "on", "t", "y"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "f", "n"})
# Go's time.ParseDuration, which Consul uses for every check duration.
GO_DURATION_RE = re.compile(r"^[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$")
INDEXED_KEY_RE = re.compile(r"^check_(\d+)_(.+)$")
HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9-]+$")
HEALTH_STATUS = {"healthy": "passing"}  # anything else (unhealthy, starting) is critical
HEALTH_OUTPUT_MAX = 4096  # the agent keeps at most this much of a check's output

Problem = Callable[[str, str], None]  # (SERVICE_* key, what is wrong)


def valid_duration(value: str, positive: bool = True) -> bool:
    """True when Consul would parse ``value`` (and it is > 0, when ``positive``)."""
    if not GO_DURATION_RE.match(value):
        return False
    return not positive or (not value.startswith("-") and any(c in "123456789" for c in value))


def split_tags(value: str) -> list[str]:
    """Split on commas; ``\\,`` keeps a comma in a tag. Blank tags are dropped."""
    tags: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(value):
        char = value[i]
        if char == "\\" and i + 1 < len(value) and value[i + 1] == ",":
            current.append(",")
            i += 2
            continue
        if char == ",":
            tags.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    tags.append("".join(current))
    return [t.strip() for t in tags if t.strip()]


def is_true(value: str) -> bool:
    return value.strip().lower() in TRUE_WORDS


class CheckTarget(NamedTuple):
    """The service whose checks these are: where they probe, what a ``check-cmd`` names."""

    service_id: str
    address: str
    port: int
    short_id: str
    exposed_port: str
    allow_scripts: bool


def build_checks(
    attrs: Mapping[str, str], target: CheckTarget, health: Check | None, problem: Problem
) -> tuple[Check, ...]:
    """Every check the keys define (the unindexed one first, then by index), then the
    Docker health check. With more than one, each gets an explicit ID (``service:<id>`` for
    the unindexed one, ``service:<id>:<n>`` for index n), so that adding or removing one
    never renames another."""
    groups: dict[int, dict[str, str]] = {}
    for key, value in attrs.items():
        if not key.startswith("check_"):
            continue
        indexed = INDEXED_KEY_RE.match(key)
        if indexed:
            groups.setdefault(int(indexed.group(1)), {})[indexed.group(2)] = value
        else:
            groups.setdefault(0, {})[key[len("check_") :]] = value
    checks: list[Check] = []
    for index in sorted(groups):
        prefix = "SERVICE_CHECK_" if index == 0 else f"SERVICE_CHECK_{index}_"

        def named(key: str, message: str, prefix: str = prefix) -> None:
            problem(prefix + key.upper(), message)

        check = _build_check(groups[index], target, named)
        if check is not None:
            suffix = f":{index}" if index else ""
            checks.append(check._replace(check_id=f"service:{target.service_id}{suffix}"))
    if len(checks) == 1 and health is None:
        return (checks[0]._replace(check_id=""),)  # the agent's own ID: service:<id>
    return (*checks, *([health] if health is not None else []))


def _build_check(keys: Mapping[str, str], target: CheckTarget, problem: Problem) -> Check | None:
    """One check from its keys (without the ``check_`` or ``check_<n>_`` prefix)."""
    address, port = target.address, target.port
    timeout = keys.get("timeout", "")
    check: Check | None = None
    if keys.get("http"):
        check = Check(
            http=f"http://{address}:{port}{keys['http']}", method=keys.get("http_method", "")
        )
    elif keys.get("https"):
        check = Check(
            http=f"https://{address}:{port}{keys['https']}",
            method=keys.get("https_method", ""),
            tls_skip_verify=bool(keys.get("tls_skip_verify")),
        )
    elif keys.get("tcp"):
        check = Check(tcp=f"{address}:{port}")
    elif keys.get("ttl"):
        check = Check(ttl=keys["ttl"])
    elif keys.get("grpc"):
        use_tls = bool(keys.get("grpc_use_tls"))
        check = Check(
            grpc=f"{address}:{port}",
            grpc_use_tls=use_tls,
            tls_skip_verify=use_tls and bool(keys.get("tls_skip_verify")),
        )
    else:
        for key in ("script", "cmd"):
            if keys.get(key):
                if not target.allow_scripts:
                    problem(key, "script checks are refused (they run commands on the host); "
                            "no check registered")  # fmt: skip
                    return None
                args: tuple[str, ...]
                if key == "cmd":  # the original's helper on the agent's host
                    args = ("check-cmd", target.short_id, target.exposed_port, keys[key])
                else:
                    script = keys[key].replace("$SERVICE_IP", address)
                    args = ("sh", "-c", script.replace("$SERVICE_PORT", str(port)))
                check = Check(args=args)
                break
    if check is None:
        return None
    if check.ttl and not valid_duration(check.ttl):
        problem("ttl", f"{check.ttl!r} is not a duration > 0; no check registered")
        return None
    if not check.ttl:
        interval = keys.get("interval") or DEFAULT_CHECK_INTERVAL
        if not valid_duration(interval):
            problem(
                "interval",
                f"{interval!r} is not a duration > 0 (e.g. 10s); using {DEFAULT_CHECK_INTERVAL}",
            )
            interval = DEFAULT_CHECK_INTERVAL
        check = check._replace(interval=interval)
        if timeout and not check.args:
            if valid_duration(timeout):
                check = check._replace(timeout=timeout)
            else:
                problem("timeout", f"{timeout!r} is not a duration > 0; ignored")
    return _options(check, keys, problem)


def _options(check: Check, keys: Mapping[str, str], problem: Problem) -> Check:
    """Consul's check options, each validated on its own."""
    status = keys.get("initial_status", "")
    if status and status not in CHECK_STATUSES:
        problem("initial_status", f"{status!r} is not passing, warning or critical; ignored")
        status = ""
    deregister_after = keys.get("deregister_after", "")
    if deregister_after and not valid_duration(deregister_after):
        problem("deregister_after", f"{deregister_after!r} is not a duration > 0; ignored")
        deregister_after = ""
    counts = []
    for key in ("success_before_passing", "failures_before_critical"):
        value = keys.get(key, "")
        if value and not value.isdigit():
            problem(key, f"{value!r} is not a whole number >= 0; ignored")
            value = ""
        counts.append(int(value) if value else 0)
    texts = []
    for key in ("name", "notes", "tls_server_name"):
        value = keys.get(key, "")
        if "\n" in value or "\r" in value:
            problem(key, "has a line break; ignored")
            value = ""
        texts.append(value)
    http = bool(check.http)
    return check._replace(
        status=status,
        deregister_critical_service_after=deregister_after,
        success_before_passing=counts[0],
        failures_before_critical=counts[1],
        name=texts[0],
        notes=texts[1],
        tls_server_name=texts[2],
        header=_headers(keys, problem) if http else (),
        body=keys.get("body", "") if http else "",
    )


def _headers(keys: Mapping[str, str], problem: Problem) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``header_<name>`` keys: an underscore in the name stands for a dash (env var names
    cannot hold one), the name is sent in Go's canonical form (``X-Probe``), several values
    are separated by commas (``\\,`` keeps one)."""
    headers: dict[str, tuple[str, ...]] = {}
    for key, value in keys.items():
        if not key.startswith("header_"):
            continue
        raw_name = key[len("header_") :].replace("_", "-")
        if not HEADER_NAME_RE.match(raw_name) or raw_name.strip("-") != raw_name:
            problem(key, f"{raw_name!r} is not a header name; ignored")
            continue
        if "\n" in value or "\r" in value:
            problem(key, "a header value with a line break; ignored")
            continue
        name = "-".join(part.capitalize() for part in raw_name.split("-"))
        headers[name] = tuple(split_tags(value))
    return tuple(sorted(headers.items()))


def docker_health_check(
    container: Mapping[str, Any], service_id: str, health_sync: bool
) -> Check | None:
    """The TTL check that carries the container's Docker health, when it has a HEALTHCHECK
    and health sync applies (see ``health_sync_applies``): healthy is passing, anything else
    (starting, unhealthy) critical, with Docker's last probe output."""
    if not health_sync:
        return None
    state = container.get("State")
    health = state.get("Health") if isinstance(state, Mapping) else None
    if not isinstance(health, Mapping) or not health.get("Status"):
        return None
    log = health.get("Log")
    output = ""
    if isinstance(log, list) and log and isinstance(log[-1], Mapping):
        output = str(log[-1].get("Output") or "").strip()[:HEALTH_OUTPUT_MAX]
    docker_status = str(health["Status"])
    return Check(
        check_id=health_check_id(service_id),
        name="Docker health",
        notes="the container's Docker HEALTHCHECK, kept by registrator",
        ttl=HEALTH_TTL,
        status=HEALTH_STATUS.get(docker_status, "critical"),
        output=output or f"Docker health is {docker_status}",
    )


def health_sync_applies(attrs: Mapping[str, str], health_sync: bool, problem: Problem) -> bool:
    """``SERVICE_CHECK_DOCKER_HEALTH=true|false`` on the container, else ``-health-sync``."""
    setting = attrs.get("check_docker_health", "").strip().lower()
    if not setting:
        return health_sync
    if setting in TRUE_WORDS:
        return True
    if setting not in FALSE_WORDS:
        fallback = "true" if health_sync else "false"
        problem("SERVICE_CHECK_DOCKER_HEALTH", f"{setting!r} is not true or false; {fallback}")
        return health_sync
    return False
